"""How the CLI and the demo run a flow: in this process, or as a deployment run.

In-process runs use the embedded default (Prefect's ephemeral server, or the
server PREFECT_API_URL points at) and skip the flow heartbeat, which only
matters to workers and costs every sync flow run about a second at exit.

A server that cannot be reached is one line, not Prefect's retries and tracebacks:
before the run exists, `ServerUnavailable` (nothing was done); once it exists, an
outcome named "ServerLost" saying what the run had done (the resource database has
its own record of the outcome; `storeflow reconcile` settles the run later).
"""

import importlib
import logging
import os
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from typing import Any, cast

import certifi
import httpx
from prefect import Flow, tags
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import FlowRun
from prefect.context import (
    SettingsContext,
    SyncClientContext,
    get_settings_context,
)
from prefect.deployments import run_deployment
from prefect.events.worker import EventsWorker, should_emit_events
from prefect.logging.handlers import PrefectConsoleHandler
from prefect.settings import PREFECT_API_URL, Settings, get_current_settings
from prefect.states import State
from pydantic import BaseModel

from storeflow.flows.common import noted_run_names, run_tags
from storeflow.models import db
from storeflow.models.errors import StoreflowError
from storeflow.models.settings import storeflow_home


class SubmitError(StoreflowError):
    pass


class ServerUnavailable(StoreflowError):
    """The Prefect server could not be reached before the run was created: nothing ran."""


#: Prefect's client retries a failed request with backoff 2, 4, 8, 16, 32 s (five
#: retries: a minute per request, many minutes per run when the server went away). An
#: in-process run, with someone at the terminal, gives up after two (6 s of backoff).
IN_PROCESS_MAX_RETRIES = 2
#: Loggers of Prefect's background services that speak up at exit (e.g. the events
#: worker's "Still processing items"): the log file and --verbose keep them, the
#: terminal after a command's one line does not.
QUIET_SERVICE_LOGGERS = ("EventsWorker", "APILogWorker", "prefect._internal.concurrency")


@dataclass(frozen=True)
class RunOutcome:
    """A finished (or submitted) flow run, as the CLI reports it."""

    flow_run_id: str | None
    flow_run_name: str | None
    state_type: str
    state_name: str
    message: str | None
    result: Any = None

    @property
    def ok(self) -> bool:
        return self.state_type in ("COMPLETED", "SCHEDULED", "PENDING")

    def as_dict(self) -> dict[str, Any]:
        return {
            "flow_run_id": self.flow_run_id,
            "flow_run_name": self.flow_run_name,
            "state": self.state_name,
            "state_type": self.state_type,
            "message": self.message,
            "result": self.result,
        }


# The last settings in_process_runtime derived, and what from: a warm process (or a
# zygote's children) reuses them instead of rebuilding Prefect's settings every run.
_derived: tuple[Settings, Settings] | None = None
_derived_lock = threading.Lock()


def in_process_settings(base: Settings) -> Settings:
    """`base` without the flow heartbeat, with server analytics off and the client's
    retries bounded (IN_PROCESS_MAX_RETRIES).

    A copy of the already validated settings with two leaves changed: Prefect's
    `temporary_settings` would rebuild every setting from the environment and profiles
    (0.1-0.3 s a run), and nothing derives from these two.  `base` itself when it
    already has them (e.g. PREFECT_FLOWS_HEARTBEAT_FREQUENCY unset by a test harness).
    """
    global _derived
    retries = min(base.client.max_retries, IN_PROCESS_MAX_RETRIES)
    if (
        base.flows.heartbeat_frequency is None
        and base.server.analytics_enabled is False
        and base.client.max_retries == retries
    ):
        return base
    with _derived_lock:
        if _derived is not None and _derived[0] is base:
            return _derived[1]
        derived = base.model_copy(
            update={
                "flows": base.flows.model_copy(update={"heartbeat_frequency": None}),
                "server": base.server.model_copy(update={"analytics_enabled": False}),
                "client": base.client.model_copy(update={"max_retries": retries}),
            }
        )
        _derived = (base, derived)
        return derived


@contextmanager
def in_process_runtime() -> Iterator[None]:
    context = get_settings_context()
    settings = in_process_settings(context.settings)
    if settings is context.settings:
        yield
        return
    with SettingsContext(profile=context.profile, settings=settings):
        yield


@cache
def _tls_context(insecure: bool, cafile: str | None) -> ssl.SSLContext:
    """What Prefect's client builds for itself every time (loading the CA bundle: 50 ms
    and more): the same context, built once per process."""
    if insecure:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    return ssl.create_default_context(cafile=cafile or certifi.where())


def _current_tls_context() -> ssl.SSLContext:
    api = get_current_settings().api
    return _tls_context(bool(api.tls_insecure_skip_verify), api.ssl_cert_file)


@contextmanager
def client_context() -> Iterator[None]:
    """The sync client the flow engine and everything in the run share, built with the
    process's TLS context.  The caller's own client context, if it has one, is kept."""
    if SyncClientContext.get() is not None:
        yield
        return
    context = SyncClientContext(httpx_settings={"verify": _current_tls_context()})
    # Prefect's own default client, bar the TLS context object: let every get_client()
    # of the run (artifacts, result storage) use it rather than build another.
    context._httpx_settings = None
    with context:
        yield


# Prefect's API schemas: pydantic builds many of them on first use (forward references),
# 30 ms or so of a process's first flow run.
_SCHEMA_MODULES = (
    "prefect.client.schemas.actions",
    "prefect.client.schemas.objects",
    "prefect.client.schemas.responses",
    "prefect.events.schemas.events",
    "prefect.artifacts",
)


def _complete_models(module_name: str) -> None:
    module = importlib.import_module(module_name)
    for value in list(vars(module).values()):
        if (
            isinstance(value, type)
            and issubclass(value, BaseModel)
            and value.__module__ == module_name
            and not value.__pydantic_complete__
        ):
            value.model_rebuild(raise_errors=False)


def warm_up() -> None:
    """Work a process can do once, before it forks children that each run a flow: the
    settings an in-process run uses, the API client's TLS context, Prefect's API
    schemas and the database's (models.db.warm_up).  Reads files (CA bundle, migration
    scripts); opens no connection, starts no thread."""
    in_process_settings(get_settings_context().settings)
    _current_tls_context()
    for name in _SCHEMA_MODULES:
        _complete_models(name)
    db.warm_up()


def outcome_of(state: State[Any], flow_run_name: str | None = None) -> RunOutcome:
    result = state.result(raise_on_failure=False) if state.is_completed() else None
    if isinstance(result, BaseModel):
        result = result.model_dump(mode="json")
    return RunOutcome(
        flow_run_id=str(state.state_details.flow_run_id)
        if state.state_details.flow_run_id
        else None,
        flow_run_name=flow_run_name,
        state_type=state.type.value,
        state_name=state.name or state.type.value.capitalize(),
        message=state.message,
        result=result if not isinstance(result, BaseException) else None,
    )


def start_event_delivery() -> None:
    """Start Prefect's events worker now, not at the run's first event (its first task).

    Its start-up (two TLS contexts, a server version check, a websocket: 0.1-0.2 s of
    CPU in a fresh process such as a warm runner's child) then overlaps the API calls
    that create the run, not the run's first steps and copy.  Only against a running
    server: without one, Prefect would start an ephemeral server for it."""
    if PREFECT_API_URL.value() and should_emit_events():
        EventsWorker.instance()


def quiet_prefect_services() -> None:
    """Prefect's background services log to the terminal as the process exits; only
    their errors belong there (--verbose raises the level again)."""
    for name in QUIET_SERVICE_LOGGERS:
        logger = logging.getLogger(name)
        if logger.level < logging.ERROR and not logger.isEnabledFor(logging.DEBUG):
            logger.setLevel(logging.ERROR)


VERBOSE_ENV = "STOREFLOW_VERBOSE"
LOG_FILE = "storeflow.log"


def verbose() -> bool:
    return os.environ.get(VERBOSE_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def _prefect_console_handlers() -> list[logging.Handler]:
    loggers = [logging.getLogger()] + [
        logger
        for name, logger in logging.Logger.manager.loggerDict.items()
        if name.startswith("prefect") and isinstance(logger, logging.Logger)
    ]
    # Prefect's console handler, and its internal services' stream handler (stderr);
    # never another library's (pytest's log capture, say).
    return [
        h
        for lg in loggers
        for h in lg.handlers
        if isinstance(h, PrefectConsoleHandler)
        or (isinstance(h, logging.StreamHandler) and type(h).__module__.startswith("prefect."))
    ]


_routed: list[logging.Handler] = []  # the log file's handler, once routed


def route_prefect_logs() -> None:
    """Prefect's own log lines (run and task states, engine and server messages, to the
    process's end) go to $STOREFLOW_HOME/storeflow.log (and to the server, as always);
    to the terminal only with STOREFLOW_VERBOSE=1 (`storeflow --verbose`): a command
    answers in its own line.  Once per process: a `storeflow` process is one command."""
    if verbose() or _routed:
        return
    for handler in _prefect_console_handlers():
        handler.setLevel(logging.CRITICAL + 1)
    # Prefect's API log worker writes "--- Error logging to API ---" straight to stderr
    # when the server is gone, as the standard library does for a failing handler.
    logging.raiseExceptions = False
    home = storeflow_home()
    home.mkdir(parents=True, exist_ok=True)
    to_file = logging.FileHandler(home / LOG_FILE, encoding="utf-8")
    to_file.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.getLogger("prefect").addHandler(to_file)
    _routed.append(to_file)


def run_here(flow: Flow[..., Any], **parameters: Any) -> RunOutcome:
    """Run `flow` in this process and wait for its final state."""
    names: dict[str, str] = {}
    token = noted_run_names.set(names)
    quiet_prefect_services()
    try:
        route_prefect_logs()
        with in_process_runtime(), client_context():
            start_event_delivery()
            with tags(*run_tags(flow.name)):  # storeflow, kind, action: as deployments' runs
                state = cast(State[Any], flow(**parameters, return_state=True))
            name = _run_name(state, names)
    except Exception as exc:
        unreachable = _transport_error(exc)
        if unreachable is None:
            raise
        return _server_lost(unreachable, names)
    finally:
        noted_run_names.reset(token)
    return outcome_of(state, name)


def _transport_error(error: BaseException | None) -> httpx.TransportError | None:
    """The connection failure behind `error` (Prefect wraps some: "Failed to reach API")."""
    seen = 0
    while error is not None and seen < 10:
        if isinstance(error, httpx.TransportError):
            return error
        error, seen = error.__cause__ or error.__context__, seen + 1
    return None


def _server_lost(error: httpx.TransportError, names: dict[str, str]) -> RunOutcome:
    """The server went away: before the run existed, nothing ran (ServerUnavailable);
    after, the run's own record in the resource database is what happened."""
    url = PREFECT_API_URL.value() or "(ephemeral)"
    cause = " ".join(str(error).split()) or type(error).__name__
    if not names:
        raise ServerUnavailable(
            f"the Prefect server at {url} cannot be reached ({cause}); nothing was run"
        )
    run_id, run_name = next(iter(names.items()))
    return RunOutcome(
        flow_run_id=run_id,
        flow_run_name=run_name,
        state_type="CRASHED",
        state_name="ServerLost",
        message=(
            f"the Prefect server at {url} went away during the run ({cause}); what the "
            "run did is recorded in the resource database (storeflow ... show); "
            "`storeflow reconcile` settles the run once the server is back"
        ),
    )


def _run_name(state: State[Any], noted: dict[str, str]) -> str | None:
    run_id = state.state_details.flow_run_id
    if run_id is None:
        return None
    if str(run_id) in noted:
        return noted[str(run_id)]
    with get_client(sync_client=True) as client:
        return client.read_flow_run(run_id).name


def submit(flow: Flow[..., Any], parameters: dict[str, Any]) -> RunOutcome:
    """Create a run of the flow's deployment (named like the flow) and return at once,
    once the server has given it its final name (the `flow_run_name` template)."""
    if not PREFECT_API_URL.value():
        raise SubmitError("--submit needs a Prefect server: set PREFECT_API_URL")
    name = f"{flow.name}/{flow.name}"
    parameters = dict(parameters)
    if isinstance(parameters.get("config"), str):
        # The deployment's schema takes the document (the UI's picker), not its name.
        from storeflow.blocks.config import ConfigNotFound, reference_by_name

        try:
            parameters["config"] = reference_by_name(parameters["config"])
        except ConfigNotFound as exc:
            raise SubmitError(f"config: {exc}") from None
    run_name = _final_name(flow, parameters)
    try:
        run = run_deployment(
            name=name,
            parameters=parameters,
            timeout=0,
            tags=run_tags(flow.name),
            flow_run_name=run_name,
        )
    except Exception as exc:
        raise SubmitError(f"cannot create a run of deployment {name!r}: {exc}") from exc
    run = cast(FlowRun, run)  # run_deployment is sync-compatible: here, it ran synchronously
    state = run.state
    return RunOutcome(
        flow_run_id=str(run.id),
        flow_run_name=run.name,
        state_type=state.type.value if state else "SCHEDULED",
        state_name=(state.name if state else None) or "Scheduled",
        message=f"submitted to deployment {name}",
        result={"url": run_url(str(run.id))},
    )


def _final_name(flow: Flow[..., Any], parameters: dict[str, Any]) -> str | None:
    """The name the run carries once it starts: the flow's `flow_run_name` template
    filled with its parameters, given at creation (else the server picks a random one
    that the engine replaces later)."""
    template = flow.flow_run_name
    if isinstance(template, str):
        try:
            return template.format(**_attributes(parameters))
        except (KeyError, AttributeError, IndexError, ValueError):
            pass
    return None


class _Fields(dict[str, Any]):
    """A parameter dict whose nested dicts also read as attributes ({spec.name})."""

    def __getattr__(self, key: str) -> Any:
        try:
            return self[key]
        except KeyError:
            raise AttributeError(key) from None


def _attributes(value: Any) -> Any:
    if isinstance(value, dict):
        return _Fields({k: _attributes(v) for k, v in value.items()})
    return value


def run_url(flow_run_id: str) -> str:
    """The run's page in the Prefect UI (PREFECT_UI_URL, else derived from the API URL)."""
    from prefect.settings import PREFECT_UI_URL

    base = PREFECT_UI_URL.value() or str(PREFECT_API_URL.value() or "").removesuffix("/api")
    return f"{str(base).rstrip('/')}/runs/flow-run/{flow_run_id}"
