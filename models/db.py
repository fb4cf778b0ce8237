"""Database engines and sessions for the resource database.

SQLite (a file under the storeflow home) by default; PostgreSQL works the
same. The schema is brought to the newest Alembic revision the first time a
process opens a database.
"""

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
from sqlalchemy.orm import Session, sessionmaker

MIGRATIONS = Path(__file__).with_name("migrations")
_engine_lock = threading.Lock()


def _alembic_config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg


def migrate(engine: Engine) -> None:
    """Upgrade the schema to the newest revision (a no-op when it is current)."""
    cfg = _alembic_config()
    head = ScriptDirectory.from_config(cfg).get_current_head()
    with engine.begin() as connection:
        if MigrationContext.configure(connection).get_current_revision() == head:
            return
        cfg.attributes["connection"] = connection
        command.upgrade(cfg, "head")


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets readers work beside the one writer; busy_timeout makes a writer
    # wait for the lock instead of failing at once under concurrent runs.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def _create_engine(url: str) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(url, pool_pre_ping=True)


@cache
def _engine_for(url: str) -> Engine:
    engine = _create_engine(url)
    migrate(engine)
    return engine


def engine_for(url: str) -> Engine:
    """One migrated engine per database URL per process."""
    with _engine_lock:
        return _engine_for(url)


@contextmanager
def session_scope(url: str) -> Iterator[Session]:
    """A session that commits when the block ends and rolls back on error."""
    factory = sessionmaker(engine_for(url), expire_on_commit=False)
    with factory() as session, session.begin():
        yield session
