"""A language added from outside the sandbox package (tests/sandbox/expr_language.py,
one module, one registration) runs through the stage machinery, the hook
directories, the policy and `storeflow callback run --lang expr`."""

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from storeflow.cli.callbacks import callback_app
from storeflow.sandbox import languages
from storeflow.sandbox.definitions import CallbackDefinition
from storeflow.sandbox.models import ErrorKind, Stage
from storeflow.sandbox.settings import SandboxSettings
from storeflow.sandbox.stages import CallbackSet
from tests.sandbox.expr_language import Expr, ExprSettings
from tests.sandbox.helpers import node_for, one_callback


@pytest.fixture
def expr() -> Iterator[Expr]:
    language = Expr()
    languages.register(language)
    try:
        yield language
    finally:
        languages.unregister(language.name)


def _cli(*args: str) -> tuple[dict[str, object], int]:
    result = CliRunner().invoke(callback_app, ["run", *args])
    lines = result.stdout.splitlines()
    assert len(lines) == 1, result.stdout
    payload = json.loads(lines[0])
    assert set(payload) == {"status", "result", "error"}
    return payload, result.exit_code


def test_hooks_of_three_languages_run_in_registration_order(
    expr: Expr, settings: SandboxSettings, target: Path, tmp_path: Path
) -> None:
    settings = settings.with_language("expr", hooks_dir=tmp_path / "expr-hooks")
    (settings.hooks_dir("python") / "filter").mkdir(parents=True)
    (settings.hooks_dir("python") / "filter" / "10-tag.py").write_text(
        "import utils\ndef run(req):\n    utils.get_node_info(req).metadata['order'] = 'py'\n"
        "    return True\n"
    )
    (settings.hooks_dir("expr") / "filter").mkdir(parents=True)
    (settings.hooks_dir("expr") / "filter" / "10-big.expr").write_text(
        "print('checked', node['size']) or metadata.update(order=metadata['order'] + '+expr')"
        " or node['size'] > 3\n"
    )
    # A file of another language's suffix in the expr directory is not an expr hook.
    (settings.hooks_dir("expr") / "filter" / "20-ignored.py").write_text("def run(req): 1\n")
    small = tmp_path / "small.txt"
    small.write_text("ab")
    with CallbackSet.from_hook_directories(task_id="t", policy=settings) as cbs:
        assert [(c.name, c.language) for c in cbs.callbacks] == [
            ("filter/10-tag.py", "python"),
            ("filter/10-big.expr", "expr"),
        ]
        for _ in range(5):
            kept = cbs.filter(node_for(target))
        dropped = cbs.filter(node_for(small))
        starts = [worker.starts for worker in cbs._workers.values()]
    assert kept.keep and kept.error is None
    assert kept.metadata == {"order": "py+expr"} and kept.changes.set == {"order": "py+expr"}
    assert [call.language for call in kept.calls] == ["python", "expr"]
    # What the expression printed is captured output, not an answer.
    assert kept.calls[1].outcome.output == f"checked {target.stat().st_size}\n"
    assert not dropped.keep and dropped.error is None
    assert starts == [1, 1]  # warm workers: one start each for six calls


def test_its_policy_section_switches_it_off_and_carries_its_options(
    expr: Expr, settings: SandboxSettings, target: Path
) -> None:
    definition = one_callback("expr", "node['size'] > 0")
    off = settings.with_language("expr", enabled=False)
    with CallbackSet([definition], task_id="t", policy=off) as cbs:
        outcome = cbs.filter(node_for(target))
    assert outcome.keep and outcome.skipped == ["cb"] and not outcome.calls
    short = SandboxSettings.model_validate(
        {**settings.model_dump(), "languages": {"expr": {"max_chars": 5}}}
    )
    assert isinstance(short.language_settings("expr"), ExprSettings)
    with CallbackSet([definition], task_id="t", policy=short) as cbs:
        outcome = cbs.filter(node_for(target))
    assert outcome.error is not None and "longer than 5" in outcome.error.message
    with pytest.raises(ValidationError, match=r"languages\.expr: max_chars"):
        SandboxSettings(languages={"expr": {"max_chars": 0}})


def test_storeflow_callback_run_with_the_new_language(
    expr: Expr, tmp_path: Path, target: Path
) -> None:
    cases = {
        "true.expr": ("node['path'].endswith('.csv') and task_id", 0, "ok", "cli"),
        "false.expr": ("metadata.get('owner') == 'bob'", 1, "ok", False),
        "syntax.expr": ("node[", 2, "error", None),
        "raise.expr": ("1 / 0", 2, "error", None),
    }
    for name, (source, code, status, result) in cases.items():
        path = tmp_path / name
        path.write_text(source)
        payload, exit_code = _cli("--lang", "expr", "--file", str(path), "--path", str(target),
                                  "--metadata", "owner=alice")  # fmt: skip
        assert (payload["status"], exit_code, payload["result"]) == (status, code, result), name
    loop = tmp_path / "loop.expr"
    loop.write_text("[0 for _ in iter(int, 1)]")
    payload, exit_code = _cli("--lang", "expr", "--file", str(loop), "--path", str(target),
                              "--timeout", "0.5")  # fmt: skip
    assert exit_code == 2 and "did not return within 0.5 s" in str(payload["error"])


def test_unknown_and_unregistered_languages_are_clear_errors(tmp_path: Path, target: Path) -> None:
    path = tmp_path / "x.expr"
    path.write_text("True")
    payload, code = _cli("--lang", "expr", "--file", str(path), "--path", str(target))
    assert code == 2 and payload["error"] == (
        "unknown callback language 'expr' (registered: python, javascript)"
    )
    with pytest.raises(ValidationError, match=r"language\n.*unknown callback language 'expr'"):
        CallbackDefinition(name="x", language="expr", stage=Stage.FILTER, source="True")
    with pytest.raises(ValidationError, match="unknown callback language 'expr'"):
        SandboxSettings(languages={"expr": {}})


def test_registration_rules(expr: Expr) -> None:
    with pytest.raises(ValueError, match="'expr' is already registered"):
        languages.register(Expr())

    class Clash(Expr):
        name = "clash"
        suffixes = (".py",)

    with pytest.raises(ValueError, match=r"suffix '\.py' already belongs to python"):
        languages.register(Clash())

    class BadName(Expr):
        name = "Bad Name"
        suffixes = (".bad",)

    with pytest.raises(ValueError, match="lower-case"):
        languages.register(BadName())
    assert languages.names() == ["python", "javascript", "expr"]
    assert languages.for_suffix(".expr") is expr


def test_a_failing_worker_is_reported_by_kind(
    expr: Expr, settings: SandboxSettings, target: Path
) -> None:
    with CallbackSet([one_callback("expr", "missing_name")], task_id="t", policy=settings) as cbs:
        outcome = cbs.filter(node_for(target))
    assert outcome.error is not None and outcome.error.kind is ErrorKind.EXCEPTION
    assert "NameError" in outcome.error.message
