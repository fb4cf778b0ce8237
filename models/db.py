"""Database engines and sessions for the resource database.

SQLite (a file under the storeflow home) by default; PostgreSQL works the
same. The schema is brought to the newest Alembic revision the first time a
process opens a database.  A process that forks workers can call `warm_up()`
first: it reads the migration scripts once (no connection, no thread), so that
each child only compares the database's revision with it.  Engines are per
process: a forked child opens its own connections.

`session_scope(url, durable=False)` is for progress records that a durable
commit confirms later: on SQLite it skips the fsync of each commit.

A database that cannot be used (read-only, full, locked, gone, unreachable) raises
`DatabaseFault`: one line naming the database and the cause, never a driver's
traceback.  An SQLite file whose `-shm` (the WAL index, which SQLite maps into memory)
cannot be written is refused before SQLite maps it: writing through a mapping of a
file made immutable kills the process with SIGBUS.
"""

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache, partial
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, inspect, make_url, text
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, ProgrammingError
from sqlalchemy.orm import Session, configure_mappers, sessionmaker

from storeflow.models import quickread
from storeflow.models.errors import StoreflowError
from storeflow.models.quickread import MIGRATIONS, head_revision

_engine_lock = threading.Lock()


class DatabaseFault(StoreflowError):
    """The resource database cannot be used right now (what, where and why in one line)."""

    def __init__(self, where: str, cause: str) -> None:
        self.where, self.cause = where, cause
        super().__init__(f"resource database {where}: {cause}")


#: SQLite's words for a fault, and what they mean to whoever runs storeflow.
_SQLITE_CAUSES = (
    ("readonly", "read-only: this process cannot write it (file, directory or mount)"),
    ("disk is full", "no space left (the disk, a quota or the file size limit is full)"),
    ("database is locked", "locked by another process for longer than the busy timeout"),
    ("unable to open", "cannot open the file (missing directory or no permission)"),
    ("disk i/o error", "disk I/O error (the file may have been removed or the disk failed)"),
    ("not a database", "the file is not an SQLite database"),
    ("malformed", "the file is corrupt (database disk image is malformed)"),
)


def describe(url: str) -> str:
    """The database as a user knows it: an SQLite file's path, else the URL without its
    password."""
    return _sqlite_file(url) or make_url(url).render_as_string(hide_password=True)


def fault_cause(error: BaseException) -> str:
    """One line saying why the driver gave up."""
    if isinstance(error, OSError):
        return error.strerror or str(error)
    original = getattr(error, "orig", None) or error
    if getattr(original, "sqlite_errorname", "") == "SQLITE_IOERR_WRITE":
        return "a write failed (no space left, the file size limit reached, or a disk error)"
    text = " ".join(str(original).split()) or type(original).__name__
    lowered = text.lower()
    for marker, meaning in _SQLITE_CAUSES:
        if marker in lowered:
            return meaning
    return text[:300]


def _is_fault(error: BaseException) -> bool:
    # Constraint and programming errors are answers (a name taken) or bugs, not faults.
    return isinstance(error, DBAPIError) and not isinstance(
        error, (IntegrityError, ProgrammingError, DataError)
    )


@contextmanager
def faults_named(url: str, opening: bool = False) -> Iterator[None]:
    """Turn the driver's errors about the database itself into a DatabaseFault; while
    `opening` (making the directory, migrating), any OSError too."""
    try:
        yield
    except DBAPIError as exc:
        if _is_fault(exc):
            raise DatabaseFault(describe(url), fault_cause(exc)) from exc
        raise
    except OSError as exc:
        if opening:
            raise DatabaseFault(describe(url), fault_cause(exc)) from exc
        raise


#: Connections taken out of their pool because their -shm can no longer be written:
#: closing one would write through that mapping (SIGBUS), so they are never closed.
_stranded: list[Any] = []


def _refuse_unwritable_shm(path: str, dbapi_connection: Any, _record: Any, proxy: Any) -> None:
    try:
        check_shm_writable(path)
    except DatabaseFault:
        proxy.detach()  # not back to the pool, which would close it on the way
        _stranded.append((proxy, dbapi_connection))
        raise


def check_shm_writable(path: str) -> None:
    """Refuse an SQLite file whose WAL index (`-shm`) cannot be written (a DatabaseFault:
    SQLite would write through a mapping of it and the process would die of SIGBUS)."""
    try:
        quickread.check_shm_writable(path)
    except quickread.WalIndexUnwritable as exc:
        raise DatabaseFault(path, str(exc)) from None


def warm_up() -> None:
    """What a process can do for its database before forking children, so that each
    child only connects: read the migration scripts, load the default (SQLite) dialect
    and set up the ORM mappers.  No connection, no engine, no thread."""
    head_revision()
    make_url("sqlite://").get_dialect().import_dbapi()  # SQLAlchemy imports these lazily
    configure_mappers()


def current_revision(connection: Any) -> str | None:
    if not inspect(connection).has_table("alembic_version"):
        return None
    return connection.execute(text("SELECT version_num FROM alembic_version")).scalar()


#: The PostgreSQL advisory lock key migrations hold (any constant; storeflow's own).
MIGRATION_LOCK = 0x5F0F1057


def migrate(engine: Engine) -> None:
    """Upgrade the schema to the newest revision (a no-op when it is current).

    On PostgreSQL, processes opening a fresh database at once (workers starting their
    first runs) take turns: each holds a transaction-scoped advisory lock while it reads
    the revision and migrates, so the next sees the current schema instead of creating
    the same tables again."""
    head = head_revision()
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
        if current_revision(connection) == head:
            return
        from alembic import command
        from alembic.config import Config

        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS))
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
    database = parsed.database
    if database.startswith("file:"):  # SQLite's URI form (?uri=true): file:PATH
        database = database.removeprefix("file:").split("?", 1)[0]
    return database


def _create_engine(url: str, quick: bool = False) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        path = _sqlite_file(url)
        if path:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})
        event.listen(engine, "connect", _sqlite_quick_pragmas if quick else _sqlite_pragmas)
        if path:
            # Before every checkout, not only at connect: a pooled connection already
            # maps the -shm, and the next commit would write through that mapping.
            event.listen(engine, "checkout", partial(_refuse_unwritable_shm, path))
        return engine
    return create_engine(url, pool_pre_ping=True)


def process_id() -> int:
    """This process's id: engines are kept per process (a test stands in a fork here)."""
    return os.getpid()


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
    with _engine_lock, faults_named(url, opening=True):
        return _engine_for(url, process_id())


def quick_engine_for(url: str) -> Engine:
    """The engine for commits that need not reach the disk at once (see session_scope):
    a second pool on the same SQLite file; the migrated engine itself for anything else."""
    engine = engine_for(url)  # migrates first
    if _sqlite_file(url) is None:
        return engine
    with _engine_lock:
        return _quick_engine_for(url, process_id())


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
    with faults_named(url), _sessions_for(engine)() as session, session.begin():
        yield session
