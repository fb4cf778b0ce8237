"""The file catalog: the files storeflow knows, and the metadata documents on them.

A file is known by its absolute path.  Its `dataset` is the folder that holds it
(Clowder's dataset is a set of files; here a folder is one), and its `space` the
storeflow space it lies in ("" outside every space).  Metadata documents are JSON,
each kept with who wrote it (a listener or a user) and when.
"""

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, DateTime, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from storeflow.models.tables import Base, utcnow


class FileRow(Base):
    __tablename__ = "catalog_files"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    path: Mapped[str] = mapped_column(Text, unique=True)
    space: Mapped[str] = mapped_column(String(255), default="", index=True)
    name: Mapped[str] = mapped_column(String(255), index=True)
    dataset: Mapped[str] = mapped_column(Text, index=True)
    mime_type: Mapped[str] = mapped_column(String(255))
    size: Mapped[int] = mapped_column(BigInteger)
    owner: Mapped[str] = mapped_column(String(64))
    group: Mapped[str] = mapped_column(String(64))
    mtime: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    checksum: Mapped[str | None] = mapped_column(String(80), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class FileMetadataRow(Base):
    __tablename__ = "catalog_metadata"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    file_id: Mapped[int] = mapped_column(
        ForeignKey("catalog_files.id", ondelete="CASCADE"), index=True
    )
    # "listener" or "user", and which one.
    agent_type: Mapped[str] = mapped_column(String(16))
    agent: Mapped[str] = mapped_column(String(255))
    content: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
