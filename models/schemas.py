"""What users ask for, per resource kind: pydantic models shared by the CLI,
the flows (as typed parameters) and the JSON Schema users see."""

from datetime import datetime
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from storeflow.models.bounds import BoundError, check_document
from storeflow.models.errors import InvalidInput
from storeflow.models.names import ResourceName, Size
from storeflow.models.status import Status

M = TypeVar("M", bound=BaseModel)


class Spec(BaseModel):
    """Base of every spec: unknown fields are errors, not silently ignored; strings
    printable and integers 64-bit wherever they are (models/bounds.py)."""

    # Built when first used, not at import: a command that never validates a spec (and
    # the union of every registered protocol's models) does not pay for it.
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    @model_validator(mode="before")
    @classmethod
    def _within_bounds(cls, data: Any) -> Any:
        return check_document(data) if isinstance(data, dict) else data


class SpaceSpec(Spec):
    name: ResourceName = Field(description="Space name; also its directory name.")
    quota: Size = Field(0, description="Quota in bytes or like '10G'; 0 means no limit.")
    template: ResourceName | None = Field(None, description="Template installed at creation.")


class SpaceUpdate(Spec):
    rename: ResourceName | None = Field(None, description="New name for the space.")
    quota: Size | None = Field(None, description="New quota; 0 removes the limit.")
    uninstall_template: bool = Field(
        False, description="Remove the installed template, if its copy is unchanged."
    )


SnapshotMode = Literal["auto", "reflink", "hardlink", "copy"]


class SnapshotSpec(Spec):
    space: ResourceName = Field(description="The space to snapshot.")
    name: ResourceName = Field(description="Snapshot name, unique within the space.")
    mode: SnapshotMode = Field(
        "auto",
        description="auto: reflink where the filesystem can, else a hard-link tree. "
        "copy: a full copy (slow; never the default).",
    )


class TemplateSpec(Spec):
    name: ResourceName = Field(description="Template name in the template store.")
    source: Path = Field(description="Absolute path of the directory to copy into the store.")

    @field_validator("source")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        if not value.is_absolute():
            raise ValueError("must be an absolute path")
        return value


class TemplateUpdate(Spec):
    rename: ResourceName | None = Field(None, description="New name within the store.")
    source: Path | None = Field(None, description="Replace the template from this directory.")

    @field_validator("source")
    @classmethod
    def _absolute(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_absolute():
            raise ValueError("must be an absolute path")
        return value


class ResourceView(BaseModel):
    """A resource as storeflow reports it (CLI --json, flow results)."""

    id: int
    kind: str
    name: str
    scope: str = ""
    parent_id: int | None = None
    etag: int
    status: Status
    status_message: str | None = None
    deleted: bool = False
    spec: dict[str, Any] = {}
    state: dict[str, Any] = {}
    lock_owner: str | None = None
    lock_expires_at: datetime | None = None
    last_action: str | None = None
    created_at: datetime
    updated_at: datetime

    model_config = ConfigDict(from_attributes=True)


def parse_spec(model: type[M], data: Any, what: str) -> M:
    """Validate user data into a spec model; errors name the field and the reason."""
    if isinstance(data, model):
        return data
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = [str(part) for part in (what, *first["loc"])]
        reason = first["msg"].removeprefix("Value error, ")
        bound = first.get("ctx", {}).get("error")
        if isinstance(bound, BoundError):  # found inside: it names where
            where, reason = [*where, bound.field], bound.reason
        field = ".".join(where)
        if first["type"] == "extra_forbidden":
            reason = "unknown field"
        raise InvalidInput(field, reason) from None
