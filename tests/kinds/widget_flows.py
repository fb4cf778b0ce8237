"""The widget kind's operations (storeflow's lifecycle skeleton) and flows."""

from pathlib import Path
from typing import Any

from prefect.states import State
from sqlalchemy.orm import Session

from storeflow.blocks.config import StoreflowConfig, resolve_config
from storeflow.flows.common import lifecycle_flow
from storeflow.models import repository
from storeflow.models.schemas import ResourceView
from storeflow.models.status import Action, Status
from storeflow.tasks.lifecycle import ResourceOperation, run_operation
from tests.kinds.widget import WidgetSpec, WidgetUpdate


def widget_path(config: StoreflowConfig, name: str) -> Path:
    return config.storage.root / "widgets" / name


class WidgetBuilder(ResourceOperation):
    kind = "widget"
    action = Action.CREATE

    def __init__(self, config: StoreflowConfig, spec: WidgetSpec) -> None:
        super().__init__(config, spec.name)
        self.spec = spec

    def create_row(self, session: Session) -> ResourceView:
        return repository.insert(session, self.kind, self.name, self.spec.model_dump(mode="json"))

    def perform(self, resource: ResourceView) -> Status:
        path = widget_path(self.config, self.name)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.spec.colour)
        return Status.ACTIVE

    def rollback(self, resource: ResourceView) -> None:
        widget_path(self.config, self.name).unlink(missing_ok=True)


class WidgetUpdater(ResourceOperation):
    kind = "widget"
    action = Action.UPDATE

    def __init__(
        self, config: StoreflowConfig, name: str, etag: int | None, changes: WidgetUpdate
    ) -> None:
        super().__init__(config, name, etag)
        self.changes = changes

    def perform(self, resource: ResourceView) -> Status:
        widget_path(self.config, self.name).write_text(self.changes.colour)
        self.new_spec = {**resource.spec, "colour": self.changes.colour}
        return Status.ACTIVE


class WidgetDeleter(ResourceOperation):
    kind = "widget"
    action = Action.DELETE

    def perform(self, resource: ResourceView) -> Status:
        widget_path(self.config, self.name).unlink(missing_ok=True)
        return Status.ACTIVE


def get_periodic_hook_data(widgets: list[ResourceView]) -> list[dict[str, Any]]:
    return [{"name": w.name, "colour": w.spec.get("colour")} for w in widgets]


@lifecycle_flow("widget-create", "widget-create/{spec.name}")
def widget_create(spec: WidgetSpec, config: str | None = None) -> State[Any]:
    return run_operation(WidgetBuilder(resolve_config(config), spec))


@lifecycle_flow("widget-update", "widget-update/{name}")
def widget_update(
    name: str, changes: WidgetUpdate, etag: int | None = None, config: str | None = None
) -> State[Any]:
    return run_operation(WidgetUpdater(resolve_config(config), name, etag, changes))


@lifecycle_flow("widget-delete", "widget-delete/{name}")
def widget_delete(name: str, etag: int | None = None, config: str | None = None) -> State[Any]:
    return run_operation(WidgetDeleter(resolve_config(config), name, etag))
