"""The transfer flow end to end, in-process, on real files with real sandboxed callbacks."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import TaskRunFilter, TaskRunFilterFlowRunId
from prefect.states import State

from storeflow.blocks.config import StoreflowConfig
from storeflow.flows.transfers import transfer
from storeflow.models.settings import DATABASE_URL_ENV
from storeflow.models.transfer import parse_definition
from storeflow.sandbox.models import Language, Progress, Stage
from storeflow.tasks.transfer import steps as transfer_steps
from storeflow.tasks.transfer.metadata import read as read_metadata
from tests.flows_transfer.conftest import (
    artifacts_of,
    callback,
    last_execution,
    local_def,
    make_files,
    run,
)

FILES = {
    "report.csv": b"a,b\n1,2\n",
    "notes.txt": b"hello",
    "draft.tmp": b"not yet",
    "scratch.tmp": b"nor this",
    "with space & $(x).csv": b"odd",
}

# FILTER, two callbacks in two languages: Python drops *.tmp, JavaScript tags the rest.
SKIP_TMP = """
import utils
def run(req):
    info = utils.get_node_info(req)
    return not info.path.endswith('.tmp')
"""
TAG_JS = """
const utils = require('./utils')
module.exports = function (req) {
  const info = utils.getNodeInfo(req)
  info.getMetadataMap().set('filtered-by', 'js:' + req.getId())
  return true
}
"""
# AFTER_RESULT_RECEIVED: add metadata computed from the file's stat.
CLASSIFY = """
import utils
def run(req):
    info = utils.get_node_info(req)
    info.metadata['size-class'] = 'small' if info.size < 6 else 'big'
    info.metadata['seen'] = info.metadata.get('filtered-by', 'none')
    return True
"""


def test_filter_skips_files_and_after_result_metadata_lands_on_delivered_files(
    config: StoreflowConfig, tmp_path: Path
) -> None:
    src = make_files(tmp_path / "src", FILES)
    dest = tmp_path / "dest"
    definition = local_def(src, dest)
    definition["destination"][0]["createDirectoryIfNotExists"] = True

    state = run(
        transfer,
        definition=parse_definition(definition),
        name="nightly",
        callbacks=[
            callback(Stage.FILTER, SKIP_TMP),
            callback(Stage.FILTER, TAG_JS, Language.JAVASCRIPT),
            callback(Stage.AFTER_RESULT_RECEIVED, CLASSIFY),
        ],
    )

    assert state.is_completed() and state.name == "Delivered", state.message
    delivered = sorted(os.listdir(dest))
    assert delivered == ["notes.txt", "report.csv", "with space & $(x).csv"]
    for name in delivered:
        assert (dest / name).read_bytes() == FILES[name]
        assert (dest / name).stat().st_mtime == (src / name).stat().st_mtime
    assert read_metadata(str(dest / "notes.txt")) == {
        "filtered-by": "js:nightly",
        "size-class": "small",
        "seen": "js:nightly",
    }
    assert read_metadata(str(dest / "report.csv"))["size-class"] == "big"
    result = state.result()
    assert sorted(result["skipped"]) == ["draft.tmp", "scratch.tmp"]

    execution = last_execution(config, "nightly")
    assert execution.outcome == "Delivered" and execution.files == 3 and execution.skipped == 2
    assert execution.progress == (
        Progress.PROGRESS_INIT_STARTED
        | Progress.PROGRESS_INIT_DONE
        | Progress.PROGRESS_PROCESS_STARTED
        | Progress.PROGRESS_PROCESS_DONE
        | Progress.PROGRESS_FINAL_STARTED
        | Progress.PROGRESS_FINAL_DONE
    )
    # The record of remote-or-local metadata: every delivered file, by final path.
    assert execution.file_metadata[str(dest / "notes.txt")]["size-class"] == "small"

    artifacts = artifacts_of(state)
    assert artifacts["progress"].data == 100.0
    assert artifacts["progress"].key == "transfer-nightly"
    done = sum(len(FILES[name]) for name in delivered)
    assert artifacts["progress"].description == f"3/3 files, {done}/{done} bytes delivered"
    table = artifacts["table"]
    assert table.key == "transfer-nightly-summary" and '"files"' in str(table.data)


def test_run_name_and_steps_are_tasks(config: StoreflowConfig, tmp_path: Path) -> None:
    src = make_files(tmp_path / "in", {"a": b"1"})
    dest = tmp_path / "out"
    dest.mkdir()

    state = run(transfer, definition=local_def(src, dest))

    assert state.name == "Delivered", state.message
    run_id = state.state_details.flow_run_id
    assert run_id is not None
    with get_client(sync_client=True) as client:
        flow_run = client.read_flow_run(run_id)
        tasks = client.read_task_runs()
    assert flow_run.name == f"transfer/{src}"
    names = {t.name for t in tasks if t.flow_run_id == flow_run.id}
    # No AFTER_TASK_EXECUTED callback: no empty after-task step either.
    assert names == {f"transfer/{src}: {step}" for step in ("pre", "perform", "post")}


def test_before_task_veto_copies_nothing_and_is_recorded(
    config: StoreflowConfig, tmp_path: Path
) -> None:
    src = make_files(tmp_path / "src", {"a.txt": b"a"})
    dest = tmp_path / "dest"
    dest.mkdir()
    veto = "module.exports = function (req) { return false }"

    state = run(
        transfer,
        definition=local_def(src, dest),
        name="guarded",
        callbacks=[callback(Stage.BEFORE_TASK_EXECUTED, veto, Language.JAVASCRIPT, "gate")],
    )

    assert state.is_failed() and state.name == "Vetoed"
    assert "gate vetoed" in (state.message or "")
    assert os.listdir(dest) == []
    execution = last_execution(config, "guarded")
    assert execution.outcome == "Vetoed"
    assert execution.progress == Progress.PROGRESS_INIT_STARTED | Progress.PROGRESS_STOPPED


def test_before_task_sees_the_previous_execution_progress(
    config: StoreflowConfig, tmp_path: Path
) -> None:
    """A failed run leaves HAS_ERROR; the next run's BEFORE_TASK_EXECUTED reads it and stops."""
    src = make_files(tmp_path / "src", {"a.txt": b"a"})
    dest = tmp_path / "dest"  # missing, and createDirectoryIfNotExists is off: refused
    gate = """
import utils
def run(req):
    last = task.last_execution
    flags = 0 if last is None else int(last.progress)
    # Record what was seen, for the test, in the metadata-free way: the return value.
    return last is None or not (flags & utils.Progress.PROGRESS_HAS_ERROR)
"""
    definition = local_def(src, dest)
    first = run(
        transfer,
        definition=definition,
        name="careful",
        callbacks=[callback(Stage.BEFORE_TASK_EXECUTED, gate)],
    )
    assert first.name == "Refused" and "createDirectoryIfNotExists" in (first.message or "")
    failed = last_execution(config, "careful")
    assert failed.progress == Progress.PROGRESS_INIT_STARTED | Progress.PROGRESS_HAS_ERROR

    dest.mkdir()
    second = run(
        transfer,
        definition=definition,
        name="careful",
        callbacks=[callback(Stage.BEFORE_TASK_EXECUTED, gate)],
    )
    assert second.name == "Vetoed", second.message
    assert os.listdir(dest) == []

    # With no failed run before it, the same gate lets the transfer through.
    third = run(
        transfer,
        definition=definition,
        name="careful-fresh",
        callbacks=[callback(Stage.BEFORE_TASK_EXECUTED, gate)],
    )
    assert third.name == "Delivered", third.message
    assert os.listdir(dest) == ["a.txt"]


def _after_task_state(state: State[Any], label: str) -> State[Any]:
    """The after-task step's own final state: where AFTER_TASK_EXECUTED's verdict lands.

    Task runs reach the server as events, a moment after the flow run returns: wait for
    the step's final state (10 s at most)."""
    name = f"transfer/{label}: after-task"  # a step of its own when a callback listens
    only_this_run = TaskRunFilter(
        flow_run_id=TaskRunFilterFlowRunId(any_=[state.state_details.flow_run_id])
    )
    deadline = time.monotonic() + 10
    seen: dict[str, str | None] = {}
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            tasks = client.read_task_runs(task_run_filter=only_this_run)
            seen = {t.name: t.state_name for t in tasks}
            after = next((t for t in tasks if t.name == name), None)
            if after is not None and after.state is not None and after.state.is_final():
                return after.state
            time.sleep(0.2)
    raise AssertionError(f"no final {name!r} step within 10 s; steps seen: {seen}")


# AFTER_TASK_EXECUTED cannot write files (sandbox): it proves what it was told by
# failing when the outcome is not the expected one, and the step records that verdict.
TELL = """
def run(req):
    assert req.result.status == {status!r}, req.result.status
    assert req.result.details['files'] == {files!r}, req.result.details
    return True
"""


def test_after_task_is_told_the_outcome(config: StoreflowConfig, tmp_path: Path) -> None:
    src = make_files(tmp_path / "src", {"a.txt": b"a", "b.txt": b"bb"})
    dest = tmp_path / "dest"
    dest.mkdir()
    state = run(
        transfer,
        definition=local_def(src, dest),
        callbacks=[callback(Stage.AFTER_TASK_EXECUTED, TELL.format(status="SUCCESS", files=2))],
    )
    assert state.name == "Delivered"
    after = _after_task_state(state, str(src))
    assert after.is_completed() and after.name == "Completed", after.message
    assert after.message == "AFTER_TASK_EXECUTED told 1 callback(s)"


def test_a_failing_after_task_callback_is_recorded_and_the_outcome_stands(
    config: StoreflowConfig, tmp_path: Path
) -> None:
    """The same callback under impossible expectations: its failure reaches the run's
    record (the step's state), while the transfer stays Delivered (the seed gives this
    stage no say over a movement that already ended)."""
    src = make_files(tmp_path / "src", {"a.txt": b"a", "b.txt": b"bb"})
    dest = tmp_path / "dest"
    dest.mkdir()
    state = run(
        transfer,
        definition=local_def(src, dest),
        callbacks=[callback(Stage.AFTER_TASK_EXECUTED, TELL.format(status="NOPE", files=99))],
    )
    assert state.name == "Delivered"
    assert sorted(os.listdir(dest)) == ["a.txt", "b.txt"]
    after = _after_task_state(state, str(src))
    assert after.name == "CallbackFailed"
    assert after.message is not None and "AFTER_TASK_EXECUTED callback" in after.message
    assert "SUCCESS" in after.message  # the assertion's own message: what it was told


def test_failure_in_delivery_is_errored_and_recorded(
    config: StoreflowConfig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = make_files(tmp_path / "src", {"a.txt": b"a"})
    dest = tmp_path / "dest"
    dest.mkdir()

    def broken_disk(*args: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(transfer_steps, "deliver", broken_disk)
    state = run(transfer, definition=local_def(src, dest), name="doomed")

    assert state.is_failed() and state.name == "Errored"
    assert "No space left on device" in (state.message or "")
    execution = last_execution(config, "doomed")
    assert execution.outcome == "Errored"
    assert execution.progress == (
        Progress.PROGRESS_INIT_STARTED
        | Progress.PROGRESS_INIT_DONE
        | Progress.PROGRESS_PROCESS_STARTED
        | Progress.PROGRESS_HAS_ERROR
    )
    assert os.listdir(dest) == []


class PowerCut(BaseException):
    """What the engine cannot turn into a Failed state (like KeyboardInterrupt): the
    flow run crashes."""


def test_a_crash_in_delivery_closes_the_execution_for_the_next_run(
    config: StoreflowConfig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The transfer flow's on_crashed hook marks the execution it left open
    HAS_ERROR|STOPPED, so the next run's BEFORE_TASK_EXECUTED sees how it ended."""
    src = make_files(tmp_path / "src", {"a.txt": b"a"})
    dest = tmp_path / "dest"
    dest.mkdir()

    def power_cut(*args: object, **kwargs: object) -> None:
        raise PowerCut("mid-copy")

    monkeypatch.setattr(transfer_steps, "deliver", power_cut)
    with pytest.raises(PowerCut):
        transfer(definition=parse_definition(local_def(src, dest)), name="cut-short")

    execution = last_execution(config, "cut-short")
    assert execution.outcome == "Crashed"
    assert execution.progress & Progress.PROGRESS_PROCESS_STARTED
    assert execution.progress & Progress.PROGRESS_HAS_ERROR
    assert execution.progress & Progress.PROGRESS_STOPPED
    assert execution.message == "flow run transfer/cut-short ended CRASHED"


def test_a_resource_database_that_cannot_be_opened_ends_errored_before_anything_moves(
    storeflow_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The execution record is opened beside the first step's start: when it cannot be,
    the run says why in one line and copies nothing."""
    src = make_files(tmp_path / "src", {"a.txt": b"a"})
    dest = tmp_path / "dest"
    dest.mkdir()
    (tmp_path / "not-a-dir").write_text("")
    monkeypatch.setenv(DATABASE_URL_ENV, f"sqlite:///{tmp_path / 'not-a-dir' / 'storeflow.db'}")

    state = run(transfer, definition=local_def(src, dest), name="nowhere")

    assert state.is_failed() and state.name == "Errored"
    assert "resource database" in (state.message or "")
    assert "not-a-dir/storeflow.db" in (state.message or "")
    assert os.listdir(dest) == []


HOOKS = "tests.lifecycle.recording_hooks"


def test_hook_drivers_wrap_transfers(
    config: StoreflowConfig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.lifecycle.recording_hooks import calls

    monkeypatch.setenv("STOREFLOW_HOOK_DRIVERS", f"{HOOKS}:Recorder,{HOOKS}:Vetoing")
    src = make_files(tmp_path / "src", {"a": b"a"})
    dest = tmp_path / "dest"
    dest.mkdir()

    state = run(transfer, definition=local_def(src, dest), name="hooked")
    assert state.name == "Delivered", state.message
    pre, post = (c for c in calls() if c["driver"] == "first")
    assert pre == {"driver": "first", "hook": "pre", "func_name": "transfer", "resource": "hooked"}
    assert post["func_name"] == "transfer" and post["status"] == "ACTIVE"
    assert post["pre_hook_data"] == "first-pre-data"

    vetoed = run(transfer, definition=local_def(src, dest), name="forbidden-copy")
    assert vetoed.is_failed() and vetoed.name == "Refused"
    assert "vetoed by Vetoing" in (vetoed.message or "")
    assert last_execution(config, "forbidden-copy").progress == Progress.PROGRESS_STOPPED


def test_a_misspelt_hook_driver_is_refused_before_anything_moves(
    config: StoreflowConfig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STOREFLOW_HOOK_DRIVERS", "tests.lifecycle.recording_hooks.Recorder")
    src = make_files(tmp_path / "src", {"a": b"a"})
    dest = tmp_path / "dest"
    dest.mkdir()
    state = run(transfer, definition=local_def(src, dest), name="misconfigured")
    assert state.is_failed() and state.name == "Refused"
    assert "hook_drivers" in (state.message or "") and "module.path:ClassName" in (
        state.message or ""
    )
    assert os.listdir(dest) == []
    assert last_execution(config, "misconfigured").progress == Progress.PROGRESS_STOPPED
