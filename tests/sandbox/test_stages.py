"""Stages, ordering, language switches, hook directories, warm workers, policy."""

from pathlib import Path

import pytest

from storeflow.blocks.sandbox import SandboxPolicy
from storeflow.sandbox.definitions import CallbackDefinition
from storeflow.sandbox.isolation import IsolationUnavailable
from storeflow.sandbox.models import ErrorKind, ExecutionResult, Language, Stage
from storeflow.sandbox.settings import SandboxSettings
from storeflow.sandbox.stages import CallbackSet, ResultLike
from tests.sandbox.helpers import node_for, nodes, one_callback

KEEP_CSV_PY = (
    "import utils\ndef run(req):\n    return utils.get_node_info(req).path.endswith('.csv')\n"
)
KEEP_CSV_JS = (
    "const utils = require('./utils')\n"
    "module.exports = (req) => utils.getNodeInfo(req).getPath().endsWith('.csv')\n"
)


def test_filter_keeps_and_skips(settings: SandboxSettings, target: Path, tmp_path: Path) -> None:
    other = tmp_path / "notes.txt"
    other.write_text("x")
    for language, source in ((Language.PYTHON, KEEP_CSV_PY), (Language.JAVASCRIPT, KEEP_CSV_JS)):
        with CallbackSet([one_callback(language, source)], task_id="t", policy=settings) as cbs:
            assert cbs.filter(node_for(target)).keep
            skipped = cbs.filter(node_for(other))
            assert not skipped.keep and skipped.error is None


def test_callbacks_run_in_order_and_stop_at_the_first_no(
    settings: SandboxSettings, target: Path
) -> None:
    first = one_callback(Language.JAVASCRIPT, "module.exports = () => false", name="no")
    second = one_callback(Language.PYTHON, "def run(req):\n    raise SystemExit('ran')\n", name="x")
    with CallbackSet([first, second], task_id="t", policy=settings) as cbs:
        outcome = cbs.filter(node_for(target))
    assert not outcome.keep
    assert [call.name for call in outcome.calls] == ["no"]


def test_a_failing_callback_stops_the_stage_with_a_clear_error(
    settings: SandboxSettings, target: Path
) -> None:
    broken = one_callback(Language.PYTHON, "def run(req):\n    return 1 / 0\n", name="div")
    with CallbackSet([broken], task_id="t", policy=settings) as cbs:
        outcome = cbs.filter(node_for(target))
    assert outcome.failed and not outcome.keep
    assert outcome.failed_callback == "div"
    assert outcome.error is not None and outcome.error.kind is ErrorKind.EXCEPTION
    assert "ZeroDivisionError" in outcome.error.message


def test_disabled_language_is_skipped(settings: SandboxSettings, target: Path) -> None:
    policy = settings.with_language("javascript", enabled=False)
    definition = one_callback(Language.JAVASCRIPT, "module.exports = () => false")
    with CallbackSet([definition], task_id="t", policy=policy) as cbs:
        outcome = cbs.filter(node_for(target))
    assert outcome.keep and outcome.skipped == ["cb"] and not outcome.calls


def test_hook_directories_are_discovered_in_name_order(
    settings: SandboxSettings, target: Path
) -> None:
    py_dir = settings.hooks_dir("python") / "filter"
    js_dir = settings.hooks_dir("javascript") / "filter"
    py_dir.mkdir(parents=True)
    js_dir.mkdir(parents=True)
    (py_dir / "20-tag.py").write_text(
        "import utils\ndef run(req):\n    utils.get_node_info(req).metadata['order'] += 'b'\n"
        "    return True\n"
    )
    (py_dir / "10-tag.py").write_text(
        "import utils\ndef run(req):\n    utils.get_node_info(req).metadata['order'] = 'a'\n"
        "    return True\n"
    )
    (js_dir / "10-tag.js").write_text(
        "const utils = require('./utils')\nmodule.exports = function (req) {\n"
        "  const m = utils.getNodeInfo(req).getMetadataMap()\n"
        "  m.set('order', m.get('order') + 'c')\n"
        "  return true\n}\n"
    )
    with CallbackSet.from_hook_directories(task_id="t", policy=settings) as cbs:
        assert [c.name for c in cbs.callbacks] == [
            "filter/10-tag.py",
            "filter/20-tag.py",
            "filter/10-tag.js",
        ]
        assert cbs.filter(node_for(target)).metadata == {"order": "abc"}


def test_callback_files_must_stay_in_their_hook_directory(
    settings: SandboxSettings, target: Path
) -> None:
    escape = CallbackDefinition(
        name="x", language=Language.PYTHON, stage=Stage.FILTER, file="../x.py"
    )
    with CallbackSet([escape], task_id="t", policy=settings) as cbs:
        outcome = cbs.filter(node_for(target))
    assert outcome.error is not None and outcome.error.kind is ErrorKind.BAD_CALLBACK


def test_one_warm_worker_per_callback(settings: SandboxSettings, target: Path) -> None:
    counter = "calls = 0\ndef run(req):\n    global calls\n    calls += 1\n    return calls\n"
    definitions = [
        one_callback(Language.PYTHON, counter, name="a"),
        one_callback(Language.PYTHON, counter, name="b"),
        one_callback(Language.JAVASCRIPT, "let n = 0\nmodule.exports = () => ++n", name="c"),
    ]
    node = node_for(target)
    with CallbackSet(definitions, task_id="t", policy=settings) as cbs:
        for _ in range(50):
            outcome = cbs.filter(node)
        # Same process answered every call, and no two callbacks share one.
        assert [call.outcome.result for call in outcome.calls] == [50, 50, 50]
        workers = list(cbs._workers.values())
        assert [w.starts for w in workers] == [1, 1, 1]
        assert len({w.pid for w in workers}) == 3


def test_sandbox_policy_block_is_accepted(target: Path) -> None:
    policy = SandboxPolicy(python_enabled=False, call_timeout_s=2.0)
    definition = one_callback(Language.PYTHON, "def run(req):\n    return False\n")
    with CallbackSet([definition], task_id="t", policy=policy) as cbs:
        assert cbs.settings.call_timeout_s == 2.0
        assert cbs.filter(node_for(target)).skipped == ["cb"]


def test_missing_bwrap_refuses_python_unless_weak_isolation_is_allowed(
    settings: SandboxSettings, target: Path
) -> None:
    source = (
        "import os\ndef run(req):\n    try:\n        open('/etc/passwd').read()\n"
        "    except PermissionError:\n        return [os.getuid(), 'denied']\n"
        "    return [os.getuid(), 'read']\n"
    )
    no_bwrap = settings.model_copy(update={"bwrap_path": "/nonexistent/bwrap"})
    with pytest.raises(IsolationUnavailable, match=r"bubblewrap.*allow_weak_isolation"):
        CallbackSet([one_callback(Language.PYTHON, source)], task_id="t", policy=no_bwrap)
    weak = no_bwrap.model_copy(update={"allow_weak_isolation": True})
    with CallbackSet([one_callback(Language.PYTHON, source)], task_id="t", policy=weak) as cbs:
        outcome = cbs.filter(node_for(target))
    # Still an unprivileged uid, and Landlock still hides /etc.
    assert outcome.calls[0].outcome.result == [65534, "denied"], outcome.error


class _Tagged(ExecutionResult):
    """An ExecutionResult of the caller's own kind."""


def test_results_of_every_kind_reach_the_callback_as_results(
    settings: SandboxSettings, tmp_path: Path
) -> None:
    """A chunk's results may mix ExecutionResults (a subclass too), their wire form and
    delivered files' short form: each callback reads each as the ExecutionResult it is."""
    source = (
        "def run(req):\n    r = req.result\n    return f'{r.status}:{r.error}:{r.destination}'\n"
    )
    files = nodes(tmp_path, 4)
    rows = [node.to_row() for node in files]
    # No plain ExecutionResult among them: the subclass alone must be found.
    results: list[ResultLike] = [
        _Tagged(status="ERROR", error="disk"),
        ("/src/f-1", "/dst/f-1"),
        {"status": "SKIPPED", "error": None, "destination": None, "details": {}},
        _Tagged(status="SUCCESS", destination="/dst/f-3"),
    ]
    definition = one_callback(Language.PYTHON, source, Stage.AFTER_RESULT_RECEIVED)
    with CallbackSet([definition], task_id="t", policy=settings) as cbs:
        columns = cbs.run_stage_rows(Stage.AFTER_RESULT_RECEIVED, rows, results)
    answers = columns.asked[0][2]
    assert [a.result for a in answers] == [
        "ERROR:disk:None",
        "SUCCESS:None:/dst/f-1",
        "SKIPPED:None:None",
        "SUCCESS:None:/dst/f-3",
    ]
