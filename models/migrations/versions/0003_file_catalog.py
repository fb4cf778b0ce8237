"""The file catalog: files storeflow knows and the metadata documents on them.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"


def upgrade() -> None:
    op.create_table(
        "catalog_files",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("path", sa.Text(), nullable=False, unique=True),
        sa.Column("space", sa.String(255), nullable=False, server_default="", index=True),
        sa.Column("name", sa.String(255), nullable=False, index=True),
        sa.Column("dataset", sa.Text(), nullable=False, index=True),
        sa.Column("mime_type", sa.String(255), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("owner", sa.String(64), nullable=False),
        sa.Column("group", sa.String(64), nullable=False),
        sa.Column("mtime", sa.DateTime(timezone=True), nullable=False),
        sa.Column("checksum", sa.String(80), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "catalog_metadata",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column(
            "file_id",
            sa.Integer(),
            sa.ForeignKey("catalog_files.id", ondelete="CASCADE"),
            nullable=False,
            index=True,
        ),
        sa.Column("agent_type", sa.String(16), nullable=False),
        sa.Column("agent", sa.String(255), nullable=False),
        sa.Column("content", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("catalog_metadata")
    op.drop_table("catalog_files")
