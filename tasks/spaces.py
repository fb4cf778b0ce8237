"""Spaces: a directory tree (the fileset) with a quota and measured usage.

SpaceBuilder, SpaceUpdater and SpaceDeleter fill in the lifecycle skeleton.
"""

import os
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from storeflow.blocks.config import StoreflowConfig
from storeflow.models import repository
from storeflow.models.errors import Refused
from storeflow.models.names import format_size
from storeflow.models.schemas import ResourceView, SpaceSpec, SpaceUpdate
from storeflow.models.status import Action, Status
from storeflow.tasks import fstools
from storeflow.tasks.directories import DirectoryBuilder, DirectoryDeleter, DirectoryUpdater

KIND = "space"


class QuotaExceeded(Refused):
    pass


def space_path(config: StoreflowConfig, name: str) -> Path:
    return fstools.child_path(config.storage.spaces_dir, name, "space directory")


def observed_state(
    path: Path, template: str | None = None, template_id: int | None = None
) -> dict[str, Any]:
    used = fstools.usage(path)
    return {
        "path": str(path),
        "usage_bytes": used.bytes,
        "files": used.files,
        "template": template,
        "template_id": template_id,
    }


def find_template(session: Session, name: str) -> ResourceView:
    template = repository.find(session, "template", name)
    if template.status not in (Status.ACTIVE, Status.ERRORED):  # ERRORED stays usable
        raise Refused(f"template {name!r} is {template.status.value}, not usable now")
    return template


def check_quota(quota: int, needed: int, what: str) -> None:
    if quota and needed > quota:
        raise QuotaExceeded(
            f"{what} needs {format_size(needed)} but the quota is {format_size(quota)}"
        )


class SpaceBuilder(DirectoryBuilder):
    kind = KIND
    action = Action.CREATE

    def __init__(self, config: StoreflowConfig, spec: SpaceSpec) -> None:
        super().__init__(config, spec.name)
        self.spec = spec
        self.template: ResourceView | None = None

    def parameters(self) -> dict[str, Any]:
        return self.spec.model_dump(mode="json")

    def check(self, session: Session, resource: ResourceView | None) -> None:
        path = space_path(self.config, self.spec.name)
        if path.exists():
            raise Refused(f"{path} already exists on disk; run reconcile to adopt it")
        if self.spec.template:
            self.template = find_template(session, self.spec.template)
            check_quota(
                self.spec.quota,
                int(self.template.state.get("usage_bytes", 0)),
                f"template {self.template.name!r}",
            )

    def create_row(self, session: Session) -> ResourceView:
        return repository.insert(session, KIND, self.spec.name, self.spec.model_dump(mode="json"))

    def perform(self, resource: ResourceView) -> Status:
        self.config.storage.ensure_layout()
        path = space_path(self.config, self.spec.name)
        if self.template is None:
            path.mkdir()
            self.made(path)
        else:
            # Built under a hidden name and renamed into place: a run killed half-way
            # leaves a leftover reconcile removes, never half a tree under the name.
            store = self.config.storage.templates_dir
            staging = self.made(fstools.temp_sibling(path, "copy"))
            staging.mkdir()
            fstools.install_tree(fstools.child_path(store, self.template.name, "template"), staging)
            if os.path.lexists(path):  # os.rename would replace an empty directory
                raise FileExistsError(f"{path} appeared while the space was being built")
            staging.rename(path)
            self.made(path)
        template = self.template
        self.new_state = observed_state(
            path, template.name if template else None, template.id if template else None
        )
        return Status.ACTIVE


class SpaceUpdater(DirectoryUpdater):
    """Rename, resize (quota) or uninstall the template of a space."""

    kind = KIND
    action = Action.UPDATE

    def __init__(
        self, config: StoreflowConfig, name: str, etag: int | None, changes: SpaceUpdate
    ) -> None:
        super().__init__(config, name, etag)
        self.changes = changes
        self._uninstalled: list[str] = []

    def parameters(self) -> dict[str, Any]:
        return {"name": self.name, "etag": self.etag, **self.changes.model_dump(mode="json")}

    def check(self, session: Session, resource: ResourceView | None) -> None:
        assert resource is not None
        changes = self.changes
        if changes.rename and changes.rename != resource.name:
            # Exposers (and anything else but snapshots, which are keyed by the
            # space's id) point at the space's path: a rename would strand them.
            users = [c for c in repository.children(session, resource.id) if c.kind != "snapshot"]
            if users:
                names = ", ".join(f"{c.kind} {c.name}" for c in users)
                raise Refused(f"space {resource.name!r} is in use by {names}; cannot rename it")
            self.check_rename(session, changes.rename, space_path(self.config, changes.rename))
        if changes.quota:
            used = fstools.usage(space_path(self.config, resource.name)).bytes
            check_quota(changes.quota, used, f"space {resource.name!r} (in use)")
        if changes.uninstall_template and not resource.state.get("template_id"):
            raise Refused(f"space {resource.name!r} has no installed template")

    def perform(self, resource: ResourceView) -> Status:
        path = space_path(self.config, resource.name)
        spec = dict(resource.spec)
        template, template_id = resource.state.get("template"), resource.state.get("template_id")
        if self.changes.uninstall_template:
            store = self.config.storage.templates_dir
            self._uninstalled = fstools.uninstall_tree(
                fstools.child_path(store, resource.state["template"], "template"), path
            )
            spec["template"] = template = template_id = None
        if self.changes.quota is not None:
            spec["quota"] = self.changes.quota
        rename = self.changes.rename
        if rename and rename != resource.name:
            path = self.rename_tree(path, space_path(self.config, rename), rename)
            spec["name"] = rename
        self.new_spec = spec
        self.new_state = observed_state(path, template, template_id)
        return Status.ACTIVE

    def rollback(self, resource: ResourceView) -> None:
        super().rollback(resource)
        if self._uninstalled:
            store = self.config.storage.templates_dir
            template = store / resource.state["template"]
            space = space_path(self.config, resource.name)
            fstools.reinstall(template, space, self._uninstalled)
            self._uninstalled = []


class SpaceDeleter(DirectoryDeleter):
    """Delete a space; a space holding more than its unchanged template needs force."""

    kind = KIND
    action = Action.DELETE

    def __init__(self, config: StoreflowConfig, name: str, etag: int | None, force: bool) -> None:
        super().__init__(config, name, etag)
        self.force = force

    def parameters(self) -> dict[str, Any]:
        return {"name": self.name, "etag": self.etag, "force": self.force}

    def directory(self, resource: ResourceView) -> Path:
        return space_path(self.config, resource.name)

    def check(self, session: Session, resource: ResourceView | None) -> None:
        assert resource is not None
        dependents = repository.children(session, resource.id)
        if dependents:
            kinds = sorted({d.kind for d in dependents})
            names = ", ".join(d.name for d in dependents)
            raise Refused(
                f"space {resource.name!r} has {'/'.join(k + 's' for k in kinds)} ({names}); "
                "delete them first"
            )
        path = self.directory(resource)
        if self.force or not path.exists() or fstools.is_empty(path):
            return
        template_name = resource.state.get("template")
        if template_name:
            template = self.config.storage.templates_dir / template_name
            if template.is_dir() and fstools.only_template_inside(template, path):
                return
        used = fstools.usage(path)
        raise Refused(
            f"space {resource.name!r} is not empty ({used.files} files, "
            f"{format_size(used.bytes)}); delete with force to remove its data"
        )


def get_periodic_hook_data(spaces: list[ResourceView]) -> list[dict[str, Any]]:
    """What periodic hooks learn of each space: its quota and current usage."""
    data = []
    for space in spaces:
        path = Path(space.state.get("path", ""))
        used = fstools.usage(path) if path.is_dir() else None
        data.append(
            {
                "id": space.id,
                "name": space.name,
                "status": space.status.value,
                "quota": space.spec.get("quota", 0),
                "usage_bytes": used.bytes if used else None,
                "files": used.files if used else None,
            }
        )
    return data
