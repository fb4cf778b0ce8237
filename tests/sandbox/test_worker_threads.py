"""A warm worker outlives the thread whose call started it: copy threads come and go
between deliveries, and the worker answers the next batch without a fresh start."""

import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from storeflow.sandbox.models import Language, Stage
from storeflow.sandbox.settings import SandboxSettings
from storeflow.sandbox.stages import CallbackSet, FileOutcome
from tests.sandbox.helpers import node_for, one_callback

AFTER = "def run(req):\n    return req.result.status\n"


def test_worker_started_by_a_thread_that_ended_stays_warm(
    settings: SandboxSettings, tmp_path: Path
) -> None:
    path = tmp_path / "f"
    path.write_text("x")
    nodes = [node_for(path)]
    results: list[dict[str, Any]] = [
        {"status": "SUCCESS", "error": None, "destination": str(path), "details": {}}
    ]
    with CallbackSet(
        [one_callback(Language.PYTHON, AFTER, Stage.AFTER_RESULT_RECEIVED)],
        task_id="t",
        policy=settings,
    ) as cbs:
        for _ in range(3):
            # Each delivery's copy thread calls, then ends.
            answers: list[FileOutcome] = []

            def deliver(into: list[FileOutcome] = answers) -> None:
                into.extend(cbs.after_results(nodes, results))

            thread = threading.Thread(target=deliver)
            thread.start()
            thread.join()
            assert [a.calls[0].outcome.result for a in answers] == ["SUCCESS"]
        worker = next(iter(cbs._workers.values()))
        assert worker.starts == 1


def test_a_forked_child_starts_workers_of_its_own(
    settings: SandboxSettings, tmp_path: Path
) -> None:
    """A child forked after the parent started a worker (the warm runner forks) has no
    copy of the starting thread: it starts one of its own instead of waiting forever."""
    path = tmp_path / "f"
    path.write_text("x")
    callback = one_callback(Language.PYTHON, "def run(req):\n    return True\n")
    with CallbackSet([callback], task_id="t", policy=settings) as cbs:
        assert cbs.filter_many([node_for(path)])[0].keep
    pid = os.fork()
    if pid == 0:  # the child: exit status 0 only if its own worker answered
        code = 1
        try:
            with CallbackSet([callback], task_id="t", policy=settings) as cbs:
                code = 0 if cbs.filter_many([node_for(path)])[0].keep else 1
        finally:
            os._exit(code)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            assert os.waitstatus_to_exitcode(status) == 0
            return
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    pytest.fail("the forked child's callback never answered")
