"""Feeds, the listeners subscribed to them, and which files each already got.

A feed is a named set of criteria (models/feed_criteria.py) with the job parameters
its submissions carry and whether they wait for a person's approval.  A subscription
ties one listener to one feed; with `auto` it has a Prefect automation (its id kept
here) that runs the `submit` deployment on the feed's `storeflow.feed.matched` events.

`FeedDeliveryRow` is the one record per (feed, listener, resource): whoever wants to
submit a file for a feed to a listener (the automation's run, `execute`, a backfill)
claims it first, and a second claim (a replayed event, a restarted matcher, two
runs racing) finds it taken and submits nothing.
"""

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, DateTime, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from storeflow.models.listeners import ListenerRow
from storeflow.models.tables import Base, utcnow

# Subscriptions refer to listeners: their table must be known wherever these are used.
_REFERS_TO = ListenerRow


class FeedRow(Base):
    __tablename__ = "feeds"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    # "file": each matching file; "dataset": a folder once its files meet every one of
    # criteria["files"].
    kind: Mapped[str] = mapped_column(String(16), default="file")
    criteria: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    parameters: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    approval: Mapped[bool] = mapped_column(Boolean, default=False)
    description: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class SubscriptionRow(Base):
    __tablename__ = "feed_subscriptions"
    __table_args__ = (UniqueConstraint("feed_id", "listener_id", name="uq_feed_listener"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    feed_id: Mapped[int] = mapped_column(ForeignKey("feeds.id", ondelete="CASCADE"), index=True)
    listener_id: Mapped[int] = mapped_column(ForeignKey("listeners.id"), index=True)
    auto: Mapped[bool] = mapped_column(Boolean, default=True)
    automation_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class FeedDeliveryRow(Base):
    __tablename__ = "feed_deliveries"
    __table_args__ = (
        UniqueConstraint("feed_id", "listener_id", "resource", name="uq_feed_delivery"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    feed_id: Mapped[int] = mapped_column(ForeignKey("feeds.id", ondelete="CASCADE"), index=True)
    listener_id: Mapped[int] = mapped_column(ForeignKey("listeners.id"), index=True)
    # A file's id, or a dataset's folder with its version (for dataset feeds).
    resource: Mapped[str] = mapped_column(Text)
    submission_id: Mapped[str | None] = mapped_column(String(36), nullable=True, index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
