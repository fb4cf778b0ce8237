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
  free; measured, passes took a quarter of a 300,000-file plan and 6-15 ms of a
  10,000-file plan with a FILTER callback. When the last pause ends inside a freeze,
  what was made meanwhile is frozen too, so no young pass walks it later. Not around a
  file watch (it may wait for hours) nor a delivery (young passes there free what the
  process's other threads leave behind while a long copy runs).
"""

from __future__ import annotations

import contextlib
import gc
import threading
from collections.abc import Iterator


class _State:
    """How many steps hold each context in this process."""

    lock = threading.Lock()
    frozen = 0
    paused = 0
    #: Whether the collector was enabled when the first pause began.
    was_enabled = True


@contextlib.contextmanager
def older_objects_frozen() -> Iterator[None]:
    """Leave the objects the process had before a step out of the collector's full
    passes while any step runs. The last step to end unfreezes: they go back to the
    oldest generation, nothing is kept for good. Each step freezes afresh (run_transfer
    does not hold one freeze over all three), so deliver and finalize also leave the
    plan out, a million objects for a million files."""
    with _State.lock:
        if _State.frozen == 0:
            gc.freeze()
        _State.frozen += 1
    try:
        yield
    finally:
        with _State.lock:
            _State.frozen -= 1
            if _State.frozen == 0:
                gc.unfreeze()


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """No automatic collection while any plan lists and filters; the collector is
    enabled again when the last ends, unless it was disabled before the first began."""
    with _State.lock:
        if _State.paused == 0:
            _State.was_enabled = gc.isenabled()
            gc.disable()
        _State.paused += 1
    try:
        yield
    finally:
        with _State.lock:
            _State.paused -= 1
            if _State.paused == 0:
                if _State.frozen:
                    # What the plans made and keep joins the frozen objects: enabled
                    # again, the collector would walk all of it at its next young pass
                    # (in the delivery, beside the copies).
                    gc.freeze()
                if _State.was_enabled:
                    gc.enable()
