"""Hook drivers: order, data flow, suppression, veto, post hooks on failure, replacement."""

import json
from pathlib import Path
from typing import Any

import pytest

from storeflow.blocks.config import StoreflowConfig
from storeflow.blocks.hooks import HookDriversBlock
from storeflow.flows.periodic_hooks import periodic_hooks
from storeflow.flows.spaces import space_create, space_update
from storeflow.models.errors import InvalidInput
from storeflow.models.schemas import SpaceSpec, SpaceUpdate
from storeflow.models.status import Status
from storeflow.tasks.hook_base import load_driver_class
from tests.lifecycle.conftest import exists, read, run
from tests.lifecycle.recording_hooks import calls

MODULE = "tests.lifecycle.recording_hooks"


@pytest.fixture
def drivers(monkeypatch: pytest.MonkeyPatch):
    def use(*names: str) -> None:
        monkeypatch.setenv("STOREFLOW_HOOK_DRIVERS", ",".join(f"{MODULE}:{n}" for n in names))

    return use


def test_drivers_run_in_order_around_the_operation(config: StoreflowConfig, drivers) -> None:
    drivers("Recorder", "SecondRecorder")

    assert run(space_create, spec=SpaceSpec(name="hooked")).name == "Active"

    seen = [(c["driver"], c["hook"]) for c in calls()]
    assert seen == [("first", "pre"), ("second", "pre"), ("first", "post"), ("second", "post")]
    first_post = calls()[2]
    assert first_post["func_name"] == "create_space"
    assert first_post["pre_hook_data"] == "first-pre-data"  # each driver gets its own
    assert first_post["status"] == "ACTIVE" and first_post["error"] is None


def test_post_hooks_see_the_failure(config: StoreflowConfig, drivers) -> None:
    run(space_create, spec=SpaceSpec(name="busy"))
    (config.storage.spaces_dir / "busy" / "f").write_bytes(b"x" * 100)
    drivers("Recorder")
    space = read(config, "space", "busy")

    state = run(space_update, name="busy", etag=space.etag, changes=SpaceUpdate(quota=10))

    assert state.name == "Refused"
    post = [c for c in calls() if c["hook"] == "post"]
    assert len(post) == 1 and "quota" in post[0]["error"]


def test_unsuppressed_pre_hook_error_refuses_untouched(config: StoreflowConfig, drivers) -> None:
    drivers("FailingPre")
    state = run(space_create, spec=SpaceSpec(name="never"))
    assert state.name == "Refused" and "pre hook exploded" in str(state.message)
    assert not exists(config, "space", "never")
    assert not (config.storage.spaces_dir / "never").exists()


def test_a_misspelt_driver_refuses_untouched(config: StoreflowConfig, monkeypatch) -> None:
    monkeypatch.setenv("STOREFLOW_HOOK_DRIVERS", f"{MODULE}.Recorder")  # '.' for ':'
    state = run(space_create, spec=SpaceSpec(name="misdriven"))
    assert state.name == "Refused", state.message
    assert "hook_drivers" in str(state.message) and "module.path:ClassName" in str(state.message)
    assert not exists(config, "space", "misdriven")
    assert not (config.storage.spaces_dir / "misdriven").exists()


def test_suppressed_pre_hook_error_lets_the_operation_run(
    config: StoreflowConfig, drivers, monkeypatch: pytest.MonkeyPatch
) -> None:
    drivers("FailingPre")
    block = HookDriversBlock(suppress_pre_hooks_errors=True)
    StoreflowConfig(storage=config.storage, database=config.database, hooks=block).save(
        "suppressing", overwrite=True
    )
    state = run(space_create, spec=SpaceSpec(name="anyway"), config="suppressing")
    assert state.name == "Active", state.message
    post = [c for c in calls() if c["hook"] == "post"]
    assert "pre hook exploded" in post[0]["pre_hook_data"]  # the suppressed error is passed on


def test_disabled_hooks_do_not_run(config: StoreflowConfig, drivers) -> None:
    drivers("Recorder")
    block = HookDriversBlock(enable_pre_hooks=False, enable_post_hooks=False)
    StoreflowConfig(storage=config.storage, database=config.database, hooks=block).save(
        "disabled", overwrite=True
    )
    assert run(space_create, spec=SpaceSpec(name="quiet"), config="disabled").name == "Active"
    assert calls() == []


def test_a_pre_hook_can_veto_with_a_reason(config: StoreflowConfig, drivers) -> None:
    drivers("Vetoing")
    state = run(space_create, spec=SpaceSpec(name="forbidden-space"))
    assert state.name == "Refused"
    assert "vetoed by Vetoing: names starting with 'forbidden' are reserved" in str(state.message)
    assert not exists(config, "space", "forbidden-space")
    assert run(space_create, spec=SpaceSpec(name="allowed")).name == "Active"


def test_a_post_hook_can_replace_the_result(config: StoreflowConfig, drivers) -> None:
    drivers("Verifier")
    state = run(space_create, spec=SpaceSpec(name="unverified"))
    assert state.is_failed() and state.name == "Errored"
    assert "verification failed" in str(state.message)
    assert read(config, "space", "unverified").status is Status.ERRORED


def test_audit_driver_appends_json_lines(config: StoreflowConfig, drivers, monkeypatch) -> None:
    monkeypatch.setenv("STOREFLOW_HOOK_DRIVERS", "storeflow.tasks.hook_drivers.audit:AuditHook")
    run(space_create, spec=SpaceSpec(name="audited"))
    run(space_create, spec=SpaceSpec(name="audited"))  # refused: name taken

    log = Path(config.storage.root).parent / "audit.jsonl"
    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert [(r["event"], r["resource"]) for r in records] == [("pre", "audited")] * 1 + [
        ("post", "audited"),
        ("pre", "audited"),
        ("post", "audited"),
    ]
    assert records[1]["status"] == "ACTIVE"
    assert "already exists" in records[3]["error"]


def test_periodic_hook_gets_every_kinds_data(config: StoreflowConfig, drivers) -> None:
    run(space_create, spec=SpaceSpec(name="measured", quota="1M"))
    (config.storage.spaces_dir / "measured" / "f").write_bytes(b"x" * 123)
    drivers("Recorder")

    state = run(periodic_hooks)

    assert state.is_completed() and state.result() == 1
    periodic = [c for c in calls() if c["hook"] == "periodic"]
    assert len(periodic) == 1
    spaces = periodic[0]["data"]["space"]
    assert spaces == [
        {
            "id": 1,
            "name": "measured",
            "status": "ACTIVE",
            "quota": 1024**2,
            "usage_bytes": 123,
            "files": 1,
        }
    ]
    assert set(periodic[0]["data"]) >= {"space", "snapshot", "template"}


def test_bad_driver_paths_are_clear_errors() -> None:
    for path, reason in [
        ("no-colon", "not of the form"),
        ("tests.lifecycle.recording_hooks:", "not of the form"),
        (":RecordingHook", "not of the form"),
        ("nonexistent.module:Cls", "cannot import"),
        ("tests.lifecycle.recording_hooks:calls", "not a HookBase subclass"),
    ]:
        with pytest.raises(InvalidInput, match=reason) as info:
            load_driver_class(path)
        assert info.value.field == "hook_drivers"


def test_a_shipped_driver_named_before_the_storeflow_namespace_still_loads() -> None:
    from storeflow.tasks.hook_drivers.audit import AuditHook

    assert load_driver_class("tasks.hook_drivers.audit:AuditHook") is AuditHook
    assert load_driver_class("storeflow.tasks.hook_drivers.audit:AuditHook") is AuditHook


def _save(config: StoreflowConfig, name: str, **hooks: Any) -> str:
    block = HookDriversBlock(**hooks)
    StoreflowConfig(storage=config.storage, database=config.database, hooks=block).save(
        name, overwrite=True
    )
    return name


def test_a_post_hook_error_is_suppressed_only_when_asked(config: StoreflowConfig, drivers) -> None:
    drivers("FailingPost", "Recorder")
    loud = run(space_create, spec=SpaceSpec(name="loud"))
    assert loud.is_failed() and loud.name == "Errored", loud
    assert "post hook failed: post hook exploded" in str(loud.message)
    # The work is done and kept; the record says a post hook found it not right.
    assert (config.storage.spaces_dir / "loud").is_dir()
    record = read(config, "space", "loud")
    assert record.status is Status.ERRORED
    assert record.status_message == "post hook failed: post hook exploded"

    quiet = _save(config, "quiet-post", suppress_post_hooks_errors=True)
    state = run(space_create, spec=SpaceSpec(name="calm"), config=quiet)
    assert state.name == "Active", state.message
    assert read(config, "space", "calm").status is Status.ACTIVE
    # The next driver's post hook still ran, after the suppressed error.
    last_post = [c for c in calls() if c["hook"] == "post"][-1]
    assert (last_post["driver"], last_post["status"]) == ("first", "ACTIVE")


def test_periodic_hooks_can_be_disabled(config: StoreflowConfig, drivers) -> None:
    drivers("Recorder")
    off = _save(config, "no-periodic", enable_periodic_hooks=False)
    state = run(periodic_hooks, config=off)
    assert state.is_completed() and state.result() == 0
    assert [c for c in calls() if c["hook"] == "periodic"] == []
    assert run(periodic_hooks).result() == 1  # the default: enabled
    assert len([c for c in calls() if c["hook"] == "periodic"]) == 1


def test_drivers_read_their_options_and_the_interval(config: StoreflowConfig, drivers) -> None:
    drivers("OptionReader")
    named = _save(
        config, "with-options", periodic_hooks_interval=60, options={"endpoint": "https://x"}
    )
    assert run(space_create, spec=SpaceSpec(name="opted"), config=named).name == "Active"
    (pre,) = [c for c in calls() if c["hook"] == "pre"]
    assert (pre["endpoint"], pre["interval"], pre["missing"]) == ("https://x", 60, None)
    assert run(space_create, spec=SpaceSpec(name="plain")).name == "Active"
    defaults = [c for c in calls() if c["hook"] == "pre"][-1]
    assert (defaults["endpoint"], defaults["interval"]) == (None, 300)


def test_a_driver_without_a_configuration_is_enabled_and_unsuppressed() -> None:
    """Naming a driver enables it (unlike Manila): the defaults when nothing is set."""
    from tests.lifecycle.recording_hooks import Recorder

    driver = Recorder()
    assert (driver.pre_hooks_enabled, driver.post_hooks_enabled) == (True, True)
    assert driver.periodic_hooks_enabled is True
    assert (driver.suppress_pre_hooks_errors, driver.suppress_post_hooks_errors) == (False, False)
    assert driver.get_config_option("periodic_hooks_interval") == 300.0
    assert driver.get_config_option("anything-else") is None


def test_a_hooks_context_cannot_be_changed_by_a_driver() -> None:
    """Every driver sees the same context: one driver cannot rewrite what the next sees."""
    import dataclasses

    from storeflow.tasks.hook_base import HookContext

    context = HookContext(kind="space", action="create", resource_name="alpha")
    with pytest.raises(dataclasses.FrozenInstanceError):
        context.resource_name = "beta"  # type: ignore[misc]
