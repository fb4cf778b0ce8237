"""`storeflow demo`: a tour of the lifecycle on a fresh directory.

It saves a StoreflowConfig block named `storeflow-demo` (storage and database
under $STOREFLOW_HOME/demo, the audit hook driver on), then runs real flows:
a template from a sample tree, a space from it, a snapshot, a quota change,
an etag conflict that is refused, a refused delete of an installed template,
deletes and a reconcile. The runs stay in the Prefect history: start
`prefect server start` with the same PREFECT_HOME and open the UI.
"""

import json
import logging
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from prefect.logging.handlers import PrefectConsoleHandler
from pydantic import SecretStr
from rich.console import Console
from rich.table import Table

from storeflow.blocks.config import StoreflowConfig
from storeflow.blocks.database import DatabaseBlock
from storeflow.blocks.hooks import HookDriversBlock
from storeflow.blocks.storage import StorageBlock
from storeflow.cli.runner import RunOutcome, in_process_runtime, run_here
from storeflow.flows import reconcile as reconcile_flows
from storeflow.flows.snapshots import snapshot_create, snapshot_delete
from storeflow.flows.spaces import space_create, space_delete, space_update
from storeflow.flows.templates import template_create, template_delete
from storeflow.models import repository
from storeflow.models.db import session_scope
from storeflow.models.schemas import SnapshotSpec, SpaceSpec, SpaceUpdate, TemplateSpec
from storeflow.models.settings import storeflow_home

CONFIG_BLOCK = "storeflow-demo"
AUDIT_DRIVER = "storeflow.tasks.hook_drivers.audit:AuditHook"


@dataclass(frozen=True)
class DemoStep:
    step: str
    flow_run: str
    state: str
    status: str
    etag: str
    expected: bool


def make_sample_tree(root: Path) -> Path:
    sample = root / "sample-project"
    (sample / "data").mkdir(parents=True)
    (sample / "scripts").mkdir()
    (sample / "README.md").write_text("# A project space\nPut raw data in data/.\n")
    (sample / "data" / ".keep").write_text("")
    (sample / "scripts" / "process.sh").write_text("#!/bin/sh\necho processing\n")
    (sample / "scripts" / "process.sh").chmod(0o755)
    return sample


def demo_config(root: Path) -> StoreflowConfig:
    return StoreflowConfig(
        storage=StorageBlock(root=root / "storage", template_max_size=64 * 1024**2),
        database=DatabaseBlock(url=SecretStr(f"sqlite:///{root / 'storeflow.db'}")),
        hooks=HookDriversBlock(
            hook_drivers=[AUDIT_DRIVER], options={"audit_log_path": str(root / "audit.jsonl")}
        ),
    )


def _step(step: str, outcome: RunOutcome, expect_ok: bool) -> DemoStep:
    result: dict[str, Any] = outcome.result if isinstance(outcome.result, dict) else {}
    return DemoStep(
        step=step,
        flow_run=outcome.flow_run_name or "-",
        state=outcome.state_name,
        status=str(result.get("status", "-")),
        etag=str(result.get("etag", "-")),
        expected=outcome.ok == expect_ok,
    )


@contextmanager
def quiet_console() -> Iterator[None]:
    """Keep Prefect's console log out of the demo's table (the UI has every log)."""
    handlers = [
        handler
        for logger in [logging.getLogger(), *logging.Logger.manager.loggerDict.values()]
        if isinstance(logger, logging.Logger)
        for handler in logger.handlers
        if isinstance(handler, PrefectConsoleHandler)
    ]
    levels = [handler.level for handler in handlers]
    for handler in handlers:
        handler.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for handler, level in zip(handlers, levels, strict=True):
            handler.setLevel(level)


def run_demo(home: Path | None = None) -> list[DemoStep]:
    root = (home or storeflow_home()) / "demo"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    sample = make_sample_tree(root)
    config = demo_config(root)
    with in_process_runtime(), quiet_console():
        config.save(CONFIG_BLOCK, overwrite=True)
        return _run_steps(config, sample)


def _run_steps(config: StoreflowConfig, sample: Path) -> list[DemoStep]:
    steps: list[DemoStep] = []

    def run(step: str, flow: Any, expect_ok: bool = True, **params: Any) -> RunOutcome:
        outcome = run_here(flow, **params, config=CONFIG_BLOCK)
        steps.append(_step(step, outcome, expect_ok))
        return outcome

    def etag(kind: str, name: str, space: str | None = None) -> int:
        with session_scope(config.database_url) as session:
            scope = str(repository.find(session, "space", space).id) if space else ""
            return repository.find(session, kind, name, scope).etag

    space = "projects-alpha"
    run(
        "template from a sample tree",
        template_create,
        spec=TemplateSpec(name="starter", source=sample),
    )
    run(
        "space from the template",
        space_create,
        spec=SpaceSpec(name=space, quota="1G", template="starter"),
    )
    seen = etag("space", space)
    run("snapshot of the space", snapshot_create, spec=SnapshotSpec(space=space, name="day-1"))
    run("quota 1G -> 2G", space_update, name=space, etag=seen, changes=SpaceUpdate(quota="2G"))
    run(
        "same etag again: refused",
        space_update,
        expect_ok=False,
        name=space,
        etag=seen,
        changes=SpaceUpdate(quota="5G"),
    )
    run(
        "delete an installed template",
        template_delete,
        expect_ok=False,
        name="starter",
        etag=etag("template", "starter"),
    )
    run(
        "delete the snapshot",
        snapshot_delete,
        space=space,
        name="day-1",
        etag=etag("snapshot", "day-1", space),
    )
    run("delete the space", space_delete, name=space, etag=etag("space", space))
    run("delete the template", template_delete, name="starter", etag=etag("template", "starter"))
    run("reconcile", reconcile_flows.reconcile)
    return steps


def print_demo(steps: list[DemoStep], as_json: bool, console: Console) -> None:
    if as_json:
        print(json.dumps([asdict(s) for s in steps]))
        return
    if not console.is_terminal:  # piped or logged: do not squeeze the table into 80 columns
        console = Console(width=132)
    table = Table(
        "step", "flow run", "final state", "status", "etag", "as expected", title="storeflow demo"
    )
    for s in steps:
        table.add_row(s.step, s.flow_run, s.state, s.status, s.etag, "yes" if s.expected else "NO")
    console.print(table)
    console.print(
        "The runs are in the Prefect history: run `prefect server start` "
        "(same PREFECT_HOME) and open the UI."
    )
