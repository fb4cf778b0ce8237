"""Calls per second of a trivial callback: Python and JavaScript, warm
(one worker answering many calls) and cold (a fresh jailed worker per call),
beside a plain in-process Python call measured in the same run.

    .venv/bin/python bench/callbacks.py [--warm N] [--cold N] [--all-cores]

By default the bench pins itself and its workers to one core (the target is
"on one core"); --all-cores lets the scheduler spread them.
"""

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from storeflow.sandbox.models import CallbackRequest, NodeInfo, Stage, TaskInfo
from storeflow.sandbox.settings import SandboxSettings
from storeflow.sandbox.worker import CallbackWorker, run_once

TARGET_WARM = 3000.0
PYTHON_CB = "import utils\ndef run(req):\n    return utils.get_node_info(req).size > 0\n"
JS_CB = (
    "const utils = require('./utils')\n"
    "module.exports = (req) => utils.getNodeInfo(req).getSize() > 0\n"
)


class _Info:
    size = 1


def _plain(req: object) -> bool:
    return _Info.size > 0


def _rate(count: int, call: Callable[[], object]) -> float:
    started = time.perf_counter()
    for _ in range(count):
        call()
    return count / (time.perf_counter() - started)


def _warm(language: str, source: str, request: CallbackRequest, count: int) -> float:
    worker = CallbackWorker(language, source, "bench", SandboxSettings())
    try:
        for _ in range(50):  # start the worker and let it settle
            assert worker.call(request).truthy
        return _rate(count, lambda: worker.call(request))
    finally:
        worker.close()


def _cold_call(language: str, source: str, request: CallbackRequest) -> None:
    outcome = run_once(language, source, "bench", request, SandboxSettings())
    assert outcome.truthy, outcome.error


def _cold_caller(language: str, source: str, request: CallbackRequest) -> Callable[[], None]:
    return lambda: _cold_call(language, source, request)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--warm", type=int, default=5000)
    parser.add_argument("--cold", type=int, default=20)
    parser.add_argument("--all-cores", action="store_true")
    args = parser.parse_args()
    if not args.all_cores:
        core = min(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {core})  # workers inherit the mask
    with tempfile.NamedTemporaryFile() as handle:
        handle.write(b"x")
        handle.flush()
        request = CallbackRequest(
            stage=Stage.FILTER, task=TaskInfo(id="bench"), node=NodeInfo.from_path(handle.name)
        )
        baseline = _rate(max(args.warm * 100, 100_000), lambda: _plain(request))
        rows = [("in-process Python call (baseline)", baseline)]
        for language, source in (("python", PYTHON_CB), ("javascript", JS_CB)):
            rows.append((f"{language} warm", _warm(language, source, request, args.warm)))
            cold = _rate(args.cold, _cold_caller(language, source, request))
            rows.append((f"{language} cold", cold))
    cores = "all cores" if args.all_cores else "1 core"
    print(f"trivial callback, {cores}, warm n={args.warm}, cold n={args.cold}")
    print(f"{'':36} {'calls/s':>12} {'us/call':>10} {'x slower':>10}")
    for name, rate in rows:
        print(f"{name:36} {rate:12,.0f} {1e6 / rate:10.1f} {baseline / rate:10,.0f}")
    for name, rate in rows:
        if name.endswith("warm"):
            verdict = "meets" if rate >= TARGET_WARM else "MISSES"
            print(f"{name}: {verdict} the {TARGET_WARM:,.0f} calls/s target")


if __name__ == "__main__":
    main()
