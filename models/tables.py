"""The resource table: one row per storage resource, whatever its kind.

Every kind shares the columns the lifecycle needs (status, etag, soft delete,
lock); what differs between kinds lives in `spec` (what the user asked for)
and `state` (what storeflow observed or made: paths, usage, installed template).
"""

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    pass


class ResourceRow(Base):
    __tablename__ = "resources"
    __table_args__ = (
        UniqueConstraint("kind", "scope", "name", name="uq_resources_kind_scope_name"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(32), index=True)
    # Names are unique per kind within a scope: "" for top-level kinds, the
    # parent's id for kinds that live inside another (a space's snapshots).
    scope: Mapped[str] = mapped_column(String(64), default="")
    name: Mapped[str] = mapped_column(String(255))
    parent_id: Mapped[int | None] = mapped_column(Integer, nullable=True, index=True)
    etag: Mapped[int] = mapped_column(Integer, default=1)
    status: Mapped[str] = mapped_column(String(16))
    status_message: Mapped[str | None] = mapped_column(Text, nullable=True)
    deleted: Mapped[bool] = mapped_column(Boolean, default=False)
    spec: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    state: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # The flow run that holds the resource while an operation is under way, until when
    # (a lease it renews while it works: a run killed without a word stops renewing,
    # and the lock is free to take over once the lease has run out), and what it was
    # doing (kept after the run ends, so reconcile knows how to finish an interrupted one).
    lock_owner: Mapped[str | None] = mapped_column(String(64), nullable=True)
    lock_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    last_action: Mapped[str | None] = mapped_column(String(16), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class TransferExecutionRow(Base):
    """One execution of a transfer task: the seed's Progress flags, counters, outcome.

    A transfer's BEFORE_TASK_EXECUTED callbacks read the previous execution of the same
    task (`task_id`) from here, Nodeum style: `task.getLastExecution()?.getProgress()`.
    """

    __tablename__ = "transfer_executions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    task_id: Mapped[str] = mapped_column(String(255), index=True)
    flow_run_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # storeflow.sandbox.models.Progress as its integer bitmask.
    progress: Mapped[int] = mapped_column(Integer, default=0)
    # Delivered, Vetoed, Refused, Errored; None while running.
    outcome: Mapped[str | None] = mapped_column(String(32), nullable=True)
    message: Mapped[str | None] = mapped_column(Text, nullable=True)
    files: Mapped[int] = mapped_column(Integer, default=0)
    bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    skipped: Mapped[int] = mapped_column(Integer, default=0)
    # Final path -> metadata the AFTER_RESULT_RECEIVED callbacks set on it.
    file_metadata: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
