"""Listeners: processes apart from storeflow that wait on RabbitMQ for files to work on.

A listener exists only because it heartbeats: there is no way to register one
otherwise.  Its row is keyed by its name (`extractor_info.name`); every instance's
id (`RabbitMQBroadcast.id` in pyclowder, new at each start) is kept in `instance_ids`.
Deleting one marks it inactive and keeps the row and its submissions' history.
"""

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, DateTime, Float, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from storeflow.models.tables import Base, utcnow


class ListenerRow(Base):
    __tablename__ = "listeners"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    version: Mapped[str] = mapped_column(String(64), default="")
    description: Mapped[str] = mapped_column(Text, default="")
    queue: Mapped[str] = mapped_column(String(255))
    owner: Mapped[str | None] = mapped_column(String(255), nullable=True)
    # extractor_info.parameters: the JSON Schema-ish description of accepted parameters.
    parameters: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    extractor_info: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    instance_ids: Mapped[list[str]] = mapped_column(JSON, default=list)
    first_heartbeat: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    last_heartbeat: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    # Seconds between the last two heartbeats of one instance: liveness is judged by it.
    heartbeat_interval: Mapped[float | None] = mapped_column(Float, nullable=True)
    feeds: Mapped[int] = mapped_column(Integer, default=0)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    heartbeats: Mapped[int] = mapped_column(Integer, default=0)
