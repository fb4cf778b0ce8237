"""Protocol handlers found by name through the ``storeflow.protocols`` entry points."""

from __future__ import annotations

from functools import cache
from importlib.metadata import entry_points

from storeflow.tasks.transfer.errors import UnknownProtocol
from storeflow.tasks.transfer.handler import Spec, TransferHandler

GROUP = "storeflow.protocols"


@cache
def handler_class(name: str) -> type[TransferHandler]:
    """The handler class registered as ``name`` (e.g. ``local``, ``smb``, ``nfs``)."""
    found = entry_points(group=GROUP, name=name)
    if not found:
        known = sorted(ep.name for ep in entry_points(group=GROUP))
        raise UnknownProtocol(f"no transfer protocol {name!r} (known: {', '.join(known)})")
    cls = next(iter(found)).load()
    if not (isinstance(cls, type) and issubclass(cls, TransferHandler)):
        raise UnknownProtocol(f"entry point {name!r} is not a TransferHandler: {cls!r}")
    return cls


def open_handler(spec: Spec) -> TransferHandler:
    """A handler for a source or destination definition."""
    return handler_class(spec.protocol.name)(spec)
