"""What every lifecycle flow shares: how it is declared and how a crash is cleaned up."""

import functools
from collections.abc import Callable
from contextvars import ContextVar
from typing import Annotated, Any, ParamSpec, TypeVar

from prefect import Flow, flow
from prefect.client.schemas.objects import FlowRun
from prefect.context import FlowRunContext
from prefect.logging import get_logger
from prefect.states import State
from pydantic import Field

from storeflow.blocks.config import resolve_config
from storeflow.models import repository
from storeflow.models.bounds import Etag
from storeflow.models.db import session_scope
from storeflow.models.names import Text

# Where a flow run by run_here reports its name (flow run id -> name); None elsewhere.
noted_run_names: ContextVar[dict[str, str] | None] = ContextVar("storeflow_run_names", default=None)


def note_run_name() -> None:
    """Tell run_here the current flow run's name (call it in a flow's body): it then
    needs no API read to report it.  A no-op in runs that run_here did not start."""
    names = noted_run_names.get()
    context = FlowRunContext.get()
    if names is not None and context is not None and context.flow_run is not None:
        names[str(context.flow_run.id)] = context.flow_run.name


# Parameters every lifecycle flow shares, typed and described: the Prefect UI's forms
# and the API's validation (before a run is created) say what they take.
ConfigName = Annotated[
    Text | None,
    Field(
        title="Config",
        description="A saved StoreflowConfig block; none: configuration from the environment.",
    ),
]
CurrentEtag = Annotated[
    Etag | None,
    Field(
        title="Etag",
        description=(
            "The etag you last read: a change in between refuses the run. "
            "None: the current one (last writer wins)."
        ),
    ),
]

P = ParamSpec("P")
R = TypeVar("R")


def release_interrupted(flow: Flow[..., Any], flow_run: FlowRun, state: State[Any]) -> None:
    """A run that crashed or was cancelled leaves no resource INPROGRESS behind."""
    config = resolve_config(flow_run.parameters.get("config"))
    with session_scope(config.database_url) as session:
        released = repository.release_owned_by(
            session, str(flow_run.id), f"flow run {flow_run.name} ended {state.type.value}"
        )
    if released:
        get_logger("storeflow").warning(
            "flow run %s ended %s; marked ERRORED: %s", flow_run.name, state.type.value, released
        )


def lifecycle_flow(name: str, run_name: str) -> Callable[[Callable[P, R]], Flow[P, R]]:
    """@flow for a lifecycle entry point: named runs, crash clean-up, typed parameters."""

    def decorate(fn: Callable[P, R]) -> Flow[P, R]:
        @functools.wraps(fn)  # Prefect reads the parameters through __wrapped__
        def body(*args: P.args, **kwargs: P.kwargs) -> R:
            note_run_name()  # run_here reports the name without reading the run back
            return fn(*args, **kwargs)

        return flow(
            name=name,
            flow_run_name=run_name,
            on_crashed=[release_interrupted],
            on_cancellation=[release_interrupted],
            validate_parameters=True,
        )(body)

    return decorate
