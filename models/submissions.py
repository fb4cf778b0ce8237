"""Submissions: one resource sent to one listener, and what the listener said about it.

A submission is a Prefect flow run (its id is the run's id) and its status is the
run's state; this table keeps what Prefect does not: the listener, the resource,
the origin, the parameters, the events, and the temporary key's hash.
"""

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Boolean, DateTime, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from storeflow.models.listeners import ListenerRow
from storeflow.models.tables import Base, utcnow

# Submissions refer to listeners: their table must be known wherever these are used.
_REFERS_TO = ListenerRow


class SubmissionStatus(StrEnum):
    PENDING_APPROVAL = "PENDING APPROVAL"
    SUBMITTED = "SUBMITTED"
    SUCCESS = "SUCCESS"
    FAILURE = "FAILURE"

    @property
    def terminal(self) -> bool:
        return self in (SubmissionStatus.SUCCESS, SubmissionStatus.FAILURE)


class Origin(StrEnum):
    API = "API"
    CLI = "CLI"
    UI = "UI"
    FEED = "feed"


class SubmissionRow(Base):
    __tablename__ = "submissions"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    listener_id: Mapped[int] = mapped_column(ForeignKey("listeners.id"), index=True)
    resource_type: Mapped[str] = mapped_column(String(16))  # file or dataset
    resource_id: Mapped[str] = mapped_column(Text)
    origin: Mapped[str] = mapped_column(String(16))
    parameters: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    status: Mapped[str] = mapped_column(String(32), index=True)
    message: Mapped[str | None] = mapped_column(Text, nullable=True)
    timeout_seconds: Mapped[int] = mapped_column(Integer)
    submitted_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class SubmissionEventRow(Base):
    __tablename__ = "submission_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    submission_id: Mapped[str] = mapped_column(ForeignKey("submissions.id"), index=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    # SUCCESS or FAILURE when this event decided the submission; else None.
    status: Mapped[str | None] = mapped_column(String(32), nullable=True)
    progress: Mapped[int | None] = mapped_column(Integer, nullable=True)
    message: Mapped[str] = mapped_column(Text, default="")
    # The wire's message_type (StatusMessage.start, ...), kept as the listener sent it.
    kind: Mapped[str] = mapped_column(String(64), default="")


class ApiKeyRow(Base):
    """A key for the HTTP API, stored as its SHA-256 only.

    A submission's key grants its resource and nothing else, until it expires or the
    submission ends; a user key (submission_id None) grants the listener API.
    """

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    submission_id: Mapped[str | None] = mapped_column(
        ForeignKey("submissions.id"), nullable=True, index=True
    )
    user: Mapped[str | None] = mapped_column(String(255), nullable=True)
    file_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    dataset: Mapped[str | None] = mapped_column(Text, nullable=True)
    admin: Mapped[bool] = mapped_column(Boolean, default=False)
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
