"""Reads and writes of the file catalog.

`upsert` tells whether a file is new, changed or unchanged, so that its caller emits
exactly one event per new or changed file and none for a file seen again as it was.
"""

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict
from sqlalchemy import select
from sqlalchemy.orm import Session

from storeflow.models.catalog import FileMetadataRow, FileRow
from storeflow.models.errors import InvalidInput, NotFound
from storeflow.models.tables import utcnow


class FileFacts(BaseModel):
    """What storeflow observed of a file on disk."""

    path: str
    space: str
    name: str
    dataset: str
    mime_type: str
    size: int
    owner: str
    group: str
    mtime: datetime
    checksum: str | None = None


class FileView(FileFacts):
    model_config = ConfigDict(from_attributes=True)

    id: int
    created_at: datetime
    updated_at: datetime


class MetadataView(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    file_id: int
    agent_type: str
    agent: str
    content: dict[str, Any]
    created_at: datetime


class Change(StrEnum):
    CREATED = "created"
    UPDATED = "updated"
    UNCHANGED = "unchanged"


_COMPARED = ("space", "name", "dataset", "mime_type", "size", "owner", "group", "mtime")


def _aware(value: datetime) -> datetime:
    # SQLite hands timezone-aware columns back naive (in UTC).
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def view(row: FileRow) -> FileView:
    found = FileView.model_validate(row)
    return found.model_copy(
        update={
            "mtime": _aware(found.mtime),
            "created_at": _aware(found.created_at),
            "updated_at": _aware(found.updated_at),
        }
    )


def upsert(session: Session, facts: FileFacts) -> tuple[FileView, Change]:
    """Record a file as observed; a checksum left unknown keeps the one recorded."""
    row = session.scalar(select(FileRow).where(FileRow.path == facts.path))
    values = facts.model_dump()
    if row is None:
        row = FileRow(**values)
        session.add(row)
        session.flush()
        return view(row), Change.CREATED
    if facts.checksum is None:
        values["checksum"] = row.checksum
    changed = any(
        _aware(getattr(row, f)) != values[f] if f == "mtime" else getattr(row, f) != values[f]
        for f in _COMPARED
    ) or (facts.checksum is not None and row.checksum != facts.checksum)
    if not changed:
        return view(row), Change.UNCHANGED
    for field, value in values.items():
        setattr(row, field, value)
    row.updated_at = utcnow()
    session.flush()
    return view(row), Change.UPDATED


def get(session: Session, file_id: int) -> FileView:
    row = session.get(FileRow, file_id)
    if row is None:
        raise NotFound(f"file #{file_id} is not in the catalog")
    return view(row)


def find(session: Session, ref: str) -> FileView:
    """A file by id (digits) or by absolute path."""
    if ref.isdigit():
        return get(session, int(ref))
    row = session.scalar(select(FileRow).where(FileRow.path == ref))
    if row is None:
        raise NotFound(f"file {ref!r} is not in the catalog")
    return view(row)


def list_files(
    session: Session,
    *,
    space: str | None = None,
    dataset: str | None = None,
    skip: int = 0,
    limit: int | None = None,
) -> list[FileView]:
    query = select(FileRow).order_by(FileRow.id).offset(skip)
    if space is not None:
        query = query.where(FileRow.space == space)
    if dataset is not None:
        query = query.where(FileRow.dataset == dataset)
    if limit is not None:
        query = query.limit(limit)
    return [view(row) for row in session.scalars(query)]


def add_metadata(
    session: Session, file_id: int, content: Any, *, agent_type: str, agent: str
) -> MetadataView:
    if agent_type not in ("listener", "user"):
        raise InvalidInput("agent_type", f"{agent_type!r} is not listener or user")
    if not isinstance(content, dict):
        raise InvalidInput("metadata", "must be a JSON object")
    get(session, file_id)
    row = FileMetadataRow(file_id=file_id, agent_type=agent_type, agent=agent, content=content)
    session.add(row)
    session.flush()
    return _metadata_view(row)


def _metadata_view(row: FileMetadataRow) -> MetadataView:
    found = MetadataView.model_validate(row)
    return found.model_copy(update={"created_at": _aware(found.created_at)})


def metadata_of(session: Session, file_id: int) -> list[MetadataView]:
    query = (
        select(FileMetadataRow)
        .where(FileMetadataRow.file_id == file_id)
        .order_by(FileMetadataRow.id)
    )
    return [_metadata_view(row) for row in session.scalars(query)]
