"""Feeds, subscriptions (a listener to a feed, its automation), deliveries (one per
feed, listener and file).

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"


def upgrade() -> None:
    op.create_table(
        "feeds",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(255), nullable=False, unique=True),
        sa.Column("kind", sa.String(16), nullable=False, server_default="file"),
        sa.Column("criteria", sa.JSON(), nullable=False),
        sa.Column("parameters", sa.JSON(), nullable=False),
        sa.Column("approval", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("description", sa.Text(), nullable=False, server_default=""),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "feed_subscriptions",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column(
            "feed_id",
            sa.Integer(),
            sa.ForeignKey("feeds.id", ondelete="CASCADE"),
            nullable=False,
            index=True,
        ),
        sa.Column(
            "listener_id", sa.Integer(), sa.ForeignKey("listeners.id"), nullable=False, index=True
        ),
        sa.Column("auto", sa.Boolean(), nullable=False, server_default=sa.true()),
        sa.Column("automation_id", sa.String(36), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("feed_id", "listener_id", name="uq_feed_listener"),
    )
    op.create_table(
        "feed_deliveries",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column(
            "feed_id",
            sa.Integer(),
            sa.ForeignKey("feeds.id", ondelete="CASCADE"),
            nullable=False,
            index=True,
        ),
        sa.Column(
            "listener_id", sa.Integer(), sa.ForeignKey("listeners.id"), nullable=False, index=True
        ),
        sa.Column("resource", sa.Text(), nullable=False),
        sa.Column("submission_id", sa.String(36), nullable=True, index=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("feed_id", "listener_id", "resource", name="uq_feed_delivery"),
    )


def downgrade() -> None:
    op.drop_table("feed_deliveries")
    op.drop_table("feed_subscriptions")
    op.drop_table("feeds")
