"""Processes that open a fresh PostgreSQL resource database at once (workers starting
their first runs on a new deployment) all get the migrated schema: none fails creating
tables another is creating."""

import subprocess
import sys

from tests.prefect_backend import scratch_database

OPENERS = 5
OPEN = (
    "import sys\n"
    "from sqlalchemy import inspect\n"
    "from storeflow.models.db import engine_for\n"
    "print(sorted(inspect(engine_for(sys.argv[1])).get_table_names()))\n"
)


def test_processes_opening_a_fresh_database_at_once_all_migrate_it() -> None:
    with scratch_database("storeflow_test_migrate") as database:
        url = f"postgresql+psycopg://postgres@127.0.0.1:5432/{database}"
        openers = [
            subprocess.Popen(
                [sys.executable, "-c", OPEN, url],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                stdin=subprocess.DEVNULL,
                text=True,
            )
            for _ in range(OPENERS)
        ]
        answers = [(p.communicate(timeout=300), p.returncode) for p in openers]

    assert [code for _, code in answers] == [0] * OPENERS, [err for (_, err), _ in answers]
    tables = {out for (out, _), _ in answers}
    assert len(tables) == 1 and "alembic_version" in tables.pop()
