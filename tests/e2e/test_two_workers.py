"""Two process workers on one pool, PostgreSQL for both databases, as
`storeflow server start --workers 2` brings them up: 20 space updates created at once
through the Prefect API on 5 spaces (4 each, no etag: last writer wins).  Both workers
run some; on no space do two runs work at once; none is lost."""

import json
from collections.abc import Iterator
from datetime import datetime
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import storeflow, storeflow_stack
from tests.e2e.server import api, create_runs, outcomes, wait_for_all, workers_of

pytestmark = pytest.mark.e2e

SPACES = [f"busy-{i}" for i in range(5)]
UPDATES_PER_SPACE = 4
# Every write of a resource bumps its etag: an update marks it INPROGRESS, then ACTIVE.
WRITES_PER_UPDATE = 2
RUNS_SECONDS = 1200


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """`storeflow server start --workers 2`, Prefect's and storeflow's databases on
    fresh PostgreSQL databases (dropped at the end).  Each worker takes 3 runs at once:
    without a limit the first worker to poll would take all 20."""
    work = tmp_path_factory.mktemp("two-workers")
    # 4 runs queue for each space on a loaded machine: wait for the lock, not 60 s.
    with storeflow_stack(work, "storeflow_e2e_two", 2, 3, STOREFLOW_LOCK_WAIT="600") as env:
        yield env


def window(run: dict[str, Any]) -> tuple[datetime, datetime]:
    """When a flow or task run ran: its start and end times, as the server recorded them."""
    return datetime.fromisoformat(run["start_time"]), datetime.fromisoformat(run["end_time"])


def overlap(one: tuple[datetime, datetime], other: tuple[datetime, datetime]) -> bool:
    return one[0] < other[1] and other[0] < one[1]


def perform_windows(api_url: str, ids: list[str]) -> dict[str, tuple[datetime, datetime]]:
    """Flow run id -> when its `perform` task ran (always inside the resource's lock)."""
    tasks = api(
        f"{api_url}/task_runs/filter",
        "POST",
        {"flow_runs": {"id": {"any_": ids}}, "limit": 200},
    )
    return {t["flow_run_id"]: window(t) for t in tasks if t["name"].endswith(": perform")}


def show(env: dict[str, str], name: str) -> dict[str, Any]:
    shown = storeflow(env, "space", "show", name, "--json")
    assert shown.returncode == 0, shown.stdout + shown.stderr
    return dict(json.loads(shown.stdout))


# The stack's start deploys everything (minutes on a loaded 2-core machine), then 25
# process runs share it.
@pytest.mark.timeout(3000)
def test_twenty_updates_on_two_workers_never_overlap_and_none_is_lost(
    stack: dict[str, str], tmp_path: Path
) -> None:
    api_url = stack["PREFECT_API_URL"]
    created = create_runs(api_url, "space-create", [{"spec": {"name": s}} for s in SPACES])
    made = wait_for_all(api_url, created, RUNS_SECONDS)
    assert {r["state"]["name"] for r in made} == {"Active"}, outcomes(made)
    before = {s: show(stack, s)["etag"] for s in SPACES}

    # quota i+1 MiB for the i-th update of each space: which one was last is readable.
    # Created space by space: whichever worker polls first takes (up to its limit of 3)
    # runs of one space at once, so the runs are sure to contend for its lock.
    updates: list[dict[str, Any]] = [
        {"name": space, "changes": {"quota": f"{i + 1}M"}}
        for space in SPACES
        for i in range(UPDATES_PER_SPACE)
    ]
    ids = create_runs(api_url, "space-update", updates)
    runs = wait_for_all(api_url, ids, RUNS_SECONDS)

    assert [r["state"]["name"] for r in runs] == ["Active"] * len(ids), outcomes(runs)
    workers = workers_of(api_url, ids)
    assert set(workers) == set(ids), workers
    assert len(set(workers.values())) == 2, workers  # both workers ran some

    windows = perform_windows(api_url, ids)
    assert set(windows) == set(ids)
    space_of = {run_id: p["name"] for run_id, p in zip(ids, updates, strict=True)}
    # The runs did contend: two runs of one space were running at once (a worker took
    # several of one space), so that their `perform` never overlapped is the lock's doing.
    running = {r["id"]: window(r) for r in runs}
    assert any(
        space_of[a] == space_of[b] and overlap(running[a], running[b])
        for a in ids
        for b in ids
        if a < b
    ), running
    quota_of = {run_id: p["changes"]["quota"] for run_id, p in zip(ids, updates, strict=True)}
    for space in SPACES:
        mine = sorted((windows[r], r) for r in ids if space_of[r] == space)
        for (earlier, _), (later, _) in pairwise(mine):
            assert not overlap(earlier, later), (space, mine)  # one run at a time
        after = show(stack, space)
        # Every update applied (none lost), and the last to work is the one that stands.
        assert after["etag"] == before[space] + UPDATES_PER_SPACE * WRITES_PER_UPDATE, after
        last = mine[-1][1]
        assert after["spec"]["quota"] == int(quota_of[last].removesuffix("M")) * 1024**2, after
        assert after["lock_owner"] is None
