"""Reads of the resource database that need no SQLAlchemy: the CLI's `list` and `show`.

Importing SQLAlchemy costs a cold `storeflow space list` about 0.2 s, several times
the query itself.  When the resource database is an SQLite file already at the newest
revision, `list` and `show` read it through Python's own `sqlite3`, read-only.  For
anything else (PostgreSQL, a file that does not exist yet or needs migrating, a URL
with options, any driver error) these functions answer None and the caller takes the
repository's path, which creates, migrates and names faults (models/db.py).

The facts both paths need without SQLAlchemy live here too: the newest revision of
the migration scripts, and the check that an SQLite WAL index can be written.
"""

import errno
import json
import os
import re
import sqlite3
from collections.abc import Iterator
from contextlib import closing, contextmanager
from functools import cache
from pathlib import Path
from typing import Any

from storeflow.models.errors import NotFound, StoreflowError
from storeflow.models.schemas import ResourceView

MIGRATIONS = Path(__file__).with_name("migrations")

# Revision ids are the migration files' number prefixes (0001_resources.py -> "0001"),
# so the newest is known without importing Alembic.
_REVISION_FILE = re.compile(r"(?P<revision>[0-9]{4})_[a-z0-9_]+\.py")

# Only the plain forms: `sqlite:///relative/or/absolute/path`, no query string.
_PLAIN_SQLITE_URL = re.compile(r"sqlite(\+pysqlite)?:///(?P<path>[^?]+)")

_COLUMNS = (
    "id, kind, name, scope, parent_id, etag, status, status_message, deleted, spec, state, "
    "lock_owner, lock_expires_at, last_action, created_at, updated_at"
)


class WalIndexUnwritable(StoreflowError):
    """An SQLite file whose `-shm` cannot be written (see check_shm_writable)."""

    def __init__(self, path: str, why: str) -> None:
        self.path, self.why = path, why
        super().__init__(f"its WAL index {path}-shm cannot be written ({why})")


@cache
def head_revision() -> str | None:
    """The newest revision of the migration scripts (read once per process)."""
    found = [
        match["revision"]
        for name in os.listdir(MIGRATIONS / "versions")
        if (match := _REVISION_FILE.fullmatch(name))
    ]
    return max(found, default=None)


def check_shm_writable(path: str) -> None:
    """Refuse an SQLite file whose WAL index (`-shm`) exists but cannot be written.

    SQLite maps the -shm file into memory and writes the index through the mapping;
    a file that cannot be written (immutable, on a read-only mount) then ends the
    process with SIGBUS instead of an error.  A missing -shm is fine: SQLite makes it."""
    shm = f"{path}-shm"
    try:
        fd = os.open(shm, os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise WalIndexUnwritable(
            path, "immutable" if exc.errno == errno.EPERM else str(exc.strerror)
        ) from None
    os.close(fd)


def plain_sqlite_file(url: str) -> Path | None:
    """The file of a plain SQLite URL; None for any other URL."""
    match = _PLAIN_SQLITE_URL.fullmatch(url)
    if match is None or match["path"] in (":memory:", "") or match["path"].startswith("file:"):
        return None
    return Path(match["path"])


@contextmanager
def _current(url: str) -> Iterator[sqlite3.Connection | None]:
    """A read-only connection to the database if it is a plain SQLite file at the newest
    revision; None otherwise."""
    path = plain_sqlite_file(url)
    if path is None or not path.is_file():
        yield None
        return
    try:
        check_shm_writable(str(path))
        connection = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=30)
    except (StoreflowError, sqlite3.Error, OSError):
        yield None
        return
    with closing(connection):
        try:
            (revision,) = connection.execute("SELECT version_num FROM alembic_version").fetchone()
        except (sqlite3.Error, TypeError):
            revision = None
        yield connection if revision == head_revision() else None


def _view(row: tuple[Any, ...]) -> ResourceView:
    record = dict(zip([c.strip() for c in _COLUMNS.split(",")], row, strict=True))
    for document in ("spec", "state"):
        record[document] = json.loads(record[document]) if record[document] else {}
    record["deleted"] = bool(record["deleted"])
    return ResourceView.model_validate(record)


def _select(connection: sqlite3.Connection, where: str, *values: Any) -> list[ResourceView]:
    rows = connection.execute(
        f"SELECT {_COLUMNS} FROM resources WHERE {where} ORDER BY id", values
    ).fetchall()
    return [_view(row) for row in rows]


def _find(connection: sqlite3.Connection, kind: str, name: str, scope: str) -> ResourceView:
    found = _select(connection, "kind = ? AND scope = ? AND name = ?", kind, scope, name)
    if not found:
        raise NotFound(f"{kind} {name!r} does not exist", kind, name)
    return found[0]


def list_kind(
    url: str, kind: str, parent: tuple[str, str] | None = None
) -> list[ResourceView] | None:
    """A kind's resources, those inside `parent` (kind, name) only when given, as the
    repository lists them; None when this database needs the repository's path."""
    try:
        with _current(url) as connection:
            if connection is None:
                return None
            if parent is None:
                return _select(connection, "kind = ?", kind)
            inside = _find(connection, *parent, "")
            return _select(connection, "kind = ? AND parent_id = ?", kind, inside.id)
    except sqlite3.Error:
        return None


def find(
    url: str, kind: str, name: str, parent: tuple[str, str] | None = None
) -> ResourceView | None:
    """One resource by name (inside `parent` (kind, name) when given); NotFound when
    there is none; None when this database needs the repository's path."""
    try:
        with _current(url) as connection:
            if connection is None:
                return None
            scope = str(_find(connection, *parent, "").id) if parent else ""
            return _find(connection, kind, name, scope)
    except sqlite3.Error:
        return None
