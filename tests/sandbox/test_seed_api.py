"""The seed's own example code, unchanged, against real files and os.stat."""

import datetime
import os
import stat
from pathlib import Path

from storeflow.sandbox.models import ExecutionResult, Language, Progress, Stage, TaskExecution
from storeflow.sandbox.settings import SandboxSettings
from storeflow.sandbox.stages import CallbackSet
from tests.sandbox.helpers import node_for, one_callback, run_one

# The seed's Python structure, with every field the seed lists read back.
SEED_PYTHON = """\
import utils
import sys

def run(req):
  info = utils.get_node_info(req)
  metadata = info.metadata
  metadataKey = metadata['key']
  return {
    "id": req.id,
    "path": info.path,
    "mode": info.mode,
    "uid": info.uid,
    "gid": info.gid,
    "size": info.size,
    "atime": info.atime.ToDatetime().isoformat(),
    "mtime": info.mtime.ToDatetime().isoformat(),
    "ctime": info.ctime.ToDatetime().isoformat(),
    "key": metadataKey,
    "python": sys.version_info[0],
  }
"""

SEED_JAVASCRIPT = """\
const utils = require('./utils')

module.exports = function(req) {
  const id = req.getId()
  const info = utils.getNodeInfo(req)
  const metadataMap = info?.getMetadataMap()
  const metadataKey = metadataMap.get('key')
  return {
    id,
    path: info?.getPath(),
    mode: info?.getMode(),
    uid: info?.getUid(),
    gid: info?.getGid(),
    size: info?.getSize(),
    atime: info?.getAtime()?.toDate().getTime(),
    mtime: info?.getMtime()?.toDate().getTime(),
    ctime: info?.getCtime()?.toDate().getTime(),
    key: metadataKey,
  }
}
"""


def _utc(ns: int) -> datetime.datetime:
    # protobuf's ToDatetime: naive UTC, microseconds truncated.
    return datetime.datetime(1970, 1, 1) + datetime.timedelta(microseconds=ns // 1000)


def test_python_seed_example_matches_os_stat(settings: SandboxSettings, target: Path) -> None:
    outcome = run_one(settings, Language.PYTHON, SEED_PYTHON, node_for(target, key="blue"))
    assert outcome.ok, outcome.error
    st = os.stat(target)
    assert outcome.result == {
        "id": "t",
        "path": str(target),
        "mode": st.st_mode,
        "uid": st.st_uid,
        "gid": st.st_gid,
        "size": st.st_size,
        "atime": _utc(st.st_atime_ns).isoformat(),
        "mtime": _utc(st.st_mtime_ns).isoformat(),
        "ctime": _utc(st.st_ctime_ns).isoformat(),
        "key": "blue",
        "python": 3,
    }
    assert stat.S_ISREG(st.st_mode)
    assert outcome.truthy


def test_javascript_seed_example_matches_os_stat(settings: SandboxSettings, target: Path) -> None:
    outcome = run_one(settings, Language.JAVASCRIPT, SEED_JAVASCRIPT, node_for(target, key="red"))
    assert outcome.ok, outcome.error
    st = os.stat(target)
    assert outcome.result == {
        "id": "t",
        "path": str(target),
        "mode": st.st_mode,
        "uid": st.st_uid,
        "gid": st.st_gid,
        "size": st.st_size,
        "atime": st.st_atime_ns // 1_000_000,
        "mtime": st.st_mtime_ns // 1_000_000,
        "ctime": st.st_ctime_ns // 1_000_000,
        "key": "red",
    }


def test_seed_skeletons_return_true(settings: SandboxSettings, target: Path) -> None:
    python = "import utils\nimport sys\n\ndef run(req):\n  return True\n"
    javascript = (
        "const utils = require('./utils')\n\nmodule.exports = function(req) {\n  return true\n}\n"
    )
    for language, source in ((Language.PYTHON, python), (Language.JAVASCRIPT, javascript)):
        outcome = run_one(settings, language, source, node_for(target))
        assert outcome.ok and outcome.truthy and outcome.result is True


def test_async_javascript_export(settings: SandboxSettings, target: Path) -> None:
    source = """
const utils = require('./utils')
module.exports = async function (req) {
  await new Promise((resolve) => setTimeout(resolve, 5))
  return utils.getNodeInfo(req).getSize() > 0
}"""
    outcome = run_one(settings, Language.JAVASCRIPT, source, node_for(target))
    assert outcome.ok and outcome.result is True


def test_metadata_set_by_callbacks_comes_back(settings: SandboxSettings, target: Path) -> None:
    python = """
import utils
def run(req):
    info = utils.get_node_info(req)
    info.metadata['checked-by'] = 'python'
    del info.metadata['drop']
    return True
"""
    javascript = """
const utils = require('./utils')
module.exports = function (req) {
  const map = utils.getNodeInfo(req).getMetadataMap()
  map.set('seen-python', map.get('checked-by'))
  map.set('checked-by', 'javascript')
  return true
}"""
    callbacks = [
        one_callback(Language.PYTHON, python, name="py"),
        one_callback(Language.JAVASCRIPT, javascript, name="js"),
    ]
    with CallbackSet(callbacks, task_id="t", policy=settings) as cbs:
        outcome = cbs.filter(node_for(target, drop="x", keep="y"))
    assert outcome.keep, outcome.error
    assert outcome.metadata == {"keep": "y", "checked-by": "javascript", "seen-python": "python"}
    assert outcome.changes.set == {"checked-by": "javascript", "seen-python": "python"}
    assert outcome.changes.removed == ["drop"]


def test_last_execution_progress_in_before_task(settings: SandboxSettings) -> None:
    javascript = """
const utils = require('./utils')
module.exports = function (req) {
  const progress = task.getLastExecution()?.getProgress()
  if (req.getTask().getId() !== req.getId()) throw new Error('task id mismatch')
  return (progress & utils.Progress.PROGRESS_HAS_ERROR) === 0
}"""
    python = """
import utils
def run(req):
    last = task.last_execution
    assert req.task is task
    return last is None or not (last.progress & utils.Progress.PROGRESS_HAS_ERROR)
"""
    failed = TaskExecution(progress=Progress.PROGRESS_FINAL_DONE | Progress.PROGRESS_HAS_ERROR)
    clean = TaskExecution(progress=Progress.PROGRESS_FINAL_DONE)
    for language, source in ((Language.JAVASCRIPT, javascript), (Language.PYTHON, python)):
        definition = one_callback(language, source, Stage.BEFORE_TASK_EXECUTED)
        with CallbackSet([definition], task_id="task-7", policy=settings) as cbs:
            assert not cbs.before_task(clean).vetoed
            vetoed = cbs.before_task(failed)
            assert vetoed.vetoed and vetoed.error is None


def test_after_stages_see_the_result(settings: SandboxSettings, target: Path) -> None:
    python = "def run(req):\n    return [req.stage, req.result.status, req.result.destination]\n"
    javascript = (
        "module.exports = (req) => [req.getStage(), req.getResult()?.getStatus(),"
        " req.getResult()?.getError()]"
    )
    result = ExecutionResult(status="ERROR", error="disk full", destination="/dst/report.csv")
    py = one_callback(Language.PYTHON, python, Stage.AFTER_RESULT_RECEIVED, "py")
    js = one_callback(Language.JAVASCRIPT, javascript, Stage.AFTER_TASK_EXECUTED, "js")
    with CallbackSet([py, js], task_id="t", policy=settings) as cbs:
        after_file = cbs.after_result(node_for(target), result)
        after_task = cbs.after_task(result)
    assert after_file.calls[0].outcome.result == [
        "AFTER_RESULT_RECEIVED",
        "ERROR",
        "/dst/report.csv",
    ]
    assert after_task.calls[0].outcome.result == ["AFTER_TASK_EXECUTED", "ERROR", "disk full"]
