"""The handlers transfers open, from the one registry of protocols (models/protocols.py:
the ``storeflow.protocols`` entry points)."""

from __future__ import annotations

from typing import cast

from storeflow.models.protocols import GROUP, Registry, protocol_names, registry
from storeflow.tasks.transfer.errors import UnknownProtocol
from storeflow.tasks.transfer.handler import Spec, TransferHandler

__all__ = ["GROUP", "Registry", "handler_class", "open_handler", "protocol_names", "registry"]


def handler_class(name: str) -> type[TransferHandler]:
    """The handler class registered as ``name`` (e.g. ``local``, ``smb``, ``nfs``)."""
    found = registry().find(name)
    if found is None:
        raise UnknownProtocol(f"no transfer protocol {name!r} (known: {registry().describe()})")
    if not issubclass(found.handler, TransferHandler):
        raise UnknownProtocol(f"protocol {name!r} is not a TransferHandler: {found.handler!r}")
    return cast(type[TransferHandler], found.handler)


def open_handler(spec: Spec) -> TransferHandler:
    """A handler for a source or destination definition."""
    return handler_class(spec.protocol.name)(spec)
