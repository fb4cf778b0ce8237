"""Lifecycle overhead, as ratios against Prefect itself measured in the same run.

1. In-process, ephemeral server: a space create (pre/perform/post, hooks with the
   audit driver) against a bare flow with three no-op tasks.
2. Against a running `prefect server start` (PostgreSQL-backed, 127.0.0.1):
   operations per minute for N space creates, beside N bare flows.

    .venv/bin/python -m bench.lifecycle [--n 100] [--repeat 20]

Prints a table; asserts nothing (targets: create <= 1.5x the bare flow).
"""

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from prefect import flow, task
from prefect.settings import PREFECT_API_URL, PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings


@task
def noop() -> None:
    return None


@flow(name="bare-three-tasks")
def bare_flow() -> None:
    noop()
    noop()
    noop()


def timed(fn: Callable[[int], Any], n: int) -> list[float]:
    times = []
    for i in range(n):
        start = time.perf_counter()
        fn(i)
        times.append(time.perf_counter() - start)
    return times


def measure(label: str, repeat: int, prefix: str) -> tuple[float, float]:
    """Median seconds of a bare three-task flow and of a space create, same conditions."""
    from storeflow.flows.spaces import space_create
    from storeflow.models.schemas import SpaceSpec

    def create(i: int) -> None:
        state = space_create(SpaceSpec(name=f"{prefix}-{i}"), return_state=True)
        assert state.is_completed(), state

    bare_flow()  # warm both paths once
    create(10_000)
    bare = timed(lambda _: bare_flow(), repeat)
    ours = timed(create, repeat)
    return statistics.median(bare), statistics.median(ours)


def server_section(n: int, root: Path) -> tuple[float, float]:
    from tests.e2e.server import PREFECT, free_port, started, wait_until_healthy
    from tests.prefect_backend import prefect_environment, scratch_database

    port = free_port()
    api_url = f"http://127.0.0.1:{port}/api"
    with scratch_database("storeflow_bench_prefect") as database:
        env = {**os.environ, **prefect_environment(root / "server-home", database)}
        env.pop("PREFECT_API_URL")
        env.pop("PREFECT_FLOWS_HEARTBEAT_FREQUENCY")
        log = root / "server.log"
        cmd = [PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(port)]
        with started(cmd, env, log, root) as server:
            wait_until_healthy(api_url, server, log, 180)
            with temporary_settings({PREFECT_API_URL: api_url}):
                bare, ours = measure("server", n, "srv")
    return bare, ours


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=100, help="creates through the server")
    parser.add_argument("--repeat", type=int, default=20, help="in-process repetitions")
    parser.add_argument("--skip-server", action="store_true")
    args = parser.parse_args()

    from tests.prefect_backend import (
        prefect_environment,
        scratch_database,
        stop_ephemeral_prefect,
    )

    with (
        tempfile.TemporaryDirectory(prefix="storeflow-bench-") as tmp,
        scratch_database("storeflow_bench_ephemeral") as ephemeral_db,
    ):
        root = Path(tmp)
        # The ephemeral server on PostgreSQL too: on SQLite it answers 503s that
        # the client retries after seconds, which would measure SQLite, not us.
        os.environ.update(prefect_environment(root / "prefect-home", ephemeral_db))
        os.environ.pop("PREFECT_API_URL")
        os.environ.pop("PREFECT_FLOWS_HEARTBEAT_FREQUENCY")
        os.environ["STOREFLOW_HOME"] = str(root / "storeflow")
        os.environ["STOREFLOW_HOOK_DRIVERS"] = "storeflow.tasks.hook_drivers.audit:AuditHook"
        rows = []
        with temporary_settings({PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
            bare, ours = measure("ephemeral", args.repeat, "eph")
            rows.append(("ephemeral, in-process (median s/op)", bare, ours))
            stop_ephemeral_prefect()
            if not args.skip_server:
                bare_s, ours_s = server_section(args.n, root)
                rows.append((f"prefect server, {args.n} ops (median s/op)", bare_s, ours_s))

    print(f"{'scenario':45} {'bare flow':>10} {'space create':>13} {'ratio':>7} {'ops/min':>8}")
    for label, bare, ours in rows:
        print(f"{label:45} {bare:10.3f} {ours:13.3f} {ours / bare:7.2f} {60 / ours:8.0f}")
    print("target: ratio <= 1.5 (storeflow's own overhead small beside Prefect's)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
