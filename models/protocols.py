"""The one registry of transfer protocols: the ``storeflow.protocols`` entry points.

Each entry point names a protocol handler class (storeflow's own are
``storeflow.tasks.transfer.handler.TransferHandler`` subclasses); several names may point
to one class (OTF's ``opentaskpy.remotehandlers.local.LocalTransfer`` is another name
for ``local``).  A handler names its pydantic models (``protocol_model``,
``source_model``, ``destination_model``) and what its providers need
(``provider_protocol``), and everything that used to keep a closed list of protocols
reads this registry instead: the definition's source/destination unions and JSON Schema
(models/transfer.py), the provider's ``protocol`` field (models/replicas.py), the
handlers a transfer opens (tasks/transfer/registry.py), the warm runner's preloading.
A protocol from another installed package is therefore usable with no change to
storeflow.

It lives with the models, which need it, and reads only entry points: what the entry
points load (the handler modules) is imported when the registry is first read, never by
this module.  Read once per process: entry points do not change while a process runs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from importlib.metadata import entry_points
from typing import Any, ClassVar, Literal, Protocol

from pydantic import BaseModel

GROUP = "storeflow.protocols"


class HandlerClass(Protocol):
    """What the models read of a protocol's handler class."""

    protocol: ClassVar[str]
    protocol_model: ClassVar[type[BaseModel]]
    source_model: ClassVar[type[BaseModel]]
    destination_model: ClassVar[type[BaseModel]]

    @classmethod
    def provider_protocol(cls, block: str | None, directory: str) -> dict[str, Any]: ...


@dataclass(frozen=True)
class RegisteredProtocol:
    """One registered protocol: its handler and every name it is registered under."""

    #: Its name: the handler's ``protocol`` when registered under it, else its first
    #: entry point name.  The union tag, and what a provider names.
    name: str
    #: Every entry point name of this handler, ``name`` first.
    names: tuple[str, ...]
    handler: type[HandlerClass]

    def model(self, side: Literal["source", "destination"]) -> type[BaseModel]:
        return self.handler.source_model if side == "source" else self.handler.destination_model


@dataclass(frozen=True)
class Registry:
    group: str
    protocols: tuple[RegisteredProtocol, ...]
    #: Entry point name -> why it could not be used (import error, not a handler...).
    broken: Mapping[str, str] = field(default_factory=dict)

    def find(self, name: str) -> RegisteredProtocol | None:
        for protocol in self.protocols:
            if name in protocol.names:
                return protocol
        return None

    def canonical(self, name: str) -> str | None:
        """The protocol's own name for any of its registered names."""
        found = self.find(name)
        return None if found is None else found.name

    def names(self) -> tuple[str, ...]:
        """Every registered name, protocol by protocol (sorted), aliases after each."""
        return tuple(n for p in self.protocols for n in p.names)

    def describe(self) -> str:
        """The known names, for error messages; unusable entry points say why."""
        text = ", ".join(self.names())
        if self.broken:
            text += "; not usable: " + "; ".join(f"{n} ({why})" for n, why in self.broken.items())
        return text


def _problem(cls: object) -> str | None:
    """Why ``cls`` cannot be a protocol handler, or None."""
    from storeflow.models.transfer import DestinationSpec, ProtocolBlock, SourceSpec

    if not isinstance(cls, type):
        return f"not a protocol handler class: {cls!r}"
    wanted = (
        ("protocol_model", ProtocolBlock),
        ("source_model", SourceSpec),
        ("destination_model", DestinationSpec),
    )
    for attribute, base in wanted:
        model = getattr(cls, attribute, None)
        if not (isinstance(model, type) and issubclass(model, base)):
            return f"{cls.__name__}.{attribute} is not a subclass of {base.__name__}"
    if not isinstance(getattr(cls, "protocol", None), str):
        return f"{cls.__name__}.protocol (its name) is not set"
    if not callable(getattr(cls, "provider_protocol", None)):
        return f"{cls.__name__} has no provider_protocol"
    return None


@cache
def registry() -> Registry:
    """Load every entry point of the group once; a broken one is recorded, not fatal."""
    by_class: dict[type[HandlerClass], list[str]] = {}
    broken: dict[str, str] = {}
    seen: set[str] = set()
    for ep in entry_points(group=GROUP):
        if ep.name in seen:  # the same name from two installed copies: the first wins
            continue
        seen.add(ep.name)
        try:
            cls = ep.load()
        except Exception as exc:  # a third-party package's import error must not stop us
            broken[ep.name] = f"{type(exc).__name__}: {exc}"
            continue
        problem = _problem(cls)
        if problem is not None:
            broken[ep.name] = problem
            continue
        by_class.setdefault(cls, []).append(ep.name)
    protocols = []
    for cls, names in by_class.items():
        # The handler's own name leads (union tags and providers use it) when it is one of
        # its entry point names; a subclass that kept its parent's name is known by its own.
        ordered = sorted(names, key=lambda n: (n != cls.protocol, n))
        protocols.append(RegisteredProtocol(ordered[0], tuple(ordered), cls))
    protocols.sort(key=lambda p: p.name)
    return Registry(GROUP, tuple(protocols), broken)


def protocol_names() -> tuple[str, ...]:
    """Every registered protocol name (aliases included)."""
    return registry().names()
