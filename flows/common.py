"""What the flows share: how a lifecycle flow is declared (typed, described
parameters, tags), one run per resource at a time, and how a crash or a cancel is
cleaned up (a resource left INPROGRESS, a transfer's execution record left open)."""

import functools
import inspect
import logging
from collections.abc import Callable
from contextvars import ContextVar
from typing import TYPE_CHECKING, Annotated, Any, ParamSpec, TypeVar

from prefect import Flow, flow
from prefect.client.schemas.objects import FlowRun
from prefect.context import FlowRunContext
from prefect.exceptions import FailedRun
from prefect.logging import get_logger
from prefect.states import State
from pydantic import BeforeValidator, Field

from storeflow.blocks.config import StoreflowConfig, load_config, resolve_config
from storeflow.models import executions, repository
from storeflow.models.bounds import Etag, check_text
from storeflow.models.db import session_scope
from storeflow.models.errors import StoreflowError
from storeflow.tasks.lifecycle import finish_announce

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
def _config_by_name(value: Any) -> Any:
    """The CLI and scripts name a saved config; the UI and the API pass the document
    (a block reference, already loaded by Prefect): both end as the document."""
    if isinstance(value, str):
        return load_config(check_text(value)) if value else None
    return value


# To a type checker a config is a document or its name (what the CLI and tests pass);
# at run time the validator turns a name into the document, and the JSON Schema is the
# block's alone, so the UI offers a picker of saved StoreflowConfig documents.
if TYPE_CHECKING:
    ConfigName = StoreflowConfig | str | None
else:
    ConfigName = Annotated[
        StoreflowConfig | None,
        BeforeValidator(_config_by_name),
        Field(
            title="Config",
            description=(
                "The saved StoreflowConfig block (storage root, database, hook drivers) this "
                "run works with. Empty: the worker's environment (STOREFLOW_* variables)."
            ),
        ),
    ]
CurrentEtag = Annotated[
    Etag | None,
    Field(
        title="Etag",
        description=(
            "The etag you last read (inventory artifact, or `storeflow ... show`): if the "
            "resource changed since, the run is Refused and changes nothing. "
            "Empty: the current etag (last writer wins)."
        ),
    ),
]
Force = Annotated[
    bool,
    Field(
        title="Force",
        description=(
            "Delete even though the space holds data (snapshots and exposers still refuse)."
        ),
    ),
]

# Actions a flow name may end with: `space-update` is kind `space`, action `update`.
ACTIONS = ("create", "update", "delete", "allow", "deny", "sync", "tier", "run", "scan")


def run_tags(flow_name: str) -> list[str]:
    """The tags every run of a flow carries, wherever it is started: `storeflow`, its
    kind and its action (`space-update`: storeflow, space, update)."""
    kind, _, action = flow_name.rpartition("-")
    if kind and action in ACTIONS:
        return ["storeflow", kind, action]
    return ["storeflow", flow_name]


def hook_chatter(message: str) -> bool:
    """The engine's lines around a quiet hook that ran fine (`finish_announce`)."""
    return message.startswith("Running hook 'finish_announce' ") or message == (
        "Hook 'finish_announce' finished running successfully"
    )


class ExpectedOutcome(logging.Filter):
    """Prefect's engine logs "Engine execution exited with unexpected exception" and a
    long traceback after a run that *returned* a Failed state (Refused, Errored with a
    known cause, Vetoed): the run already logged its one line, and the state says why.
    Such a run raises FailedRun (a flow that raised keeps its own exception and its
    traceback).

    A step that answers with a Failed state (a refusal is an answer: `Refused`) makes
    the task engine log "Task run failed with state: ..." with `exc_info=True` outside
    any exception, i.e. a stray "NoneType: None"; the task's own "Finished in state"
    line already says it.

    A step that raised a StoreflowError (a known cause: template in use, quota below
    usage) makes it log "Task run failed with exception: ..." and the traceback; the
    task's "Finished in state Failed(...)" line and the run's own line give the cause.
    Any other exception keeps its line and its traceback: that is a crash.

    Every lifecycle run ends in `finish_announce` (its final-state hook): the engine's
    two lines saying it ran are noise in every run's log; its failure keeps its line."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        message = record.getMessage()
        if hook_chatter(message):
            return False
        if isinstance(error, FailedRun) and message.startswith("Engine execution"):
            return False
        if not message.startswith("Task run failed with"):
            return True
        return not (error is None or isinstance(error, StoreflowError))


def quiet_expected_outcomes() -> None:
    """Install ExpectedOutcome on Prefect's flow-run and task-run loggers (once per
    process)."""
    for name in ("prefect.flow_runs", "prefect.task_runs"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, ExpectedOutcome) for f in logger.filters):
            logger.addFilter(ExpectedOutcome())


# Every flow module imports this one: a worker's process that runs any storeflow flow
# (a transfer, a scheduled sync, not only a lifecycle flow) logs expected outcomes alike.
quiet_expected_outcomes()


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


def close_interrupted(flow: Flow[..., Any], flow_run: FlowRun, state: State[Any]) -> None:
    """A transfer run that crashed or was cancelled: its execution record says so
    (HAS_ERROR|STOPPED) for the next run."""
    config = resolve_config(flow_run.parameters.get("config"))
    with session_scope(config.database_url) as session:
        closed = executions.finish_unfinished(
            session,
            str(flow_run.id),
            state.type.value.capitalize(),
            f"flow run {flow_run.name} ended {state.type.value}",
        )
    if closed:
        get_logger("storeflow").warning("transfer run %s ended %s", flow_run.name, state.type.value)


# What each lifecycle parameter means, as the Prefect UI's run forms show it (Prefect
# reads parameter descriptions from a Google-style `Args:` docstring section).
PARAMETER_HELP = {
    "spec": "What to create: the kind's spec (its JSON Schema: `storeflow schema KIND`).",
    "name": "The resource's name.",
    "space": "The space it lives in.",
    "changes": "What to change; fields left empty stay as they are.",
    "etag": (
        "The etag you last read (inventory artifact, or `storeflow KIND show NAME`): if the "
        "resource changed since, the run is Refused and changes nothing. Empty: the current "
        "etag (last writer wins)."
    ),
    "force": "Delete even though it holds data (snapshots and exposers still refuse).",
    "rule": "The access to add (who, and ro or rw).",
    "to": "The user or @group to refuse.",
    "client": "The client whose access goes.",
    "config": (
        "The saved StoreflowConfig block (storage root, database, hook drivers) this run "
        "works with. Empty: the worker's environment (STOREFLOW_* variables)."
    ),
}


def with_parameter_help(fn: Callable[..., Any]) -> str:
    """`fn`'s docstring with an `Args:` section describing its parameters."""
    doc = inspect.getdoc(fn) or ""
    if "Args:" in doc:
        return doc
    lines = [
        f"    {name}: {PARAMETER_HELP[name]}"
        for name in inspect.signature(fn).parameters
        if name in PARAMETER_HELP
    ]
    return f"{doc}\n\nArgs:\n" + "\n".join(lines) if lines else doc


def lifecycle_flow(name: str, run_name: str) -> Callable[[Callable[P, R]], Flow[P, R]]:
    """@flow for a lifecycle entry point: named runs, crash clean-up, typed parameters,
    tags; expected outcomes log one line, no traceback.  One run at a time per resource
    is the resource database's lock (a lease: tasks/lifecycle.py), across workers and
    hosts alike."""
    quiet_expected_outcomes()

    def decorate(fn: Callable[P, R]) -> Flow[P, R]:
        @functools.wraps(fn)  # Prefect reads the parameters through __wrapped__
        def body(*args: P.args, **kwargs: P.kwargs) -> R:
            note_run_name()  # run_here reports the name without reading the run back
            return fn(*args, **kwargs)

        body.__doc__ = with_parameter_help(fn)
        return flow(
            name=name,
            flow_run_name=run_name,
            on_completion=[finish_announce],
            on_failure=[finish_announce],
            on_crashed=[finish_announce, release_interrupted],
            on_cancellation=[finish_announce, release_interrupted],
            validate_parameters=True,
        )(body)

    return decorate
