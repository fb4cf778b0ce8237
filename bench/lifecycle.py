"""Lifecycle overhead, as ratios against Prefect itself measured in the same run.

1. In-process, ephemeral server: a space create (pre/perform/post, hooks with the
   audit driver) against the same Prefect calls made plainly: a flow asking of Prefect
   what a space create asks (a named run, three tasks, the two table artifacts and the
   event the Prefect UI shows, a named final state), written as a flow author would
   (the artifacts and event in the last task), doing nothing else.  The ratio is
   storeflow's own overhead beside Prefect's: its database, hooks, lock and lease.
   Against a bare flow of three no-op tasks too, as before the console's artifacts
   and events existed.
2. The lease on the resource lock (tasks/lifecycle.py: LeaseKeeper): every create
   above runs with the default lease (STOREFLOW_LOCK_LEASE unset: 60 s, its renewal
   thread started and stopped by each run); this row times creates that install a
   template (perform busy for about a second) with a lease so short (0.5 s) that the
   thread renews it every 0.17 s, against a lease so long (86400 s) that it never
   renews, and counts the renewals.
3. A template's install (what a space create from a template copies) against
   `cp -a` of the same tree, taking turns.
4. Against a running `prefect server start` (PostgreSQL-backed, 127.0.0.1):
   operations per minute for N space creates, beside N plain and N bare flows.

Beside each create, the same create without its announce (the artifacts and event the
Prefect UI shows), to keep what the console costs visible.  The contenders take turns
in blocks of five runs.

    .venv/bin/python -m bench.lifecycle [--n 100] [--repeat 20]

Prints a table; asserts nothing (target: create <= 1.5x the plain flow).
"""

import argparse
import contextlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from prefect import flow, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.events import emit_event
from prefect.logging.handlers import APILogWorker
from prefect.settings import PREFECT_API_URL, PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings
from prefect.states import Completed, State


@task
def noop() -> None:
    return None


@flow(name="bare-three-tasks")
def bare_flow() -> None:
    noop()
    noop()
    noop()


# The columns of the space inventory (tasks/inventory.py: name, status, etag and the
# kind's columns); the plain flow writes a table of the same shape and size.
INVENTORY_HEADERS = (
    "name",
    "status",
    "etag",
    "quota",
    "usage",
    "template",
    "snapshots",
    "exposers",
)


@task(name="post", cache_policy=NO_CACHE, task_run_name="space-plain/{i}: post")
def plain_post(i: int, spaces: int) -> None:
    """What a space create's post step asks of Prefect, the plain way: the inventory
    (a keyed table, one row per space), the resource (a table on the run) and the
    outcome event (tasks/inventory.py)."""
    name = f"plain-{i}"
    rows = [dict.fromkeys(INVENTORY_HEADERS, str(n)) for n in range(max(1, spaces))]
    create_table_artifact(rows, key="bench-plain-spaces", description=f"{spaces} space(s)")
    fields = ["kind", "name", "status", "etag", "message", "spec.name", "spec.quota"]
    create_table_artifact([{"field": field, "value": name} for field in fields])
    emit_event(
        event="storeflow.space.create.active",
        resource={"prefect.resource.id": f"storeflow.space.{name}", "storeflow.name": name},
        payload={"message": f"space {name!r} created"},
    )


@flow(name="space-plain", flow_run_name="space-plain/{i}")
def plain_flow(i: int, spaces: int) -> State[None]:
    """Prefect's share of a space create: a named run, three tasks, two table artifacts,
    an event and a named final state; storeflow's own work (its database, hooks, lock
    and lease, the space's directory) left out."""
    noop()
    noop()
    plain_post(i, spaces)
    return Completed(name="Active")


def creating(prefix: str) -> Callable[[int], None]:
    """A function making space `<prefix>-<i>` (a lifecycle run through the skeleton)."""
    from storeflow.flows.spaces import space_create
    from storeflow.models.schemas import SpaceSpec

    def create(i: int) -> None:
        state = space_create(SpaceSpec(name=f"{prefix}-{i}"), return_state=True)
        assert state.is_completed(), state

    return create


@contextlib.contextmanager
def announce_off() -> Iterator[None]:
    """Lifecycle runs without their post-step announce (the inventory and resource
    artifacts and the outcome event the Prefect UI shows): to show what that costs."""
    from storeflow.tasks.lifecycle import OperationRun

    real = OperationRun.announce
    OperationRun.announce = lambda self, results, state: None  # type: ignore[method-assign]
    try:
        yield
    finally:
        OperationRun.announce = real  # type: ignore[method-assign]


def measure(repeat: int, prefix: str, block: int = 5) -> dict[str, float]:
    """Median seconds per op of a bare three-task flow, the same Prefect calls
    made plainly (plain_flow), a space create, and a space create without its announce, same
    conditions (the default lease: STOREFLOW_LOCK_LEASE
    unset).  The contenders take turns in blocks of `block` runs: a run leaves the
    server work to finish (its events), which the next run pays for, so each block runs
    back to back; and turns keep the machine's drift from deciding the ratio."""
    created = [1_000_000]  # the spaces in the creates' inventory
    make = creating(prefix)

    def create(i: int) -> None:
        make(i)
        created.append(i)

    bare_flow()  # warm every path once
    create(1_000_000)
    plain_flow(1_000_000, 1)
    contenders: dict[str, Callable[[int], Any]] = {
        "bare": lambda _: bare_flow(),
        "plain": lambda i: plain_flow(i, len(created)),  # as many inventory rows
        "create": create,
        "create, no announce": create,
    }
    per_op: dict[str, list[float]] = {name: [] for name in contenders}
    made = 0
    for _ in range(max(1, repeat // block)):
        for name, run in contenders.items():
            quiet = announce_off() if name.endswith("no announce") else contextlib.nullcontext()
            with quiet:
                start = time.perf_counter()
                for _ in range(block):
                    run(made)
                    made += 1
                per_op[name].append((time.perf_counter() - start) / block)
    return {name: statistics.median(times) for name, times in per_op.items()}


@contextlib.contextmanager
def lease_of(seconds: str | None) -> Iterator[None]:
    """STOREFLOW_LOCK_LEASE set to `seconds` (None: unset, the default) for the block."""
    saved = os.environ.pop("STOREFLOW_LOCK_LEASE", None)
    if seconds is not None:
        os.environ["STOREFLOW_LOCK_LEASE"] = seconds
    try:
        yield
    finally:
        os.environ.pop("STOREFLOW_LOCK_LEASE", None)
        if saved is not None:
            os.environ["STOREFLOW_LOCK_LEASE"] = saved


@contextlib.contextmanager
def counting_renewals() -> Iterator[list[int]]:
    """Counts the lease renewals LeaseKeeper threads make (successful ones), to show the
    renewing row really renewed."""
    from storeflow.models import repository

    real = repository.renew
    count = [0]

    def renew(*args: Any, **kwargs: Any) -> bool:
        renewed = real(*args, **kwargs)
        count[0] += int(renewed)
        return renewed

    repository.renew = renew
    try:
        yield count
    finally:
        repository.renew = real


def template_tree(root: Path, files: int = 2000, size: int = 4096) -> Path:
    """A tree whose install keeps perform busy long enough (a few tenths of a second
    here) for a short lease to be renewed while the run holds the space."""
    (root / "data").mkdir(parents=True)
    for i in range(files):
        (root / "data" / f"f{i:04}.bin").write_bytes(os.urandom(size))
    return root


def lease_section(repeat: int, root: Path) -> tuple[float, float, int]:
    """Median seconds of a create installing a template with a 86400 s lease (never
    renewed) and with a 0.5 s lease (renewed every 0.17 s while perform copies),
    interleaved so load drifts hit both; and the renewals made."""
    from storeflow.flows.spaces import space_create, space_delete
    from storeflow.flows.templates import template_create
    from storeflow.models.schemas import SpaceSpec, TemplateSpec

    spec = TemplateSpec(name="lease", source=template_tree(root))
    made = template_create(spec, return_state=True)
    assert made.is_completed(), made

    def create(i: int) -> None:
        state = space_create(SpaceSpec(name=f"lease-{i}", template="lease"), return_state=True)
        assert state.is_completed(), state

    never: list[float] = []
    renewing: list[float] = []
    with counting_renewals() as renewals:
        for i in range(repeat):
            for lease, times, n in (("86400", never, 2 * i), ("0.5", renewing, 2 * i + 1)):
                with lease_of(lease):
                    start = time.perf_counter()
                    create(n)
                    times.append(time.perf_counter() - start)
                # Not timed: the disk does not fill up with installed copies.
                space_delete(f"lease-{n}", force=True, return_state=True)
    return statistics.median(never), statistics.median(renewing), renewals[0]


def install_section(root: Path, turns: int = 5) -> tuple[float, float]:
    """Median seconds of a template's install into a new directory (what a space
    create from a template copies: tasks/fstools.py:install_tree) and of `cp -a` of
    the same tree, taking turns; each turn starts after os.sync(), untimed."""
    from storeflow.tasks import fstools

    source = template_tree(root / "install-source")
    copies: dict[str, Callable[[Path], object]] = {
        "cp -a": lambda dest: subprocess.run(
            ["cp", "-a", f"{source}/.", str(dest)], check=True, timeout=300
        ),
        "install": lambda dest: fstools.install_tree(source, dest),
    }
    times: dict[str, list[float]] = {name: [] for name in copies}
    for turn in range(turns):
        for name, copy in copies.items():
            dest = root / f"install-{turn}-{name.replace(' ', '')}"
            dest.mkdir()
            os.sync()
            start = time.perf_counter()
            copy(dest)
            times[name].append(time.perf_counter() - start)
            shutil.rmtree(dest)
    return statistics.median(times["install"]), statistics.median(times["cp -a"])


def server_section(n: int, root: Path) -> dict[str, float]:
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
                figures = measure(n, "srv")
                # The runs' last log lines reach the server before it stops.
                APILogWorker.drain_all(timeout=5)
                return figures


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
        with temporary_settings({PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}), lease_of(None):
            rows.append(("ephemeral, in-process", measure(args.repeat, "eph")))
            never, renewing, renewals = lease_section(args.repeat, root / "lease-template")
            install, cp_a = install_section(root)
            stop_ephemeral_prefect()
            if not args.skip_server:
                rows.append((f"prefect server, {args.n} ops", server_section(args.n, root)))

    print(f"load average at the end: {os.getloadavg()[0]:.2f}")
    print(
        f"{'median s/op':28} {'bare':>6} {'plain':>6} {'create':>7} {'/plain':>7} {'/bare':>6} "
        f"{'no announce':>12} {'/bare':>6} {'ops/min':>8}"
    )
    for label, figures in rows:
        bare, plain, ours = figures["bare"], figures["plain"], figures["create"]
        quiet = figures["create, no announce"]
        print(
            f"{label:28} {bare:6.3f} {plain:6.3f} {ours:7.3f} {ours / plain:7.2f} "
            f"{ours / bare:6.2f} {quiet:12.3f} {quiet / bare:6.2f} {60 / ours:8.0f}"
        )
    print("target: space create <= 1.5x plain (storeflow's own overhead small beside")
    print(" Prefect's); every create runs with the crash detection on (the default 60 s")
    print(" lease: its LeaseKeeper thread runs)")
    print("bare: a flow of three no-op tasks; plain: what a space create asks of Prefect")
    print(" made plainly (a named run, three tasks, the inventory and resource artifacts,")
    print(" the outcome event, a named final state: plain_flow); no announce: the create")
    print(" without its artifacts and event, against the bare flow")
    print()
    title = "lease cost, create + template (median s/op)"
    print(f"{title:45} {'86400 s':>10} {'0.5 s':>13} {'ratio':>7}")
    print(
        f"{f'renewing every 0.17 s: {renewals} renewals':45} {never:10.3f} {renewing:13.3f} "
        f"{renewing / never:7.2f}"
    )
    print("(86400 s: never renewed during a run; 0.5 s: the shortest lease allowed)")
    print()
    title = "template install, 2,000 x 4 KiB (median s)"
    print(f"{title:45} {'cp -a':>10} {'install':>13} {'ratio':>7}")
    print(
        f"{'into a new directory, 5 turns':45} {cp_a:10.3f} {install:13.3f} {install / cp_a:7.2f}"
    )
    print("target: install <= 1.2x cp -a")
    return 0


if __name__ == "__main__":
    sys.exit(main())
