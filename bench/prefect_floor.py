"""The least a flow of the transfer flow's shape costs on a Prefect server, copying nothing.

    PREFECT_API_URL=http://127.0.0.1:4200/api .venv/bin/python -m bench.prefect_floor --runs 5
    PREFECT_API_URL=... .venv/bin/python -m bench.prefect_floor --serve   # one run per line

A flow with a run name, three empty tasks (`pre`, `perform`, `post`), a progress and a
table artifact, the outcome event (`storeflow.transfer.run.delivered`) and a named final
state: the Prefect bookkeeping that every `storeflow transfer run` does, whatever it
copies.  Run here as cheaply as storeflow can run anything (`storeflow.cli.runner.run_here`
in a process that already ran one flow: no import, no fork, no CLI), so it is a floor:
storeflow end to end cannot be faster than this plus its copy phase.  bench/transfer.py
prints that sum against opentaskpy and against storeflow end to end.

Prints the best of `--runs` in seconds, as JSON; with `--serve`, runs one flow for each
line read from stdin and answers each with its seconds, so that a bench can time it in
turns with the contenders it is compared with.
"""

import argparse
import json
import sys
import time

from prefect import flow, task
from prefect.artifacts import create_progress_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.events import emit_event
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
    # As the transfer's TransferSkeleton.announce does (tasks/inventory.py:emit_outcome).
    emit_event(
        event="storeflow.transfer.run.delivered",
        resource={"prefect.resource.id": "storeflow.transfer.floor"},
        payload={"message": "transfer-floor: 1 files"},
    )
    return Completed(name="Delivered")


def one_run() -> float:
    """Seconds of one floor run; fails unless it ended Delivered."""
    started = time.perf_counter()
    outcome = run_here(transfer_floor)
    seconds = time.perf_counter() - started
    if outcome.state_name != "Delivered":
        raise SystemExit(f"the floor flow ended {outcome.state_name}: {outcome.message}")
    return seconds


def floor_seconds(runs: int) -> float:
    one_run()  # the process's first run pays for imports and clients
    return min(one_run() for _ in range(runs))


def serve() -> None:
    """One run per line of stdin, each answered with its seconds (JSON); "ready" first,
    once the process's first run (imports, clients) is behind it."""
    one_run()
    print(json.dumps({"ready": True}), flush=True)
    for _ in sys.stdin:
        print(json.dumps({"seconds": one_run()}), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="best of N")
    parser.add_argument("--serve", action="store_true", help="one run per line of stdin")
    args = parser.parse_args()
    if args.serve:
        serve()
        return
    print(json.dumps({"seconds": floor_seconds(args.runs)}))


if __name__ == "__main__":
    main()
