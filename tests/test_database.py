"""The resource database: migrations and the lifecycle's compare-and-set, on SQLite
and on PostgreSQL at 127.0.0.1:5432."""

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text

from storeflow.models import db, repository
from storeflow.models.db import engine_for, session_scope
from storeflow.models.errors import Busy, EtagConflict, NameTaken, NotFound
from storeflow.models.status import Status
from tests.prefect_backend import scratch_database


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'resources.db'}"
        return
    with scratch_database("storeflow_test_resources") as name:
        url = f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
        yield url
        engine_for(url).dispose()


LEASE: dict[str, Any] = {"action": "update", "lease": 60.0}


def test_migrations_create_the_schema(database_url: str) -> None:
    engine = engine_for(database_url)
    inspector = inspect(engine)
    assert {"resources", "alembic_version"} <= set(inspector.get_table_names())
    columns = {c["name"] for c in inspector.get_columns("resources")}
    assert {
        "id",
        "name",
        "etag",
        "status",
        "deleted",
        "spec",
        "created_at",
        "updated_at",
    } <= columns


def test_names_are_unique_per_kind_and_scope(database_url: str) -> None:
    with session_scope(database_url) as session:
        repository.insert(session, "space", "a", {})
        repository.insert(session, "template", "a", {})  # another kind: fine
        repository.insert(session, "snapshot", "a", {}, scope="1")
        repository.insert(session, "snapshot", "a", {}, scope="2")  # another scope: fine
    with pytest.raises(NameTaken), session_scope(database_url) as session:
        repository.insert(session, "space", "a", {})


def test_acquire_is_a_compare_and_set(database_url: str) -> None:
    with session_scope(database_url) as session:
        row = repository.insert(session, "space", "cas", {})
    with session_scope(database_url) as session:
        held = repository.acquire(session, row.id, row.etag, "run-1", Status.INPROGRESS, **LEASE)
    assert held.status is Status.INPROGRESS and held.etag == row.etag + 1
    assert held.last_action == "update" and not repository.lease_expired(held)

    with pytest.raises(EtagConflict), session_scope(database_url) as session:
        repository.acquire(session, row.id, row.etag, "run-2", Status.INPROGRESS, **LEASE)
    with pytest.raises(Busy), session_scope(database_url) as session:
        repository.acquire(session, row.id, held.etag, "run-2", Status.INPROGRESS, **LEASE)
    with session_scope(database_url) as session:  # a lock whose run has ended is taken over
        taken = repository.acquire(
            session,
            row.id,
            held.etag,
            "run-2",
            Status.INPROGRESS,
            **LEASE,
            is_stale=lambda current: current.lock_owner == "run-1",
        )
    assert taken.lock_owner == "run-2"

    with session_scope(database_url) as session:
        assert repository.release(session, row.id, "run-1", Status.ACTIVE) is None  # not its lock
        done = repository.release(session, row.id, "run-2", Status.ACTIVE, spec={"quota": 5})
    assert done is not None and done.status is Status.ACTIVE and done.lock_owner is None
    assert done.spec == {"quota": 5} and done.etag == taken.etag + 1


def test_a_lease_not_renewed_runs_out_and_renewing_keeps_it(database_url: str) -> None:
    with session_scope(database_url) as session:
        row = repository.insert(session, "space", "leased", {})
        held = repository.acquire(
            session, row.id, row.etag, "run-1", Status.INPROGRESS, action="create", lease=0.2
        )
    assert not repository.lease_expired(held)
    time.sleep(0.3)
    with session_scope(database_url) as session:
        assert repository.lease_expired(repository.get(session, row.id))
        assert repository.renew(session, row.id, "run-1", 60)  # its holder is back in time
        assert not repository.lease_expired(repository.get(session, row.id))
        assert not repository.renew(session, row.id, "run-2", 60)  # only the holder renews
        released = repository.release(session, row.id, "run-1", Status.ACTIVE)
    assert released is not None and released.lock_expires_at is None
    assert released.last_action == "create"  # kept: what the last run was doing


def test_missing_resource_is_not_found(database_url: str) -> None:
    with (
        pytest.raises(NotFound, match="space 'ghost' does not exist"),
        session_scope(database_url) as session,
    ):
        repository.find(session, "space", "ghost")


def test_warm_up_reads_the_newest_revision_without_opening_anything(database_url: str) -> None:
    engines = db._engine_for.cache_info().currsize
    db.warm_up()
    assert db._engine_for.cache_info().currsize == engines
    scripts = Config()
    scripts.set_main_option("script_location", str(db.MIGRATIONS))
    newest = ScriptDirectory.from_config(scripts).get_current_head()
    assert db.head_revision() == newest  # Alembic's own answer, from the file names alone

    with engine_for(database_url).connect() as connection:
        assert MigrationContext.configure(connection).get_current_revision() == newest


def test_quick_commits_are_seen_at_once_and_only_skip_the_disk_sync(database_url: str) -> None:
    with session_scope(database_url, durable=False) as session:
        repository.insert(session, "space", "quick", {})
    with session_scope(database_url) as session:  # another connection, another pool
        assert repository.find(session, "space", "quick").name == "quick"
    if database_url.startswith("sqlite"):
        # SQLite's synchronous levels: 1 NORMAL (no fsync per WAL commit), 2 FULL.
        with session_scope(database_url, durable=False) as session:
            assert session.execute(text("PRAGMA synchronous")).scalar() == 1
        with session_scope(database_url) as session:
            assert session.execute(text("PRAGMA synchronous")).scalar() == 2
            assert session.execute(text("PRAGMA journal_mode")).scalar() == "wal"
    else:
        assert db.quick_engine_for(database_url) is engine_for(database_url)


def test_a_forked_process_gets_engines_of_its_own(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    parent = engine_for(database_url)
    monkeypatch.setattr(db, "process_id", lambda: -1)  # what a forked child sees
    child = engine_for(database_url)
    assert child is not parent
    assert engine_for(database_url) is child
    with session_scope(database_url) as session:
        repository.insert(session, "space", "from-child", {})
    child.dispose()


def test_a_current_database_is_opened_without_importing_alembic(tmp_path: Path) -> None:
    """Read-only commands pay nothing for migrations once the schema is current."""
    url = f"sqlite:///{tmp_path / 'current.db'}"
    with session_scope(url):
        pass  # created and migrated by this process
    code = (
        "import sys\n"
        "from storeflow.models.db import session_scope\n"
        f"with session_scope({url!r}): pass\n"
        "print(sorted(m for m in sys.modules if m.startswith('alembic')))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
