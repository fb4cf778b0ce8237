"""Python's cyclic garbage collector while transfer steps run in this process.

A step makes a few objects per file (entries, planned files, rows, results). Their
number sets off the collector, whose passes then walk objects that cannot be garbage:
the ones the process already had (Prefect's and pydantic's, 100,000 and more) and the
ones the step itself keeps. Two context managers, each counted so that steps running
at once in threads share one state and the last to end restores it:

- :func:`older_objects_frozen`, around every step: the objects the process had before
  it are frozen (``gc.freeze``) and left out of full passes; the step's own objects are
  collected as usual.
- :func:`collector_paused`, around a plan's listing and FILTER: no collection at all.
  A plan keeps every entry it lists until it returns, so a pass there finds nothing to
  free; measured, passes took a quarter of a 300,000-file plan (2-5 ms of a 10,000-file
  transfer). When the last pause ends inside a freeze, what was made meanwhile is
  frozen too, so no young pass walks it later. Not around a file watch (it may wait
  for hours) nor a delivery (young passes there free what the process's other threads
  leave behind while a long copy runs); the pause is process-wide, so a delivery in
  another thread goes without collection while a plan lists.
"""

from __future__ import annotations

import contextlib
import gc
import threading
from collections.abc import Callable, Iterator


class _Held:
    """One process-wide state that steps hold: the first to enter sets it up, the last
    to leave undoes it, whatever threads they run in."""

    def __init__(self, first: Callable[[], None], last: Callable[[], None]) -> None:
        self.first, self.last = first, last
        self.count = 0

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        with _LOCK:
            if self.count == 0:
                self.first()
            self.count += 1
        try:
            yield
        finally:
            with _LOCK:
                self.count -= 1
                if self.count == 0:
                    self.last()


#: One lock for both: the end of a pause asks whether the freeze is held.
_LOCK = threading.Lock()
_FROZEN = _Held(gc.freeze, gc.unfreeze)


class _Pause:
    """The collector off; on again at the end unless it was off before."""

    was_enabled = True

    @classmethod
    def begin(cls) -> None:
        cls.was_enabled = gc.isenabled()
        gc.disable()

    @classmethod
    def end(cls) -> None:
        if _FROZEN.count:
            # What the plans made and keep joins the frozen objects: enabled again,
            # the collector would walk all of it at its next young pass (in the
            # delivery, beside the copies).
            gc.freeze()
        if cls.was_enabled:
            gc.enable()


_PAUSED = _Held(_Pause.begin, _Pause.end)


@contextlib.contextmanager
def older_objects_frozen() -> Iterator[None]:
    """Leave the objects the process had before a step out of the collector's full
    passes while any step runs. The last step to end unfreezes: they go back to the
    oldest generation, nothing is kept for good. Each step freezes afresh (run_transfer
    does not hold one freeze over all three), so deliver and finalize also leave the
    plan out, a million objects for a million files."""
    with _FROZEN.held():
        yield


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """No automatic collection while any plan lists and filters; the collector is
    enabled again when the last ends, unless it was disabled before the first began."""
    with _PAUSED.held():
        yield
