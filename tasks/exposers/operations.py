"""Exposer create, update (access rules included) and delete on the lifecycle skeleton.

One mechanism for every protocol, given a Backend:

- check (in the skeleton's `pre`): the server is set up to read storeflow's
  file; the new spec is valid, allowed by the block, and clashes with no other
  share (storeflow's or the admin's); a share storeflow did not create is
  adopted only under MigrationMode AUTO. A refusal here changes nothing.
- perform: under the backend's lock, load the managed file, replace this
  exposer's block (taking an adopted share out of the admin's file), validate,
  write atomically, let the server check it, make it live.
- rollback: every file back byte for byte, and live again; commit: unlock.
"""

from typing import Any, ClassVar

from pydantic import BaseModel
from sqlalchemy.orm import Session

from storeflow.blocks.config import StoreflowConfig
from storeflow.models import repository
from storeflow.models.errors import OperationFailed, Refused
from storeflow.models.exposers import MigrationMode
from storeflow.models.schemas import ResourceView, parse_spec
from storeflow.models.status import Action, Status
from storeflow.tasks.exposers.backend import Backend, Foreign
from storeflow.tasks.exposers.blocks import ManagedFileError, parse_blocks, render_blocks
from storeflow.tasks.exposers.configfile import ConfigEdit
from storeflow.tasks.lifecycle import ResourceOperation
from storeflow.tasks.spaces import space_path

Spec = dict[str, Any]


def is_managed(resource: ResourceView) -> bool:
    return bool(resource.state.get("managed", True))


class ExposerOperation(ResourceOperation):
    """What every exposer operation shares; subclasses say what the new spec is."""

    spec_model: ClassVar[type[BaseModel]]

    def __init__(self, config: StoreflowConfig, name: str, etag: int | None = None) -> None:
        super().__init__(config, name, etag)
        self.backend = self.make_backend(config)
        self.target: Spec | None = None  # the spec after the operation; None: removed
        self.space: ResourceView | None = None
        self.adopting: Foreign | None = None
        self._edit: ConfigEdit | None = None
        self._removed: list[str] = []

    @classmethod
    def make_backend(cls, config: StoreflowConfig) -> Backend:
        raise NotImplementedError

    def desired(self, current: Spec | None) -> Spec | None:
        """The spec this operation asks for, given the current one."""
        raise NotImplementedError

    # -- pre ------------------------------------------------------------------------------

    def check(self, session: Session, resource: ResourceView | None) -> None:
        self.backend.preflight()
        current = None if resource is None else self._current_spec(session, resource)
        target = self.desired(current)
        if target is not None:
            target = parse_spec(self.spec_model, target, self.kind).model_dump(mode="json")
            self.backend.check_rule_policy(target)
            self.space = self._space(session, target["space"], resource)
            path = space_path(self.config, self.space.name)
            if not path.is_dir():
                raise Refused(f"{path} (space {self.space.name!r}) is not a directory")
            others = self._others(session, resource)
            self.backend.clashes(target["name"], {**target, "path": str(path)}, others)
        self.target = target
        # Dry run on the file as it is now: whatever would be written is validated here,
        # so bad input is refused before anything changes.
        try:
            self._new_text(self._managed_text(), resource)
        except OperationFailed as exc:
            raise Refused(str(exc)) from None

    def _managed_text(self) -> str:
        try:
            return self.backend.managed_path.read_text()
        except FileNotFoundError:
            return ""

    def _current_spec(self, session: Session, resource: ResourceView) -> Spec:
        if is_managed(resource):
            return dict(resource.spec)
        # A share the admin wrote: the seed's MigrationMode decides.
        what = f"{self.kind} {resource.name!r}"
        if self.backend.migration_mode is MigrationMode.NEVER:
            raise Refused(
                f"{what} was not created by storeflow and the migration mode is 'never': "
                "storeflow leaves it alone"
            )
        entry = next((f for f in self.backend.foreign() if f.name == resource.name), None)
        if entry is None:
            raise Refused(f"{what} is no longer in {resource.state.get('source')}; reconcile")
        if resource.parent_id is None:
            raise Refused(f"{what} shares {entry.path}, which is not a storeflow space")
        space = repository.get(session, resource.parent_id)
        self.adopting = entry
        spec = self.backend.adopt_spec(entry, space.name)
        return parse_spec(self.spec_model, spec, self.kind).model_dump(mode="json")

    def _space(self, session: Session, name: str, resource: ResourceView | None) -> ResourceView:
        space = repository.find(session, "space", name)
        if resource is not None and resource.parent_id not in (None, space.id):
            raise Refused(f"{self.kind} {resource.name!r} belongs to another space")
        if space.deleted or space.status not in (Status.ACTIVE, Status.ERRORED):
            raise Refused(f"space {name!r} is {space.status.value}; exposers need it ACTIVE")
        return space

    def _others(self, session: Session, resource: ResourceView | None) -> dict[str, Spec]:
        """Every other share of this kind, storeflow's or the admin's: name -> spec + path."""
        others: dict[str, Spec] = {}
        for row in repository.list_kind(session, self.kind):
            if resource is None or row.id != resource.id:
                others[row.name] = {**row.spec, "path": row.state.get("path")}
        adopting = self.adopting.name if self.adopting is not None else None
        for entry in self.backend.foreign():
            if entry.name not in others and entry.name != adopting:
                others[entry.name] = {"path": str(entry.path), **entry.options}
        return others

    # -- perform ----------------------------------------------------------------------------

    def _new_text(self, text: str, resource: ResourceView | None) -> tuple[str, Spec]:
        """The managed file with this exposer's block replaced; and the state to record."""
        try:
            blocks = parse_blocks(text)
        except ManagedFileError as exc:
            raise OperationFailed(
                f"{self.backend.managed_path} was edited by hand ({exc}); run reconcile"
            ) from None
        old_name = resource.name if resource is not None else None
        previous = blocks.get(old_name) if old_name else None
        state: Spec = {}
        new_blocks = {n: b for n, b in blocks.items() if n != old_name}
        if self.target is not None:
            assert self.space is not None
            path = space_path(self.config, self.space.name)
            extra = self.backend.prepare(self.target, new_blocks, previous)
            block = self.backend.render(self.target["name"], self.target, path, extra)
            new_blocks = replace_block(blocks, old_name, self.target["name"], block)
            state = {
                "managed": True,
                "path": str(path),
                "config": str(self.backend.managed_path),
                "block": block,
                **extra,
            }
        new_text = render_blocks(self.backend.what, new_blocks)
        self.backend.validate(new_text)
        return new_text, state

    def perform(self, resource: ResourceView) -> Status:
        edit = self._edit = self.backend.lock().acquire()
        managed = self.backend.managed_path
        new_text, state = self._new_text(edit.read(managed), resource)
        if self.adopting is not None:
            self.backend.remove_foreign(edit, self.adopting)
        edit.write(managed, new_text)
        self.backend.check_config()
        renamed = self.target is not None and self.target["name"] != resource.name
        self._removed = [resource.name] if self.target is None or renamed else []
        self.backend.activate(self._removed)
        if self.target is not None:
            self.new_spec, self.new_state = self.target, state
            if renamed:
                self.new_name = self.target["name"]
        return Status.ACTIVE

    def rollback(self, resource: ResourceView) -> None:
        edit, self._edit = self._edit, None
        if edit is None:
            return
        try:
            if edit.restore():
                self.backend.activate([])  # the previous configuration, live again
        finally:
            edit.release()

    def commit(self, resource: ResourceView) -> None:
        edit, self._edit = self._edit, None
        if edit is not None:
            edit.release()


class ExposerBuilder(ExposerOperation):
    action = Action.CREATE

    def __init__(self, config: StoreflowConfig, spec: BaseModel) -> None:
        self.spec = spec.model_dump(mode="json")
        super().__init__(config, self.spec["name"])

    def parameters(self) -> dict[str, Any]:
        return dict(self.spec)

    def desired(self, current: Spec | None) -> Spec | None:
        return dict(self.spec)

    def create_row(self, session: Session) -> ResourceView:
        assert self.space is not None and self.target is not None
        return repository.insert(
            session, self.kind, self.name, self.target, parent_id=self.space.id, state={}
        )


class ExposerDeleter(ExposerOperation):
    action = Action.DELETE

    def desired(self, current: Spec | None) -> Spec | None:
        return None


class ExposerUpdater(ExposerOperation):
    """Fields given replace the current ones; `options` entries set to None are unset."""

    action = Action.UPDATE

    def __init__(
        self, config: StoreflowConfig, name: str, etag: int | None, changes: BaseModel
    ) -> None:
        super().__init__(config, name, etag)
        self.changes = changes.model_dump(mode="json", exclude_none=True)

    def parameters(self) -> dict[str, Any]:
        return {"name": self.name, "etag": self.etag, **self.changes}

    def desired(self, current: Spec | None) -> Spec | None:
        assert current is not None
        spec = dict(current)
        for key, value in self.changes.items():
            if key == "rename":
                spec["name"] = value
            elif key == "options":
                merged = {**spec.get("options", {}), **value}
                spec["options"] = {k: v for k, v in merged.items() if v is not None}
            else:
                spec[key] = value
        return spec


class AccessRuleChange(ExposerOperation):
    """Manila's allow_access/deny_access: one rule changes, the rest of the share stays."""

    action = Action.UPDATE
    verb: ClassVar[str]  # allow or deny

    def __init__(self, config: StoreflowConfig, name: str, etag: int | None, to: str) -> None:
        super().__init__(config, name, etag)
        self.to = to

    @property
    def label(self) -> str:
        return f"{self.kind}-{self.verb}/{self.name}/{self.to}"

    @property
    def func_name(self) -> str:
        return f"{self.verb}_access"

    def parameters(self) -> dict[str, Any]:
        return {"name": self.name, "etag": self.etag, "access_to": self.to}


def replace_block(blocks: dict[str, str], old: str | None, new: str, block: str) -> dict[str, str]:
    """`blocks` with `old` replaced by `new` where it stood (else appended), so that the
    file's diff is this one block; a stale block already named `new` goes."""
    result: dict[str, str] = {}
    for name, text in blocks.items():
        if name == old:
            result[new] = block
        elif name != new:
            result[name] = text
    result.setdefault(new, block)
    return result
