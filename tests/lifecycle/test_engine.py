"""The skeleton itself, with operations written for the test: soft delete,
cancel_delete, a perform that reports a status other than ACTIVE."""

import time
from typing import Any

import pytest
from prefect import flow
from prefect.states import Completed, Failed, State

from storeflow.blocks.config import StoreflowConfig, resolve_config
from storeflow.flows.spaces import space_create
from storeflow.models.db import DatabaseFault
from storeflow.models.errors import InvalidInput
from storeflow.models.schemas import ResourceView, SpaceSpec
from storeflow.models.status import Action, Status
from storeflow.tasks.hook_base import ActionResults, HookContext
from storeflow.tasks.lifecycle import (
    LEASE_ENV,
    WAIT_ENV,
    ResourceOperation,
    Waiting,
    lease_seconds,
    lock_is_stale,
    lock_wait_seconds,
    run_has_ended,
    run_operation,
)
from storeflow.tasks.skeleton import HookedRun, HookSettings, run_hooked
from tests.lifecycle.conftest import exists, read, run

SEEN: list[ResourceView] = []


class KeepingDeleter(ResourceOperation):
    """Looks at the resource mid-delete, then keeps it (the seed's cancel_delete)."""

    kind = "space"
    action = Action.DELETE

    def perform(self, resource: ResourceView) -> Status:
        SEEN.append(resource)
        self.cancel_delete()
        return Status.ACTIVE


class DegradedDeleter(ResourceOperation):
    """A delete whose perform reports ERRORED without raising: the row must stay."""

    kind = "space"
    action = Action.DELETE

    def perform(self, resource: ResourceView) -> Status:
        return Status.ERRORED


@flow(name="test-keeping-delete")
def keeping_delete(name: str, etag: int) -> State[Any]:
    return run_operation(KeepingDeleter(resolve_config(), name, etag))


@flow(name="test-degraded-delete")
def degraded_delete(name: str, etag: int) -> State[Any]:
    return run_operation(DegradedDeleter(resolve_config(), name, etag))


def test_delete_is_soft_first_and_cancel_delete_keeps_the_row(config: StoreflowConfig) -> None:
    run(space_create, spec=SpaceSpec(name="kept"))
    space = read(config, "space", "kept")

    state = run(keeping_delete, name="kept", etag=space.etag)

    assert state.name == "Active", state.message
    during = SEEN[-1]
    assert during.deleted and during.status is Status.DELETING  # soft-deleted while it ran
    after = read(config, "space", "kept")
    assert not after.deleted and after.status is Status.ACTIVE


def test_row_is_hard_deleted_only_when_active_at_the_end(config: StoreflowConfig) -> None:
    run(space_create, spec=SpaceSpec(name="degraded"))
    space = read(config, "space", "degraded")

    state = run(degraded_delete, name="degraded", etag=space.etag)

    assert state.is_failed() and state.name == "Errored"
    assert exists(config, "space", "degraded")
    after = read(config, "space", "degraded")
    assert after.status is Status.ERRORED and not after.deleted and after.lock_owner is None


# -- the skeleton's own guarantees, with a run written for the test ---------------------


class _Run(HookedRun):
    """A skeleton run without drivers whose steps or announce fail as told."""

    label = "test/skeleton"
    func_name = "test_skeleton"

    def __init__(self, steps_fail: Exception | None, announce_fails: bool = False) -> None:
        self.steps_fail, self.announce_fails = steps_fail, announce_fails
        self.announced: list[ActionResults] = []

    @property
    def hooks(self) -> HookSettings:
        return StoreflowConfig().hooks

    def hook_context(self) -> HookContext:
        return HookContext(kind="space", action="create", resource_name="skeleton")

    def steps(self) -> ActionResults:
        if self.steps_fail is not None:
            raise self.steps_fail
        return ActionResults(status=Status.ACTIVE)

    def final_state(self, results: ActionResults) -> State[Any]:
        if results.status is Status.ACTIVE:
            return Completed(name="Active")
        return Failed(name="Errored", message=results.error)

    def announce(self, results: ActionResults, state: State[Any]) -> None:
        self.announced.append(results)
        if self.announce_fails:
            raise ConnectionError("the events API is gone")


@flow(name="test-skeleton")
def skeleton_flow(fail: str = "", announce_fails: bool = False) -> State[Any]:
    error = {"known": DatabaseFault("/db", "read-only"), "": None}[fail]
    return run_hooked(_Run(error, announce_fails))


def test_a_known_failure_of_a_step_ends_errored_with_its_one_line() -> None:
    state = skeleton_flow(fail="known", return_state=True)
    assert state.name == "Errored"
    assert state.message == "resource database /db: read-only"


def test_a_failing_announce_leaves_the_outcome_as_it_was() -> None:
    state = skeleton_flow(announce_fails=True, return_state=True)
    assert state.name == "Active" and state.is_completed()


def test_lock_settings_take_their_documented_ranges(monkeypatch: pytest.MonkeyPatch) -> None:
    for value, seconds in (("0.5", 0.5), ("86400", 86400.0), ("60", 60.0)):
        monkeypatch.setenv(LEASE_ENV, value)
        assert lease_seconds() == seconds
    for value in ("0.4", "86401", "-1"):
        monkeypatch.setenv(LEASE_ENV, value)
        with pytest.raises(InvalidInput, match=r"between 0\.5 and 86400"):
            lease_seconds()
    for value, seconds in (("0", 0.0), ("0.5", 0.5), ("86400", 86400.0)):
        monkeypatch.setenv(WAIT_ENV, value)
        assert lock_wait_seconds() == seconds
    monkeypatch.setenv(WAIT_ENV, "-0.1")
    with pytest.raises(InvalidInput, match="between 0 and 86400"):
        lock_wait_seconds()


def test_waiting_backs_off_to_one_second_and_stops_at_its_deadline(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    slept: list[float] = []
    monkeypatch.setattr(time, "sleep", slept.append)
    waiting = Waiting(3600)
    for _ in range(8):
        assert waiting.again()
    assert slept == [0.05, 0.1, 0.2, 0.4, 0.8, 1.0, 1.0, 1.0]
    assert not Waiting(0).again()


def test_a_lock_of_a_run_prefect_shows_running_is_not_stale(config: StoreflowConfig) -> None:
    @flow(name="test-holder")
    def holder() -> bool:
        from prefect.runtime import flow_run

        return run_has_ended(str(flow_run.id))

    assert holder() is False  # asked while it runs
    state = holder(return_state=True)
    assert run_has_ended(str(state.state_details.flow_run_id)) is True  # and once it ended
    assert run_has_ended("not-a-run-id") is True


def test_a_resource_nobody_holds_has_no_stale_lock(config: StoreflowConfig) -> None:
    run(space_create, spec=SpaceSpec(name="free"))
    free = read(config, "space", "free")
    assert free.lock_owner is None and lock_is_stale(free) is False
