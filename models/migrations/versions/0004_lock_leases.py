"""Lock leases: a lock expires unless the run holding it renews it; the last action.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"


def upgrade() -> None:
    with op.batch_alter_table("resources") as table:
        table.add_column(sa.Column("lock_expires_at", sa.DateTime(timezone=True), nullable=True))
        table.add_column(sa.Column("last_action", sa.String(16), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("resources") as table:
        table.drop_column("last_action")
        table.drop_column("lock_expires_at")
