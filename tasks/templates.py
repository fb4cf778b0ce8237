"""Templates: directory trees in the template store, installed into new spaces.

Every path is checked to stay inside the store (symlinks included) before
anything is copied, moved or deleted: the seed's copy/move/delete_template
tools, without the sudo.
"""

from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from storeflow.blocks.config import StoreflowConfig
from storeflow.models import repository
from storeflow.models.errors import Refused, StoreflowError
from storeflow.models.names import format_size
from storeflow.models.schemas import ResourceView, TemplateSpec, TemplateUpdate
from storeflow.models.status import Action, Status
from storeflow.tasks import fstools
from storeflow.tasks.directories import DirectoryBuilder, DirectoryDeleter, DirectoryUpdater

KIND = "template"


class TemplateTooBig(Refused):
    """The directory tree is bigger than the configured template size limit."""


class TemplateInUse(StoreflowError):
    """A template installed in a space cannot be deleted (it stays usable)."""


def template_path(config: StoreflowConfig, name: str) -> Path:
    return fstools.child_path(config.storage.templates_dir, name, "template")


def check_source(config: StoreflowConfig, source: Path, field: str) -> fstools.Usage:
    """A directory we may copy into the store, no bigger than the limit."""
    fstools.check_source_dir(source, field, [config.storage.root, config.storage.templates_dir])
    used = fstools.usage(source)
    limit = config.storage.template_max_size
    if used.bytes > limit:
        raise TemplateTooBig(
            f"{source} holds {format_size(used.bytes)}; templates are limited to "
            f"{format_size(limit)}"
        )
    return used


def copy_into_store(config: StoreflowConfig, source: Path, dest: Path) -> dict[str, Any]:
    """Copy, then measure the copy: the source may have grown since it was checked."""
    fstools.copy_tree(source, dest)
    used = fstools.usage(dest)
    if used.bytes > config.storage.template_max_size:
        fstools.remove_tree(dest)
        raise TemplateTooBig(f"{source} grew past the template size limit while copying")
    return {
        "path": str(dest),
        "source": str(source),
        "usage_bytes": used.bytes,
        "files": used.files,
    }


def spaces_using(session: Session, template_id: int) -> list[str]:
    return [
        space.name
        for space in repository.list_kind(session, "space")
        if space.state.get("template_id") == template_id
    ]


class TemplateBuilder(DirectoryBuilder):
    kind = KIND
    action = Action.CREATE

    def __init__(self, config: StoreflowConfig, spec: TemplateSpec) -> None:
        super().__init__(config, spec.name)
        self.spec = spec

    def parameters(self) -> dict[str, Any]:
        return self.spec.model_dump(mode="json")

    def check(self, session: Session, resource: ResourceView | None) -> None:
        check_source(self.config, self.spec.source, "template.source")
        self.config.storage.ensure_layout()
        if template_path(self.config, self.spec.name).exists():
            raise Refused(f"{template_path(self.config, self.spec.name)} already exists on disk")

    def create_row(self, session: Session) -> ResourceView:
        return repository.insert(session, KIND, self.spec.name, self.spec.model_dump(mode="json"))

    def perform(self, resource: ResourceView) -> Status:
        dest = template_path(self.config, self.spec.name)
        self.new_state = copy_into_store(self.config, self.spec.source, dest)
        self.made(dest)
        return Status.ACTIVE


class TemplateUpdater(DirectoryUpdater):
    """Rename within the store, or replace the tree from another directory."""

    kind = KIND
    action = Action.UPDATE

    def __init__(
        self, config: StoreflowConfig, name: str, etag: int | None, changes: TemplateUpdate
    ) -> None:
        super().__init__(config, name, etag)
        self.changes = changes
        self._replaced: tuple[Path, Path] | None = None  # (live path, old tree moved aside)

    def parameters(self) -> dict[str, Any]:
        return {"name": self.name, "etag": self.etag, **self.changes.model_dump(mode="json")}

    def check(self, session: Session, resource: ResourceView | None) -> None:
        if self.changes.source is not None:
            check_source(self.config, self.changes.source, "template.source")
        rename = self.changes.rename
        if rename and rename != self.name:
            self.check_rename(session, rename, template_path(self.config, rename))

    def perform(self, resource: ResourceView) -> Status:
        path = template_path(self.config, resource.name)
        spec, state = dict(resource.spec), dict(resource.state)
        if self.changes.source is not None:
            aside = fstools.temp_sibling(path, "replaced")
            path.rename(aside)
            self._replaced = (path, aside)
            state.update(copy_into_store(self.config, self.changes.source, path))
            spec["source"] = str(self.changes.source)
        rename = self.changes.rename
        if rename and rename != resource.name:
            path = self.rename_tree(path, template_path(self.config, rename), rename)
            state["path"] = str(path)
            spec["name"] = rename
        self.new_spec, self.new_state = spec, state
        return Status.ACTIVE

    def rollback(self, resource: ResourceView) -> None:
        super().rollback(resource)
        if self._replaced is not None:
            live, aside = self._replaced
            fstools.remove_tree(live)
            aside.rename(live)
            self._replaced = None

    def commit(self, resource: ResourceView) -> None:
        if self._replaced is not None:
            fstools.remove_tree(self._replaced[1])


class TemplateDeleter(DirectoryDeleter):
    """Delete a template from the store; an installed one goes ERRORED, untouched."""

    kind = KIND
    action = Action.DELETE

    def __init__(self, config: StoreflowConfig, name: str, etag: int | None) -> None:
        super().__init__(config, name, etag)
        self._in_use: list[str] = []

    def check(self, session: Session, resource: ResourceView | None) -> None:
        assert resource is not None
        self._in_use = spaces_using(session, resource.id)
        # Refuse up front, whatever happens next, a path that leaves the store.
        self.directory(resource)

    def directory(self, resource: ResourceView) -> Path:
        return template_path(self.config, resource.name)

    def perform(self, resource: ResourceView) -> Status:
        if self._in_use:
            # The seed's behaviour: the template goes ERRORED but stays usable.
            raise TemplateInUse(
                f"template {resource.name!r} is installed in {', '.join(self._in_use)}"
            )
        return super().perform(resource)


def get_periodic_hook_data(templates: list[ResourceView]) -> list[dict[str, Any]]:
    return [
        {
            "id": t.id,
            "name": t.name,
            "status": t.status.value,
            "usage_bytes": t.state.get("usage_bytes"),
        }
        for t in templates
    ]
