"""The least a flow of the transfer flow's shape costs on a Prefect server, copying nothing.

    PREFECT_API_URL=http://127.0.0.1:4200/api .venv/bin/python -m bench.prefect_floor --runs 5

A flow with a run name, three empty tasks (`pre`, `perform`, `post`), a progress and a
table artifact and a named final state: the Prefect bookkeeping that every
`storeflow transfer run` does, whatever it copies.  Run here as cheaply as storeflow can
run anything (`storeflow.cli.runner.run_here` in a process that already ran one flow: no
import, no fork, no CLI), so it is a floor: storeflow end to end cannot be faster than
this plus its copy phase.  bench/transfer.py prints that sum against opentaskpy.
Prints the best of `--runs` in seconds, as JSON.
"""

import argparse
import json
import time

from prefect import flow, task
from prefect.artifacts import create_progress_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.states import Completed, State

from storeflow.cli.runner import run_here


@task(name="pre", cache_policy=NO_CACHE, task_run_name="floor: pre")
def pre() -> None:
    pass


@task(name="perform", cache_policy=NO_CACHE, task_run_name="floor: perform")
def perform() -> None:
    create_progress_artifact(100.0, key="transfer-floor", description="1/1 files")


@task(name="post", cache_policy=NO_CACHE, task_run_name="floor: post")
def post() -> None:
    create_table_artifact([{"item": "files", "value": "1"}], key="transfer-floor-summary")


@flow(name="transfer-floor", flow_run_name="transfer-floor/bench")
def transfer_floor() -> State[None]:
    pre()
    perform()
    post()
    return Completed(name="Delivered")


def floor_seconds(runs: int) -> float:
    run_here(transfer_floor)  # the process's first run pays for imports and clients
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        outcome = run_here(transfer_floor)
        times.append(time.perf_counter() - started)
        if outcome.state_name != "Delivered":
            raise SystemExit(f"the floor flow ended {outcome.state_name}: {outcome.message}")
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="best of N")
    args = parser.parse_args()
    print(json.dumps({"seconds": floor_seconds(args.runs)}))


if __name__ == "__main__":
    main()
