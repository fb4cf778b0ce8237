"""Snapshots: a read-only point-in-time tree of a space.

Reflink copies where the filesystem shares extents, a hard-link tree
otherwise; a full copy only when asked for.
"""

from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from storeflow.blocks.config import StoreflowConfig
from storeflow.models import repository
from storeflow.models.errors import Refused
from storeflow.models.schemas import ResourceView, SnapshotSpec
from storeflow.models.status import Action, Status
from storeflow.tasks import fstools
from storeflow.tasks.directories import DirectoryBuilder, DirectoryDeleter
from storeflow.tasks.lifecycle import ResourceOperation
from storeflow.tasks.spaces import space_path

KIND = "snapshot"


def snapshot_path(config: StoreflowConfig, space_id: int, name: str) -> Path:
    parent = config.storage.snapshots_dir / f"space-{space_id}"
    return fstools.child_path(parent, name, "snapshot directory")


class SnapshotOperation(ResourceOperation):
    """Snapshots are named within their space: look them up there."""

    def __init__(
        self, config: StoreflowConfig, space: str, name: str, etag: int | None = None
    ) -> None:
        super().__init__(config, name, etag)
        self.space_name = space

    @property
    def label(self) -> str:
        return f"{self.kind}-{self.action.value}/{self.space_name}/{self.name}"

    def parameters(self) -> dict[str, Any]:
        return {"space": self.space_name, "name": self.name, "etag": self.etag}

    def space(self, session: Session) -> ResourceView:
        return repository.find(session, "space", self.space_name)

    def locate(self, session: Session) -> ResourceView:
        return repository.find(session, KIND, self.name, scope=str(self.space(session).id))


class SnapshotBuilder(SnapshotOperation, DirectoryBuilder):
    kind = KIND
    action = Action.CREATE

    def __init__(self, config: StoreflowConfig, spec: SnapshotSpec) -> None:
        super().__init__(config, spec.space, spec.name)
        self.spec = spec
        self._space: ResourceView | None = None

    def check(self, session: Session, resource: ResourceView | None) -> None:
        space = self.space(session)
        if space.status is not Status.ACTIVE:
            raise Refused(f"space {space.name!r} is {space.status.value}; snapshots need ACTIVE")
        self._space = space

    def create_row(self, session: Session) -> ResourceView:
        assert self._space is not None
        return repository.insert(
            session,
            KIND,
            self.spec.name,
            self.spec.model_dump(mode="json"),
            scope=str(self._space.id),
            parent_id=self._space.id,
        )

    def perform(self, resource: ResourceView) -> Status:
        assert self._space is not None
        source = space_path(self.config, self._space.name)
        dest = snapshot_path(self.config, self._space.id, self.spec.name)
        dest.parent.mkdir(parents=True, exist_ok=True)
        if dest.exists():
            raise FileExistsError(f"{dest} already exists")
        used_mode = fstools.snapshot_tree(source, dest, self.spec.mode)
        self.made(dest)
        used = fstools.usage(dest)
        self.new_state = {
            "path": str(dest),
            "mode": used_mode,
            "usage_bytes": used.bytes,
            "files": used.files,
        }
        return Status.ACTIVE


class SnapshotDeleter(SnapshotOperation, DirectoryDeleter):
    kind = KIND
    action = Action.DELETE

    def directory(self, resource: ResourceView) -> Path:
        assert resource.parent_id is not None
        return snapshot_path(self.config, resource.parent_id, resource.name)


def get_periodic_hook_data(snapshots: list[ResourceView]) -> list[dict[str, Any]]:
    return [
        {
            "id": snap.id,
            "name": snap.name,
            "space_id": snap.parent_id,
            "status": snap.status.value,
            "created_at": snap.created_at.isoformat(),
            "mode": snap.state.get("mode"),
        }
        for snap in snapshots
    ]
