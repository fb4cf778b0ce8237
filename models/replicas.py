"""What users ask for when they declare providers, replicas and tiering profiles (seed 001).

- A Provider is a remote endpoint on any registered transfer protocol (built in: a local
  directory, an SMB share or an NFS export), with its credentials in a Prefect Block
  (SMBRemote / NFSRemote), never in the spec.
- A Replica keeps a space in sync with a directory of a provider, upstream (space ->
  provider), downstream (provider -> space) or both ways, on a schedule.
- A Profile is an ordered list of pools (directories) with one rule per step: files of
  pool N that match the rule move to pool N+1 when the tiering flow runs.
"""

import posixpath
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeVar

from pydantic import (
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import core_schema

from storeflow.models.names import ResourceName, Size
from storeflow.models.schemas import Spec

SpecT = TypeVar("SpecT", bound=Spec)

if TYPE_CHECKING:
    from storeflow.models.protocols import HandlerClass

Direction = Literal["upstream", "downstream", "bidirectional"]


@dataclass(frozen=True)
class _RegisteredProtocol:
    """Marks a protocol name field: one of the registered transfer protocols, read from
    the entry points when pydantic first needs the schema (not at import)."""

    def __get_pydantic_core_schema__(
        self, source_type: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        from storeflow.models.protocols import registry  # its handlers import models

        names = [p.name for p in registry().protocols]
        return handler.generate_schema(Literal[tuple(names)])


#: A registered transfer protocol's name (``local``, ``smb``, ``nfs`` and any installed).
ProviderProtocol = Annotated[str, _RegisteredProtocol()]


MAX_INTERVAL = 366 * 86400  # a schedule sparser than yearly is not a schedule
MAX_AGE = 100 * 366 * 86400


class ScheduleSpec(Spec):
    """Exactly one of `interval` (seconds) or `cron` (UTC)."""

    interval: int | None = Field(
        None, ge=60, le=MAX_INTERVAL, description="Seconds between runs (60 to 31,622,400: a year)."
    )
    cron: str | None = Field(None, description="Cron expression, UTC, e.g. '0 2 * * *'.")

    @model_validator(mode="after")
    def _one(self) -> "ScheduleSpec":
        if (self.interval is None) == (self.cron is None):
            raise ValueError("give exactly one of 'interval' or 'cron'")
        if self.cron is not None and len(self.cron.split()) not in (5, 6):
            raise ValueError(f"cron {self.cron!r} does not have 5 fields")
        return self


def _hourly() -> ScheduleSpec:
    return ScheduleSpec(interval=3600)


def registry_handler(protocol: str) -> "type[HandlerClass]":
    """The handler class of a registered protocol (the field's validation named one)."""
    from storeflow.models.protocols import registry  # its handlers import models

    found = registry().find(protocol)
    if found is None:
        raise ValueError(f"no transfer protocol {protocol!r} (known: {registry().describe()})")
    return found.handler


class ProviderSpec(Spec):
    # The protocol names come from the entry points: build on first use, not at import.
    model_config = ConfigDict(defer_build=True)

    name: ResourceName = Field(description="Provider name.")
    protocol: ProviderProtocol = Field(
        description="A registered transfer protocol: local, smb, nfs or one installed."
    )
    directory: str = Field(
        min_length=1,
        description="Root on the provider: an absolute local path, or a directory inside "
        "the SMB share or NFS export ('/' for its top).",
    )
    block: str | None = Field(
        None, description="Saved SMBRemote/NFSRemote block holding address and credentials."
    )

    @model_validator(mode="after")
    def _protocol_accepts(self) -> "ProviderSpec":
        # The protocol's handler says what its providers need (a block, an absolute path).
        handler = registry_handler(self.protocol)
        block = handler.provider_protocol(self.block, self.directory)
        try:
            handler.protocol_model.model_validate(block)
        except ValidationError as exc:
            reasons = "; ".join(
                f"{'.'.join(map(str, e['loc'])) or 'protocol'}: {e['msg']}" for e in exc.errors()
            )
            raise ValueError(f"not a valid {self.protocol} protocol object: {reasons}") from None
        if ".." in Path(self.directory).parts:
            raise ValueError("directory must not contain '..'")
        return self

    def protocol_block(self) -> dict[str, Any]:
        """The OTF ``protocol`` object of this provider's sources and destinations."""
        return registry_handler(self.protocol).provider_protocol(self.block, self.directory)


class ReplicaSpec(Spec):
    name: ResourceName = Field(description="Replica name; also its deployment's name.")
    space: ResourceName = Field(description="The space kept in sync.")
    provider: ResourceName = Field(description="The provider it syncs with.")
    direction: Direction = Field(
        description="upstream: space -> provider; downstream: provider -> space; "
        "bidirectional: both, the newer copy wins."
    )
    remote_directory: str | None = Field(
        None, description="Directory under the provider's root; default: the space name."
    )
    schedule: ScheduleSpec = Field(default_factory=_hourly)

    @field_validator("remote_directory")
    @classmethod
    def _inside(cls, value: str | None) -> str | None:
        if value is None:
            return value
        normal = posixpath.normpath("/" + value).lstrip("/")
        if not normal or normal.startswith("..") or ".." in value.split("/"):
            raise ValueError("must be a relative directory inside the provider, without '..'")
        return normal


class PoolSpec(Spec):
    name: ResourceName
    path: Path = Field(description="Absolute directory of the pool.")

    @field_validator("path")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        if not value.is_absolute():
            raise ValueError("must be an absolute path")
        return value


class TierRule(Spec):
    """Which files of a pool move to the next one; every given condition must hold."""

    older_than: int | None = Field(
        None,
        ge=0,
        le=MAX_AGE,
        description="Seconds since last modification, up to 100 years (OTF conditionals.age.gt).",
    )
    larger_than: Size | None = Field(None, description="Bytes (OTF conditionals.size.gt).")
    name_pattern: str = Field(".*", min_length=1, description="Regex on the whole file name.")

    @field_validator("name_pattern")
    @classmethod
    def _regex(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"not a valid regular expression: {exc}") from exc
        return value


class ProfileSpec(Spec):
    name: ResourceName
    pools: list[PoolSpec] = Field(min_length=2, description="Fastest first.")
    rules: list[TierRule] = Field(description="rules[i] moves files from pools[i] to pools[i+1].")
    schedule: ScheduleSpec = Field(default_factory=_hourly)

    @model_validator(mode="after")
    def _shape(self) -> "ProfileSpec":
        if len(self.rules) != len(self.pools) - 1:
            raise ValueError(
                f"{len(self.pools)} pools need {len(self.pools) - 1} rules, got {len(self.rules)}"
            )
        paths = [p.path for p in self.pools]
        for i, a in enumerate(paths):
            for b in paths[i + 1 :]:
                if a == b or a.is_relative_to(b) or b.is_relative_to(a):
                    raise ValueError(f"pools {a} and {b} overlap")
        if len({p.name for p in self.pools}) != len(self.pools):
            raise ValueError("pool names must be unique")
        return self


# -- updates: the fields that may change; the result is validated as a whole spec --------


class ProviderUpdate(Spec):
    """What a provider update may change (its name stays)."""

    protocol: ProviderProtocol | None = Field(None, description="Another registered protocol.")
    directory: str | None = Field(None, min_length=1, description="A new root on the provider.")
    block: str | None = Field(None, description="Another saved SMBRemote/NFSRemote block.")


class ReplicaUpdate(Spec):
    """What a replica update may change (its space stays: a new space is a new replica)."""

    provider: ResourceName | None = Field(None, description="Another provider.")
    direction: Direction | None = Field(None, description="upstream, downstream, bidirectional.")
    remote_directory: str | None = Field(None, description="Directory under the provider's root.")
    schedule: ScheduleSpec | None = Field(None, description="A new schedule.")


class ProfileUpdate(Spec):
    """What a profile update may change."""

    pools: list[PoolSpec] | None = Field(None, min_length=2, description="Fastest first.")
    rules: list[TierRule] | None = Field(None, description="One per pair of pools.")
    schedule: ScheduleSpec | None = Field(None, description="A new schedule.")


def updated(spec: dict[str, Any], changes: Spec, model: type[SpecT]) -> SpecT:
    """`spec` with the fields `changes` gives, validated as a whole (cross-field rules
    included); a ValidationError names what is wrong."""
    given = changes.model_dump(mode="json", exclude_none=True)
    return model.model_validate({**spec, **given})
