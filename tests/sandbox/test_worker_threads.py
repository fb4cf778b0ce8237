"""A warm worker outlives the thread whose call started it: copy threads come and go
between deliveries, and the worker answers the next batch without a fresh start."""

import threading
from pathlib import Path
from typing import Any

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
