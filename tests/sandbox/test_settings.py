"""The policy's per-language sections, the older field names they replace, and
per-language limits that really reach the worker."""

from pathlib import Path
from uuid import uuid4

import pytest
from pydantic import ValidationError

from storeflow.blocks.sandbox import SandboxPolicy
from storeflow.sandbox.languages.javascript import JavaScriptSettings
from storeflow.sandbox.languages.python import PythonSettings
from storeflow.sandbox.models import ErrorKind
from storeflow.sandbox.settings import SandboxSettings
from storeflow.sandbox.stages import CallbackSet
from tests.sandbox.helpers import node_for, one_callback

# What a SandboxPolicy block saved before the per-language sections holds.
OLD_BLOCK_DATA = {
    "call_timeout_s": 2.0,
    "python_enabled": False,
    "javascript_enabled": True,
    "python_hooks_dir": "/srv/hooks/py",
    "javascript_hooks_dir": "/srv/hooks/js",
    "allow_weak_isolation": False,
}


def test_old_field_names_land_in_their_sections() -> None:
    for model in (SandboxSettings, SandboxPolicy):
        policy = model.model_validate(OLD_BLOCK_DATA)
        assert not policy.enabled("python") and policy.enabled("javascript")
        assert policy.hooks_dir("python") == Path("/srv/hooks/py")
        assert policy.hooks_dir("javascript") == Path("/srv/hooks/js")
        assert policy.call_timeout_s == 2.0
        assert isinstance(policy.languages["python"], PythonSettings)
        assert isinstance(policy.languages["javascript"], JavaScriptSettings)
        assert not hasattr(policy, "python_enabled")


def test_a_new_section_wins_over_an_old_field() -> None:
    policy = SandboxSettings.model_validate(
        {"python_enabled": False, "languages": {"python": {"enabled": True, "open_files": 32}}}
    )
    assert policy.enabled("python")
    section = policy.language_settings("python")
    assert isinstance(section, PythonSettings) and section.open_files == 32


def test_model_copy_still_takes_old_field_names() -> None:
    # tasks/transfer/preparation.py points both hook directories at one --callbacks-dir this way.
    root = Path("/srv/callbacks")
    policy = SandboxSettings(languages={"javascript": {"data_overhead_mb": 512}})
    moved = policy.model_copy(update={"python_hooks_dir": root, "javascript_hooks_dir": root})
    assert moved.hooks_dir("python") == root and moved.hooks_dir("javascript") == root
    section = moved.language_settings("javascript")
    assert isinstance(section, JavaScriptSettings) and section.data_overhead_mb == 512
    assert policy.hooks_dir("python") == Path("python-hooks")  # the original is untouched


def test_defaults_without_a_section() -> None:
    policy = SandboxSettings()
    assert policy.languages == {}
    assert policy.enabled("javascript") and policy.hooks_dir("javascript") == Path(
        "javascript-hooks"
    )
    assert policy.for_language("python") is policy


def test_saved_block_round_trip_keeps_language_options() -> None:
    policy = SandboxPolicy(
        languages={"javascript": {"data_overhead_mb": 512, "memory_limit_mb": 64}},
        python_enabled=False,
    )
    document = policy._to_block_document(name="p", block_schema_id=uuid4(), block_type_id=uuid4())
    loaded = SandboxPolicy.model_validate(document.data)
    section = loaded.language_settings("javascript")
    assert isinstance(section, JavaScriptSettings)
    assert (section.data_overhead_mb, section.memory_limit_mb) == (512, 64)
    assert not loaded.enabled("python")
    assert loaded.for_language("javascript").memory_limit_mb == 64


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"languages": {"cobol": {}}}, "unknown callback language 'cobol'"),
        ({"languages": {"python": {"open_files": 1}}}, r"languages\.python: open_files"),
        ({"languages": {"python": {"memory_limit_mb": 1}}}, r"python: memory_limit_mb"),
        ({"languages": {"javascript": {"colour": "red"}}}, r"javascript: colour: Extra inputs"),
        ({"languages": ["python"]}, "mapping of language name"),
        ({"python_enabled": "perhaps"}, r"python: enabled"),
    ],
)
def test_bad_sections_are_one_clear_error(data: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        SandboxSettings.model_validate(data)


def test_with_language_validates() -> None:
    with pytest.raises(ValueError, match=r"languages\.javascript: call_timeout_s"):
        SandboxSettings().with_language("javascript", call_timeout_s=-1)


def test_a_language_timeout_applies_to_that_language_only(
    settings: SandboxSettings, target: Path
) -> None:
    policy = settings.with_language("javascript", call_timeout_s=0.5)
    looping_js = one_callback("javascript", "module.exports = () => { for (;;) {} }", name="js")
    slow_py = one_callback(
        "python", "import time\ndef run(req):\n    time.sleep(1)\n    return True\n", name="py"
    )
    with CallbackSet([slow_py], task_id="t", policy=policy) as cbs:
        assert cbs.filter(node_for(target)).keep  # 1 s is within Python's 3 s
    with CallbackSet([looping_js], task_id="t", policy=policy) as cbs:
        outcome = cbs.filter(node_for(target))
    assert outcome.error is not None and outcome.error.kind is ErrorKind.TIMEOUT
    assert "within 0.5 s" in outcome.error.message


def test_python_section_limits_reach_the_jail(settings: SandboxSettings, target: Path) -> None:
    policy = settings.with_language("python", open_files=32, memory_limit_mb=96)
    source = (
        "import resource\ndef run(req):\n"
        "    return [resource.getrlimit(resource.RLIMIT_NOFILE)[0],"
        " resource.getrlimit(resource.RLIMIT_AS)[0] // 2**20]\n"
    )
    with CallbackSet([one_callback("python", source)], task_id="t", policy=policy) as cbs:
        outcome = cbs.filter(node_for(target))
    assert outcome.error is None, outcome.error
    assert outcome.calls[0].outcome.result == [32, 96]
