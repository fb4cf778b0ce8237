"""Database engines and sessions for the resource database.

SQLite (a file under the storeflow home) by default; PostgreSQL works the
same. The schema is brought to the newest Alembic revision the first time a
process opens a database.  A process that forks workers can call `warm_up()`
first: it reads the migration scripts once (no connection, no thread), so that
each child only compares the database's revision with it.  Engines are per
process: a forked child opens its own connections.

`session_scope(url, durable=False)` is for progress records that a durable
commit confirms later: on SQLite it skips the fsync of each commit.
"""

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event, make_url
from sqlalchemy.orm import Session, configure_mappers, sessionmaker

MIGRATIONS = Path(__file__).with_name("migrations")
_engine_lock = threading.Lock()


def _alembic_config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg


@cache
def head_revision() -> str | None:
    """The newest revision of the migration scripts (read once per process)."""
    return ScriptDirectory.from_config(_alembic_config()).get_current_head()


def warm_up() -> None:
    """What a process can do for its database before forking children, so that each
    child only connects: read the migration scripts, load the default (SQLite) dialect
    and set up the ORM mappers.  No connection, no engine, no thread."""
    head_revision()
    make_url("sqlite://").get_dialect().import_dbapi()  # SQLAlchemy imports these lazily
    configure_mappers()


def migrate(engine: Engine) -> None:
    """Upgrade the schema to the newest revision (a no-op when it is current)."""
    head = head_revision()
    with engine.begin() as connection:
        if MigrationContext.configure(connection).get_current_revision() == head:
            return
        cfg = _alembic_config()
        cfg.attributes["connection"] = connection
        command.upgrade(cfg, "head")


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets readers work beside the one writer; busy_timeout makes a writer
    # wait for the lock instead of failing at once under concurrent runs.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def _sqlite_quick_pragmas(dbapi_connection: Any, record: Any) -> None:
    # In WAL mode, NORMAL skips the fsync at commit: a commit survives the process
    # being killed, and only an OS crash or power cut may undo the last ones (never
    # corrupting the file).  The next FULL commit on the database syncs them all.
    _sqlite_pragmas(dbapi_connection, record)
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _sqlite_file(url: str) -> str | None:
    """The database file of a SQLite URL; None for anything else (in-memory included)."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    if parsed.query.get("mode") == "memory":
        return None
    return parsed.database


def _create_engine(url: str, quick: bool = False) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if path := _sqlite_file(url):
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})
        event.listen(engine, "connect", _sqlite_quick_pragmas if quick else _sqlite_pragmas)
        return engine
    return create_engine(url, pool_pre_ping=True)


@cache
def _engine_for(url: str, pid: int) -> Engine:
    # Keyed by process too: a forked child never reuses its parent's pooled connections.
    engine = _create_engine(url)
    migrate(engine)
    return engine


@cache
def _quick_engine_for(url: str, pid: int) -> Engine:
    return _create_engine(url, quick=True)


def engine_for(url: str) -> Engine:
    """One migrated engine per database URL per process."""
    with _engine_lock:
        return _engine_for(url, os.getpid())


def quick_engine_for(url: str) -> Engine:
    """The engine for commits that need not reach the disk at once (see session_scope):
    a second pool on the same SQLite file; the migrated engine itself for anything else."""
    engine = engine_for(url)  # migrates first
    if _sqlite_file(url) is None:
        return engine
    with _engine_lock:
        return _quick_engine_for(url, os.getpid())


@cache
def _sessions_for(engine: Engine) -> sessionmaker[Session]:
    # Building a sessionmaker sets up its event dispatch: ~1 ms, so once per engine.
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def session_scope(url: str, *, durable: bool = True) -> Iterator[Session]:
    """A session that commits when the block ends and rolls back on error.

    `durable=False` is for progress records that a durable commit confirms later: on a
    SQLite file the commit is not synced to disk (it survives the process being killed,
    not a power cut), sparing an fsync per step; elsewhere it is an ordinary commit.
    """
    engine = engine_for(url) if durable else quick_engine_for(url)
    with _sessions_for(engine)() as session, session.begin():
        yield session
