"""Replicas: a space kept in sync with a directory of a provider, on a schedule.

The Builder creates the replica's schedule (a `replica-sync/<name>` deployment, see
tasks/schedules.py) and the Deleter removes it.  As in the seed's
`check_conflicting_replicas`, a replica conflicts with an existing replica of the same
space that syncs the same direction, or with any bidirectional one (and a bidirectional
one with any); the opposite direction is fine.

A sync (flows/replicas.py) copies what is missing or different, never deletes: upstream
the space wins, downstream the provider wins, bidirectionally the newer copy wins.
"""

from typing import Any

from sqlalchemy.orm import Session

from storeflow.blocks.config import StoreflowConfig
from storeflow.models import repository
from storeflow.models.errors import Refused
from storeflow.models.replicas import (
    ProviderSpec,
    ReplicaSpec,
    ReplicaUpdate,
    ScheduleSpec,
    updated,
)
from storeflow.models.schemas import ResourceView
from storeflow.models.status import Action, Status
from storeflow.tasks import providers, schedules
from storeflow.tasks.reconcile import Change, settle_interrupted
from storeflow.tasks.spaces import space_path
from storeflow.tasks.tree_sync import Endpoint, TreeReport, open_endpoint, sync_tree

KIND = "replica"
FLOW = "replica-sync"
ENTRYPOINT = "flows/replicas.py:replica_sync"


class ReplicaConflict(Refused):
    pass


def conflicts(a: str, b: str) -> bool:
    return a == b or "bidirectional" in (a, b)


def check_conflicting_replicas(session: Session, spec: ReplicaSpec) -> None:
    for other in repository.list_kind(session, KIND):
        if other.deleted or other.spec.get("space") != spec.space or other.name == spec.name:
            continue
        direction = str(other.spec.get("direction"))
        if conflicts(direction, spec.direction):
            raise ReplicaConflict(
                f"replica {other.name!r} already syncs space {spec.space!r} {direction}; "
                f"a {spec.direction} replica of the same space would conflict"
            )


def scheduled(spec: ReplicaSpec) -> tuple[ScheduleSpec, str, list[str]]:
    """The replica's deployment: its schedule, description and tags."""
    return (
        spec.schedule,
        f"Sync space {spec.space} {spec.direction} with provider {spec.provider}.",
        ["storeflow", "replica", f"space:{spec.space}"],
    )


class ReplicaBuilder(schedules.ScheduleBuilder):
    kind = KIND
    action = Action.CREATE
    flow = FLOW
    entrypoint = ENTRYPOINT

    def __init__(self, config: StoreflowConfig, spec: ReplicaSpec) -> None:
        super().__init__(config, spec.name)
        self.spec = spec
        self._space: ResourceView | None = None

    def parameters(self) -> dict[str, Any]:
        return self.spec.model_dump(mode="json")

    def check(self, session: Session, resource: ResourceView | None) -> None:
        space = repository.find(session, "space", self.spec.space)
        if space.status is not Status.ACTIVE:
            raise Refused(f"space {space.name!r} is {space.status.value}; replicas need ACTIVE")
        providers.find(session, self.spec.provider)
        check_conflicting_replicas(session, self.spec)
        schedules.require_server(f"replica {self.spec.name!r}")
        self._space = space

    def create_row(self, session: Session) -> ResourceView:
        assert self._space is not None
        return repository.insert(
            session,
            KIND,
            self.spec.name,
            self.spec.model_dump(mode="json"),
            parent_id=self._space.id,  # the space cannot be deleted while it has replicas
        )

    def perform(self, resource: ResourceView) -> Status:
        self.create_schedule(*scheduled(self.spec))
        return Status.ACTIVE


class ReplicaUpdater(schedules.ScheduleUpdater):
    """Change a replica's provider, direction, remote directory or schedule (the
    conflict rules hold for the result); its deployment is replaced to match."""

    kind = KIND
    action = Action.UPDATE
    flow = FLOW
    entrypoint = ENTRYPOINT

    def __init__(
        self, config: StoreflowConfig, name: str, etag: int | None, changes: ReplicaUpdate
    ) -> None:
        super().__init__(config, name, etag)
        self.changes = changes
        self.spec: ReplicaSpec | None = None

    def parameters(self) -> dict[str, Any]:
        return {"name": self.name, "etag": self.etag, **self.changes.model_dump(mode="json")}

    def check(self, session: Session, resource: ResourceView | None) -> None:
        assert resource is not None
        try:
            self.spec = updated(resource.spec, self.changes, ReplicaSpec)
        except ValueError as exc:
            raise Refused(f"replica {self.name!r}: {providers.one_line(exc)}") from None
        providers.find(session, self.spec.provider)
        check_conflicting_replicas(session, self.spec)
        schedules.require_server(f"replica {self.name!r}")

    def perform(self, resource: ResourceView) -> Status:
        spec = self.spec
        assert spec is not None
        self.replace_schedule(*scheduled(spec))
        self.new_spec = spec.model_dump(mode="json")
        return Status.ACTIVE


class ReplicaDeleter(schedules.ScheduleDeleter):
    """Pause the schedule in perform (reversible); delete it once the delete commits."""

    kind = KIND
    action = Action.DELETE
    flow = FLOW


def undo_interrupted(config: StoreflowConfig, row: ResourceView) -> None:
    schedules.undo_interrupted(
        FLOW, row, ENTRYPOINT, lambda spec: scheduled(ReplicaSpec.model_validate(spec))
    )


def reconcile_replicas(config: StoreflowConfig) -> list[Change]:
    """Replicas whose run was killed: a create's deployment and record go, a delete's
    paused schedule resumes, an update's deployment is put back to the recorded spec;
    the replica stays (ERRORED) after anything but a create."""
    return settle_interrupted(
        config, KIND, undo_create=undo_interrupted, undo_change=undo_interrupted
    )


# -- the sync itself ---------------------------------------------------------------------


def endpoints(
    config: StoreflowConfig, replica: ReplicaSpec, provider: ProviderSpec
) -> tuple[Endpoint, Endpoint]:
    """(the space, the provider's directory for it)."""
    local = Endpoint(str(space_path(config, replica.space)), {"name": "local"})
    remote_dir = replica.remote_directory or replica.space
    remote = providers.endpoint(provider, remote_dir)
    return local, remote


def sync(config: StoreflowConfig, replica: ReplicaSpec, provider: ProviderSpec) -> dict[str, Any]:
    """Run the replica's direction(s) once; returns what moved each way."""
    local, remote = endpoints(config, replica, provider)
    local_handler = open_endpoint(local)
    remote_handler = open_endpoint(remote)
    try:
        if not remote_handler.is_dir(remote.directory):
            remote_handler.make_dirs(remote.directory)
        both = replica.direction == "bidirectional"
        moved: dict[str, Any] = {}
        if replica.direction in ("upstream", "bidirectional"):
            moved["upstream"] = _summary(
                sync_tree(local, remote, local_handler, remote_handler, newer_only=both)
            )
        if replica.direction in ("downstream", "bidirectional"):
            moved["downstream"] = _summary(
                sync_tree(remote, local, remote_handler, local_handler, newer_only=both)
            )
        return moved
    finally:
        remote_handler.tidy()
        local_handler.tidy()


def _summary(report: TreeReport) -> dict[str, Any]:
    return {"files": report.files, "bytes": report.bytes, "directories": report.directories}


def get_periodic_hook_data(replicas: list[ResourceView]) -> list[dict[str, Any]]:
    return [
        {
            "id": r.id,
            "name": r.name,
            "status": r.status.value,
            "space": r.spec.get("space"),
            "provider": r.spec.get("provider"),
            "direction": r.spec.get("direction"),
            "last_sync": r.state.get("last_sync"),
        }
        for r in replicas
    ]
