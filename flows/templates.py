"""Template flows: template-create, template-update, template-delete."""

from typing import Any

from prefect.states import State

from storeflow.blocks.config import resolve_config
from storeflow.flows.common import ConfigName, CurrentEtag, lifecycle_flow
from storeflow.models.names import ResourceName
from storeflow.models.schemas import TemplateSpec, TemplateUpdate
from storeflow.tasks.lifecycle import run_operation
from storeflow.tasks.templates import TemplateBuilder, TemplateDeleter, TemplateUpdater


@lifecycle_flow("template-create", "template-create/{spec.name}")
def template_create(spec: TemplateSpec, config: ConfigName = None) -> State[Any]:
    """Copy a directory into the template store."""
    return run_operation(TemplateBuilder(resolve_config(config), spec))


@lifecycle_flow("template-update", "template-update/{name}")
def template_update(
    name: ResourceName, changes: TemplateUpdate, etag: CurrentEtag = None, config: ConfigName = None
) -> State[Any]:
    """Rename a template within the store, or replace it from another directory."""
    return run_operation(TemplateUpdater(resolve_config(config), name, etag, changes))


@lifecycle_flow("template-delete", "template-delete/{name}")
def template_delete(
    name: ResourceName, etag: CurrentEtag = None, config: ConfigName = None
) -> State[Any]:
    """Delete a template; one installed in a space goes ERRORED and stays usable."""
    return run_operation(TemplateDeleter(resolve_config(config), name, etag))
