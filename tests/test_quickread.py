"""models/quickread.py: `list` and `show` read a current SQLite database without
SQLAlchemy, with the repository's answers; any other database falls back to it."""

import sqlite3
from pathlib import Path

import pytest

from storeflow.models import quickread, repository
from storeflow.models.db import session_scope
from storeflow.models.errors import NotFound
from storeflow.models.status import Status


def _filled(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'resources.db'}"
    with session_scope(url) as session:
        space = repository.insert(session, "space", "alpha", {"name": "alpha", "quota": 5})
        repository.insert(session, "space", "beta", {"name": "beta"}, status=Status.ERRORED)
        repository.insert(
            session,
            "snapshot",
            "s1",
            {"name": "s1", "nested": {"a": [1, 2]}},
            scope=str(space.id),
            parent_id=space.id,
        )
    return url


def test_answers_are_the_repositorys(tmp_path: Path) -> None:
    url = _filled(tmp_path)
    with session_scope(url) as session:
        spaces = repository.list_kind(session, "space")
        alpha = repository.find(session, "space", "alpha")
        snapshots = repository.list_kind(session, "snapshot", parent_id=alpha.id)
        s1 = repository.find(session, "snapshot", "s1", str(alpha.id))
    assert quickread.list_kind(url, "space") == spaces
    assert [s.status for s in spaces] == [Status.PENDING, Status.ERRORED]
    assert quickread.list_kind(url, "snapshot", ("space", "alpha")) == snapshots
    assert quickread.list_kind(url, "snapshot", ("space", "beta")) == []
    assert quickread.find(url, "space", "alpha") == alpha
    assert quickread.find(url, "snapshot", "s1", ("space", "alpha")) == s1
    assert s1.spec == {"name": "s1", "nested": {"a": [1, 2]}}


def test_a_missing_resource_is_not_found_as_in_the_repository(tmp_path: Path) -> None:
    url = _filled(tmp_path)
    with pytest.raises(NotFound) as quick:
        quickread.find(url, "space", "gamma")
    with session_scope(url) as session, pytest.raises(NotFound) as slow:
        repository.find(session, "space", "gamma")
    assert str(quick.value) == str(slow.value) == "space 'gamma' does not exist"
    with pytest.raises(NotFound, match="space 'gamma'"):
        quickread.list_kind(url, "snapshot", ("space", "gamma"))


def test_anything_but_a_current_sqlite_file_takes_the_repositorys_path(tmp_path: Path) -> None:
    missing = f"sqlite:///{tmp_path / 'none.db'}"
    assert quickread.list_kind(missing, "space") is None
    assert not (tmp_path / "none.db").exists()  # reading creates nothing
    for url in (
        "postgresql+psycopg://postgres@127.0.0.1:5432/test",
        "sqlite://",
        f"sqlite:///file:{tmp_path / 'resources.db'}?mode=ro&uri=true",
    ):
        assert quickread.plain_sqlite_file(url) is None, url
        assert quickread.list_kind(url, "space") is None, url
    url = _filled(tmp_path)
    with sqlite3.connect(tmp_path / "resources.db") as connection:
        connection.execute("UPDATE alembic_version SET version_num = '0001'")
    assert quickread.list_kind(url, "space") is None  # needs migrating: not ours to read
    assert quickread.find(url, "space", "alpha") is None


def test_the_database_is_opened_read_only(tmp_path: Path) -> None:
    url = _filled(tmp_path)
    before = (tmp_path / "resources.db").read_bytes()
    assert quickread.list_kind(url, "space")
    assert (tmp_path / "resources.db").read_bytes() == before
