"""The resource database read-only, full, locked or gone: one line naming the database
and the cause, never a driver's traceback and never a signal death.

Faults that would end a process (a file size limit, SIGBUS from a mapped WAL index)
are provoked in a child process, so the test session survives whatever happens.
"""

import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from storeflow.models import db

STOREFLOW = str(Path(sys.executable).with_name("storeflow"))

CHILD = """
import subprocess, sys
from sqlalchemy import create_engine, text
from storeflow.models import db
url = sys.argv[1]
with db.session_scope(url) as s:
    s.execute(text("CREATE TABLE IF NOT EXISTS filler (x)"))
BREAK
try:
    with db.session_scope(url) as s:
        s.execute(text("INSERT INTO filler VALUES (zeroblob(1000000))"))
except db.DatabaseFault as exc:
    print(exc, flush=True)
    sys.exit(3)
print("no fault", flush=True)
"""


def run_child(url: str, breaking: str) -> subprocess.CompletedProcess[str]:
    code = CHILD.replace("BREAK", breaking)
    return subprocess.run(
        [sys.executable, "-c", code, url], capture_output=True, text=True, timeout=120
    )


def test_a_full_disk_mid_run_is_one_line(tmp_path: Path) -> None:
    """The file size limit (RLIMIT_FSIZE, which binds root too) reached after the
    database was opened: SQLite says 'disk is full', the process says so and exits."""
    path = tmp_path / "storeflow.db"
    url = f"sqlite:///{path}"
    limit = "import resource; resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))"
    result = run_child(url, limit)
    assert result.returncode == 3, result.stderr  # an exception, not SIGXFSZ
    assert result.stdout.strip().splitlines() == [
        f"resource database {path}: a write failed (no space left, the file size limit "
        "reached, or a disk error)"
    ]
    with db.session_scope(url) as session:  # rolled back: nothing half-written
        assert session.execute(text("SELECT count(*) FROM filler")).scalar() == 0


def test_a_read_only_database_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "storeflow.db"
    with db.session_scope(f"sqlite:///{path}") as session:
        session.execute(text("select 1"))
    # SQLite's own read-only open: what a read-only mount or file gives, and root too.
    read_only = f"sqlite:///file:{path}?mode=ro&uri=true"
    with pytest.raises(db.DatabaseFault) as caught, db.session_scope(read_only) as session:
        session.execute(text("CREATE TABLE t (x)"))
    assert str(caught.value) == (
        f"resource database {path}: read-only: this process cannot write it "
        "(file, directory or mount)"
    )


def test_a_locked_database_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "storeflow.db"
    url = f"sqlite:///{path}"
    with db.session_scope(url) as session:
        session.execute(text("select 1"))
    holder = sqlite3.connect(path, isolation_level=None)
    # The same driver error storeflow's engine gives after its 30 s busy timeout,
    # without the wait.
    impatient = create_engine(url, connect_args={"timeout": 0})
    try:
        holder.execute("BEGIN EXCLUSIVE")
        with (
            pytest.raises(db.DatabaseFault) as caught,
            db.faults_named(url),
            impatient.begin() as connection,
        ):
            connection.execute(text("CREATE TABLE t2 (x)"))
    finally:
        holder.close()
        impatient.dispose()
    assert str(caught.value) == (
        f"resource database {path}: locked by another process for longer than the busy timeout"
    )


def test_a_database_in_a_missing_place_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "not-a-dir").write_text("")
    url = f"sqlite:///{tmp_path / 'not-a-dir' / 'storeflow.db'}"
    refused = pytest.raises(db.DatabaseFault, match=r"^resource database .*not-a-dir/storeflow.db")
    with refused, db.session_scope(url):
        pass


def test_an_unwritable_wal_index_is_refused_not_a_sigbus(tmp_path: Path) -> None:
    """SQLite writes its WAL index through a shared mapping of the -shm file; a file made
    immutable under a running process used to kill it with SIGBUS at the next commit."""
    if shutil.which("chattr") is None:  # no skip: the case matters most where it is missing
        pytest.fail("needs chattr: apt-get install e2fsprogs (Debian installs it)", pytrace=False)
    path = tmp_path / "storeflow.db"
    url = f"sqlite:///{path}"
    probe = tmp_path / "probe"
    probe.write_text("")
    if subprocess.run(["chattr", "+i", str(probe)], capture_output=True).returncode != 0:
        pytest.fail(
            f"cannot set the immutable flag under {tmp_path} (filesystem or user): "
            "run the tests as root on ext4/xfs (pytest --basetemp=DIR)",
            pytrace=False,
        )
    subprocess.run(["chattr", "-i", str(probe)], check=True)
    breaking = f"subprocess.run(['chattr', '+i', {str(path) + '-shm'!r}], check=True)"
    try:
        result = run_child(url, breaking)
    finally:
        subprocess.run(["chattr", "-i", f"{path}-shm"], capture_output=True)
    assert result.returncode == 3, (result.returncode, result.stderr)
    assert result.stdout.strip() == (
        f"resource database {path}: its WAL index {path}-shm cannot be written (immutable)"
    )


def test_the_cli_names_the_database_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "not-a-dir").write_text("")
    env = {
        **os.environ,
        "STOREFLOW_DATABASE_URL": f"sqlite:///{tmp_path / 'not-a-dir' / 'storeflow.db'}",
        "STOREFLOW_WARM": "off",
    }
    result = subprocess.run(
        [STOREFLOW, "space", "list"], env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: resource database "), result.stderr
    assert "not-a-dir/storeflow.db" in lines[0]
