"""A transfer fanned out as child runs on two process workers (tasks/transfer/fanout.py):
`storeflow server start --workers 2 --worker-limit 2`, the `transfer` deployment run
through the API with fan_out=3 on 40 files of a few MB.

Three slices, not two: the worker running the parent has one free slot, the other two,
so neither can take every child at once and each runs at least one (with two slices
the idle worker could take both).

While any child runs, nothing is under a final name; at the end every file is there,
byte-identical with its mtime, and no temporary file is left; FILTER ran in the
parent and AFTER_RESULT_RECEIVED in the children for every delivered file, starting
from FILTER's metadata.  A fan-out whose source
files vanish under its children (held in a paused work queue until they are gone) ends
Errored with nothing under a final name and no temporary file."""

import contextlib
import os
import random
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from storeflow.tasks.transfer.metadata import read as read_metadata
from storeflow.tasks.transfer.names import is_temp_name
from tests.e2e.conftest import storeflow_stack
from tests.e2e.server import FINAL, api, create_runs, outcomes, workers_of
from tests.transfer.conftest import local_def

pytestmark = pytest.mark.e2e

FILES = 40
SLICES = 3
RUN_SECONDS = 1200
SKIPPED = "part-39.bin"
# FILTER runs in the parent: it skips one file and tags the others.
TAG = f"""
import utils
def run(req):
    info = utils.get_node_info(req)
    info.metadata['filtered-by'] = 'parent'
    return not info.path.endswith('{SKIPPED}')
"""
# AFTER_RESULT_RECEIVED runs in the children, starting from FILTER's metadata.
SEEN = """
import utils
def run(req):
    info = utils.get_node_info(req)
    info.metadata['seen'] = info.metadata.get('filtered-by', 'none')
    return True
"""


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    work = tmp_path_factory.mktemp("fan-out")
    with storeflow_stack(work, "storeflow_e2e_fanout", 2, 2) as env:
        yield env


def make_tree(root: Path, count: int) -> dict[str, tuple[bytes, int]]:
    """`count` files of 0.5-3 MB with distinct mtimes: name -> (content, mtime_ns)."""
    rng = random.Random(count)
    root.mkdir()
    made = {}
    for i in range(count):
        data = rng.randbytes(rng.randrange(512 * 1024, 3 * 1024 * 1024))
        path = root / f"part-{i:02}.bin"
        path.write_bytes(data)
        mtime = 1_700_000_000_000_000_000 + i * 1_000_000_007
        os.utime(path, ns=(mtime, mtime))
        made[path.name] = (data, mtime)
    return made


def children_of(api_url: str, parent: str) -> list[dict[str, Any]]:
    """The parent's child flow runs (linked through the task run that started them)."""
    runs = api(
        f"{api_url}/flow_runs/filter",
        "POST",
        {"flow_runs": {"parent_flow_run_id": {"any_": [parent]}}, "limit": 100},
    )
    return list(runs)


@contextlib.contextmanager
def children_held(api_url: str) -> Iterator[Callable[[], None]]:
    """Runs of the transfer-batch deployment (a fan-out's children) go to a work queue
    created paused, which no worker polls until `release()` resumes it: the children
    start after what the test does first, whatever the workers' speed.  The deployment
    gets its queue back at the end."""
    deployment = api(f"{api_url}/deployments/name/transfer-batch/transfer-batch")
    pool, queue = deployment["work_pool_name"], deployment["work_queue_name"]
    held = "held-children"
    api(f"{api_url}/work_pools/{pool}/queues", "POST", {"name": held, "is_paused": True})
    api(f"{api_url}/deployments/{deployment['id']}", "PATCH", {"work_queue_name": held})

    def release() -> None:
        api(f"{api_url}/work_pools/{pool}/queues/{held}", "PATCH", {"is_paused": False})

    try:
        yield release
    finally:
        api(f"{api_url}/deployments/{deployment['id']}", "PATCH", {"work_queue_name": queue})
        release()


def run_of(api_url: str, run_id: str) -> dict[str, Any]:
    return dict(api(f"{api_url}/flow_runs/{run_id}"))


def final_names(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if not is_temp_name(p.name))


def watch_until_done(api_url: str, parent: str, dest: Path) -> tuple[dict[str, Any], int]:
    """Wait for the parent, checking all along that no file is under a final name while
    a child runs; returns the parent's run and how many checks saw a child running.
    The listing comes first: a child still running after it means the parent had not
    finalised when the listing was made."""
    deadline = time.monotonic() + RUN_SECONDS
    checked = 0
    while time.monotonic() < deadline:
        listed = final_names(dest)
        children = children_of(api_url, parent)
        if any(c["state"]["type"] not in FINAL for c in children):
            assert listed == [], (listed, outcomes(children))
            checked += 1
        run = run_of(api_url, parent)
        if run["state"]["type"] in FINAL:
            return run, checked
        time.sleep(0.5)
    raise TimeoutError(f"transfer {parent} not finished within {RUN_SECONDS}s")


# The stack's start deploys everything (minutes on a loaded 2-core machine), then a
# parent and its children start as processes.
@pytest.mark.timeout(3000)
def test_a_fanned_out_transfer_is_delivered_by_both_workers_and_finalised_once(
    stack: dict[str, str], tmp_path: Path
) -> None:
    api_url = stack["PREFECT_API_URL"]
    source, dest = tmp_path / "src", tmp_path / "dest"
    tree = make_tree(source, FILES)
    dest.mkdir()
    callbacks = [
        {"name": "tag", "language": "python", "stage": "FILTER", "source": TAG},
        {"name": "seen", "language": "python", "stage": "AFTER_RESULT_RECEIVED", "source": SEEN},
    ]
    parameters = {
        "definition": local_def(source, dest),
        "name": "fan",
        "fan_out": SLICES,
        "callbacks": callbacks,
    }
    [parent] = create_runs(api_url, "transfer", [parameters])

    run, checked = watch_until_done(api_url, parent, dest)

    assert (run["state"]["type"], run["state"]["name"]) == ("COMPLETED", "Delivered"), run
    assert checked > 0  # the destination was looked at while children ran
    children = children_of(api_url, parent)
    batch = api(f"{api_url}/deployments/name/transfer-batch/transfer-batch")
    assert len(children) == SLICES, outcomes(children)
    assert {c["deployment_id"] for c in children} == {batch["id"]}
    assert [(c["state"]["type"], c["state"]["name"]) for c in children] == [
        ("COMPLETED", "Delivered")
    ] * SLICES, outcomes(children)
    ids = [c["id"] for c in children]
    workers = workers_of(api_url, ids)
    assert set(workers) == set(ids), workers
    assert len(set(workers.values())) == 2, workers  # both workers ran a child

    del tree[SKIPPED]
    assert sorted(p.name for p in dest.iterdir()) == sorted(tree)  # no temporary file
    for name, (data, mtime) in tree.items():
        copy = dest / name
        assert copy.read_bytes() == data, name
        assert copy.stat().st_mtime_ns == mtime, name
        # Every delivered file went through AFTER_RESULT_RECEIVED in a child, which saw
        # what FILTER left in the parent.
        assert read_metadata(str(copy)) == {"filtered-by": "parent", "seen": "parent"}, name


@pytest.mark.timeout(3000)
def test_a_fan_out_whose_child_fails_leaves_nothing_final_and_no_temporary_file(
    stack: dict[str, str], tmp_path: Path
) -> None:
    api_url = stack["PREFECT_API_URL"]
    source, dest = tmp_path / "src", tmp_path / "dest"
    make_tree(source, 12)
    dest.mkdir()
    parameters = {"definition": local_def(source, dest), "name": "doomed", "fan_out": SLICES}
    with children_held(api_url) as release:
        [parent] = create_runs(api_url, "transfer", [parameters])
        # Once every child exists (planned; no worker can start one yet), the source
        # goes away under them.
        deadline = time.monotonic() + RUN_SECONDS
        while len(children_of(api_url, parent)) < SLICES:
            assert run_of(api_url, parent)["state"]["type"] not in FINAL, run_of(api_url, parent)
            assert time.monotonic() < deadline, "the child runs were not all created"
            time.sleep(0.2)
        children = children_of(api_url, parent)
        assert {c["state"]["type"] for c in children} == {"SCHEDULED"}, outcomes(children)
        for path in source.iterdir():
            path.unlink()
        release()
        run, _ = watch_until_done(api_url, parent, dest)

    assert (run["state"]["type"], run["state"]["name"]) == ("FAILED", "Errored"), run
    assert "fan-out" in run["state"]["message"], run["state"]["message"]
    children = children_of(api_url, parent)
    assert children and all(c["state"]["type"] in FINAL for c in children), outcomes(children)
    assert any(c["state"]["type"] == "FAILED" for c in children), outcomes(children)
    assert list(dest.iterdir()) == []  # nothing final, no temporary file
