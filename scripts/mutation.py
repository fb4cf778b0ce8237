"""Mutation testing (cosmic-ray) of the code the lifecycle promises rest on, in bounded time.

    .venv/bin/python scripts/mutation.py                 # every target, 20 min each at most
    .venv/bin/python scripts/mutation.py delivery hooks --minutes 10 --sample 60

Targets: the lifecycle skeleton (tasks/skeleton.py, tasks/lifecycle.py), the hook
machinery (tasks/hook_base.py, tasks/hooks.py) and the transfer engine's delivery
(tasks/transfer/engine.py from `_Meter` to `finalize`). Each is mutated with the tests
that are meant to catch it, not the whole suite.

How it stays safe and bounded:
- cosmic-ray rewrites the module on disk, so it works on a private copy of the committed
  tree (`git archive HEAD`), never the working tree other people are editing;
- one `prefect server start` serves every mutant's test run (tests/conftest.py uses it
  when STOREFLOW_TEST_PREFECT_API_URL is set) instead of an ephemeral server each time;
- mutants on signatures and annotations (never evaluated here) are skipped, and when a
  target has more than `--sample` mutants, a fixed-seed sample of them is run;
- each target's run stops after `--minutes`; what finished is what is reported.

Prints, per target: mutants run, killed, survived, the survival rate, and each
survivor's diff (in the report file).
"""

import argparse
import ast
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cosmic_ray.work_db import WorkDB, use_db  # noqa: E402
from cosmic_ray.work_item import TestOutcome, WorkerOutcome, WorkResult  # noqa: E402

from tests.e2e.server import free_port, started, stop, wait_until_healthy  # noqa: E402
from tests.prefect_backend import scratch_database  # noqa: E402

BIN = Path(sys.executable).parent


@dataclass(frozen=True)
class Target:
    module: str
    tests: tuple[str, ...]
    # Only mutants inside these top-level functions/classes (empty: the whole module).
    only: tuple[str, ...] = ()


TARGETS = {
    "skeleton": Target(
        "tasks/skeleton.py",
        ("tests/lifecycle/test_hooks.py", "tests/lifecycle/test_engine.py"),
    ),
    "lifecycle": Target(
        "tasks/lifecycle.py",
        (
            "tests/lifecycle/test_engine.py",
            "tests/lifecycle/test_rollback.py",
            "tests/lifecycle/test_concurrency.py",
            "tests/lifecycle/test_interrupted.py",
            "tests/lifecycle/test_spaces.py",
        ),
    ),
    "hook_base": Target("tasks/hook_base.py", ("tests/lifecycle/test_hooks.py",)),
    "hooks": Target("tasks/hooks.py", ("tests/lifecycle/test_hooks.py",)),
    "delivery": Target(
        "tasks/transfer/engine.py",
        ("tests/transfer/test_local.py",),
        only=("_Meter", "_batches", "deliver", "remove_temps", "finalize"),
    ),
}


def _signature_lines(source: str, only: tuple[str, ...]) -> tuple[set[int], set[int] | None]:
    """Lines of signatures and annotations (equivalent mutants: `from __future__ import
    annotations` keeps them unevaluated), and the lines of the `only` definitions."""
    tree = ast.parse(source)
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            body_start = node.body[0].lineno
            skip.update(range(node.lineno, body_start))
            for decorator in node.decorator_list:
                skip.update(range(decorator.lineno, (decorator.end_lineno or decorator.lineno) + 1))
        elif isinstance(node, ast.AnnAssign) and node.value is None:
            skip.add(node.lineno)
    keep: set[int] | None = None
    if only:
        keep = set()
        for node in tree.body:
            if getattr(node, "name", None) in only:
                keep.update(range(node.lineno, (node.end_lineno or node.lineno) + 1))
    return skip, keep


def _select(session: Path, module: Path, only: tuple[str, ...], sample: int, seed: int) -> int:
    """Mark what is not to run SKIPPED; return how many mutants will run."""
    skip, keep = _signature_lines(module.read_text(), only)
    skipped = WorkResult(worker_outcome=WorkerOutcome.SKIPPED)
    with use_db(str(session), WorkDB.Mode.open) as db:
        runnable = []
        for item in db.work_items:
            line = item.mutations[0].start_pos[0]
            if line in skip or (keep is not None and line not in keep):
                db.set_result(item.job_id, skipped)
            else:
                runnable.append(item.job_id)
        if len(runnable) > sample:
            chosen = set(random.Random(seed).sample(runnable, sample))
            db.set_multiple_results([j for j in runnable if j not in chosen], skipped)
            return sample
        return len(runnable)


def _tally(session: Path) -> tuple[int, int, int, list[str]]:
    """(run, killed, survived, survivors' diffs) of the finished mutants."""
    killed = survived = 0
    diffs: list[str] = []
    with use_db(str(session), WorkDB.Mode.open) as db:
        for _item, result in db.completed_work_items:
            if result.worker_outcome == WorkerOutcome.SKIPPED:
                continue
            if result.test_outcome == TestOutcome.SURVIVED:
                survived += 1
                diffs.append(result.diff or "")
            else:  # killed, incompetent (a mutant that cannot even import) or timed out
                killed += 1
    return killed + survived, killed, survived, diffs


def run_target(
    name: str, target: Target, copy: Path, env: dict[str, str], args: argparse.Namespace
) -> dict[str, object]:
    config = copy / f"mutation-{name}.toml"
    session = copy / f"mutation-{name}.sqlite"
    tests = " ".join(target.tests)
    command = f"{sys.executable} -m pytest -x -q -p no:cacheprovider --timeout 120 {tests}"
    config.write_text(
        "[cosmic-ray]\n"
        f'module-path = "{target.module}"\n'
        f"timeout = {args.mutant_timeout}\n"
        "excluded-modules = []\n"
        f'test-command = "{command}"\n'
        '[cosmic-ray.distributor]\nname = "local"\n'
    )
    subprocess.run([str(BIN / "cosmic-ray"), "init", str(config), str(session)], cwd=copy,
                   env=env, check=True, capture_output=True)  # fmt: skip
    planned = _select(session, copy / target.module, target.only, args.sample, args.seed)
    started_at = time.monotonic()
    with (copy / f"mutation-{name}.log").open("wb") as log:
        process = subprocess.Popen(
            [str(BIN / "cosmic-ray"), "exec", str(config), str(session)],
            cwd=copy,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # so the budget stops its pytest too, by process group
        )
        try:
            process.wait(timeout=args.minutes * 60)
        except subprocess.TimeoutExpired:
            stop(process, grace=5)  # the budget is spent: report what finished
    # cosmic-ray restores the module after each mutant; make sure of it before the next.
    subprocess.run(["git", "-C", str(ROOT), "show", f"HEAD:{target.module}"], check=True,
                   stdout=(copy / target.module).open("wb"))  # fmt: skip
    ran, killed, survived, diffs = _tally(session)
    return {
        "target": name,
        "module": target.module,
        "planned": planned,
        "ran": ran,
        "killed": killed,
        "survived": survived,
        "survival": (survived / ran) if ran else None,
        "minutes": round((time.monotonic() - started_at) / 60, 1),
        "survivors": diffs,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("targets", nargs="*", help=f"some of: {', '.join(TARGETS)}")
    parser.add_argument("--minutes", type=float, default=20, help="budget per target")
    parser.add_argument("--sample", type=int, default=80, help="mutants per target at most")
    parser.add_argument("--seed", type=int, default=17)
    parser.add_argument("--mutant-timeout", type=float, default=180)
    parser.add_argument(
        "--report",
        type=Path,
        default=Path(tempfile.gettempdir()) / "storeflow-mutation-survivors.txt",
    )
    args = parser.parse_args()
    names = args.targets or list(TARGETS)
    unknown = [n for n in names if n not in TARGETS]
    if unknown:
        parser.error(f"unknown target(s) {', '.join(unknown)}: choose from {', '.join(TARGETS)}")

    work = Path(tempfile.mkdtemp(prefix="storeflow-mutation-"))
    copy = work / "tree"
    copy.mkdir()
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", "HEAD"], check=True,
                             capture_output=True).stdout  # fmt: skip
    subprocess.run(["tar", "-x", "-C", str(copy)], input=archive, check=True)
    base = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "STOREFLOW_"))}
    results = []
    try:
        with scratch_database("storeflow_mutation_prefect") as database:
            port = free_port()
            api_url = f"http://127.0.0.1:{port}/api"
            server_env = {
                **base,
                "PREFECT_HOME": str(work / "prefect-home"),
                "PREFECT_API_DATABASE_CONNECTION_URL": (
                    f"postgresql+asyncpg://postgres@127.0.0.1:5432/{database}"
                ),
                "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
                "DO_NOT_TRACK": "1",
                "PREFECT_UI_ENABLED": "false",
                "PREFECT_LOGGING_LEVEL": "WARNING",
            }
            server_cmd = [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1",
                          "--port", str(port)]  # fmt: skip
            with started(server_cmd, server_env, work / "server.log", work) as server:
                wait_until_healthy(api_url, server, work / "server.log", 180)
                env = {
                    **server_env,
                    "PREFECT_API_URL": api_url,
                    "STOREFLOW_TEST_PREFECT_API_URL": api_url,
                    # A mutant the same size as the last, written within the same second,
                    # would otherwise be read from a stale .pyc.
                    "PYTHONDONTWRITEBYTECODE": "1",
                    "PYTHONPATH": str(copy),  # the copy's storeflow, not the editable one
                }
                for name in names:
                    result = run_target(name, TARGETS[name], copy, env, args)
                    results.append(result)
                    rate = result["survival"]
                    print(
                        f"{name:10} {result['module']:26} ran {result['ran']:>3}/"
                        f"{result['planned']:<3} killed {result['killed']:>3} "
                        f"survived {result['survived']:>3} "
                        f"({'-' if rate is None else f'{rate:.0%}'}) in {result['minutes']} min",
                        flush=True,
                    )
    finally:
        with args.report.open("w") as report:
            for result in results:
                report.write(f"== {result['target']} ({result['module']})\n")
                for diff in result["survivors"]:  # type: ignore[attr-defined]
                    report.write(diff + "\n")
        shutil.rmtree(work, ignore_errors=True)
    ran = sum(int(r["ran"]) for r in results)  # type: ignore[call-overload]
    survived = sum(int(r["survived"]) for r in results)  # type: ignore[call-overload]
    if ran:
        print(f"all        {survived}/{ran} survived ({survived / ran:.0%}); diffs: {args.report}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
