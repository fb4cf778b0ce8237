"""The skeleton itself, with operations written for the test: soft delete,
cancel_delete, a perform that reports a status other than ACTIVE."""

from typing import Any

from prefect import flow
from prefect.states import State

from storeflow.blocks.config import StoreflowConfig, resolve_config
from storeflow.flows.spaces import space_create
from storeflow.models.schemas import ResourceView, SpaceSpec
from storeflow.models.status import Action, Status
from storeflow.tasks.lifecycle import ResourceOperation, run_operation
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
