"""A ready child: forked by the warm runner ahead of the next command and made ready
for it, so that what every command's process pays on its first flow run, and that
depends on nothing the command brings, is off the command's path.

What it does before the command arrives (`prepare`), all with the runner's settings,
which a command must share to be served at all (wire.settings_fingerprint):

- Prefect's API version check (cached per process: the run's client skips it);
- the events worker: its thread, its client and websocket, its own version check;
- the client and thread that check the tag concurrency limits of the transfer flow's
  tasks (one service per set of tags), and that client's CSRF question to the server
  (settle_csrf); Prefect caches only "no limits", for 5 s, so the check itself still
  happens at the command's time;
- the loop thread Prefect runs coroutines on from sync code;
- the flows a command runs, as the events worker reads them for every event of a run
  (remember_flows);
- a rehearsal of `transfer run`'s parsing and validation (rehearse_transfer).

Each new Prefect client loads the CA bundle (18-40 ms of CPU); these are those clients.
Nothing here writes anywhere, creates a run or emits an event. A failure (the server
is down, say) is logged and the child serves its command as a fresh one would.
"""

import asyncio
from collections.abc import Hashable
from typing import Any, cast

#: Environment the prepared clients read when they were made (httpx: proxies and CA
#: files): a command whose values differ from the runner's gets a freshly forked child.
PREPARED_ENV = (
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "all_proxy",
    "no_proxy",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
)

#: The flows whose tasks' tag concurrency service is started ahead: the ones a
#: `storeflow transfer run` runs.
PREPARED_FLOWS = ("transfer",)
#: How long preparing waits for a service's client to be up and to have asked its question.
SETTLE_TIMEOUT = 10.0


#: A definition `rehearse_transfer` reads as a user's would be read; nothing opens it.
SAMPLE_TRANSFER = {
    "type": "transfer",
    "source": {"directory": "/", "fileRegex": "^$", "protocol": {"name": "local"}},
    "destination": [{"directory": "/", "protocol": {"name": "local"}}],
}


def rehearse_transfer() -> None:
    """Render, parse and validate a sample transfer as `transfer run` does the user's:
    what that builds on first use (the definition's models, whose build is deferred
    until then; jinja's lexer; the flow's parameter types) is built once here instead
    of in every child: 17 ms of a child's first `transfer run`, 1 ms of its second.
    Pure computation: no file, no connection, no thread.

    Run by the runner before it forks, and again by a ready child: in a child, the first
    use of what the runner built still writes to its pages (reference counts), and
    each page written is copied then; the second run does that copying ahead (~6 ms)."""
    import json

    from storeflow.cli.common import check_parameters
    from storeflow.flows.transfers import transfer
    from storeflow.models.otf import parse_task
    from storeflow.tasks.otf.config import Renderer

    text = Renderer({}, {}).render(json.dumps(SAMPLE_TRANSFER), "(warm-up)")
    model = parse_task(json.loads(text), "(warm-up)")
    parameters = {"name": "warm-up", "callbacks_dir": None, "sandbox_policy": None, "config": None}
    check_parameters(transfer, parameters)
    transfer.validate_parameters({"definition": model, **parameters})


def fits(runner_env: dict[str, str], command_env: dict[str, str]) -> bool:
    """Whether a child prepared in `runner_env` may serve a command run in `command_env`."""
    return all(runner_env.get(name) == command_env.get(name) for name in PREPARED_ENV)


def concurrency_names(flow_name: str) -> frozenset[Hashable]:
    """The limit names a task of `flow_name` checks: `tag:` and each of the run's tags
    (the task engine's names for a task run whose tags are the run's; see run_here)."""
    from storeflow.flows.common import run_tags

    return frozenset(f"tag:{tag}" for tag in run_tags(flow_name))


def prepare() -> None:
    """Do a command's per-process Prefect work now, against the runner's settings."""
    from prefect.concurrency.services import ConcurrencySlotAcquisitionWithLeaseService
    from prefect.settings import PREFECT_API_URL
    from prefect.utilities.asyncutils import run_coro_as_sync

    from storeflow.cli.runner import client_context, in_process_runtime, start_event_delivery

    rehearse_transfer()
    if not PREFECT_API_URL.value():  # no server: a run would start an ephemeral one
        return
    with in_process_runtime():
        # Entering the run's kind of client context checks the API version, once per
        # process (Prefect caches the outcome by API URL and client version).
        with client_context():
            remember_flows(PREPARED_FLOWS)  # on that context's client
        start_event_delivery()
        # The loop thread Prefect runs coroutines on for sync code, started at a
        # process's first task (its tag concurrency check goes through it).
        run_coro_as_sync(asyncio.sleep(0))
        for flow_name in PREPARED_FLOWS:
            service = ConcurrencySlotAcquisitionWithLeaseService.instance(
                concurrency_names(flow_name)
            )
            settle_csrf(service)


def remember_flows(names: tuple[str, ...]) -> None:
    """The events worker attaches the run's flow to each event of a run (Prefect's
    events.related), reading it from the server once per process and keeping it for the
    process's life: in a fresh child, a GET /flows/{id} that the server answers (20-30
    ms of its time) just as the command's first task asks it for its concurrency slots.
    A process that ran the flow before has it: read it here, by name, into the same
    cache (Prefect internals, pinned 3.8.8).  A flow never run on this server yet is
    left to the events worker, as before."""
    import httpx
    from prefect.client.orchestration import get_client
    from prefect.events.related import RESOURCE_CACHE, ResourceCacheEntry
    from prefect.types._datetime import now

    with get_client(sync_client=True) as client:
        for name in names:
            try:
                flow = client.read_flow_by_name(name)
            except httpx.HTTPStatusError as exc:
                if exc.response.status_code == httpx.codes.NOT_FOUND:
                    continue
                raise
            entry: ResourceCacheEntry = {"kind": "flow", "object": flow}
            # What Prefect stores there itself (its annotation names another date type).
            RESOURCE_CACHE[f"flow.{flow.id}"] = (entry, cast(Any, now("UTC")))


def settle_csrf(service: Any) -> None:
    """A Prefect client asks the server for a CSRF token before its first POST, or
    learns there that the server has none (then never asks again): for the concurrency
    service's client, that is a round trip in the command's first task, before its
    `increment-with-lease`.  Ask now, with a read (POST /v2/concurrency_limits/filter),
    on the service's own client and loop.  Prefect internals (pinned 3.8.8): anything
    missing is skipped as a failed preparation is."""
    from prefect._internal.concurrency.calls import Call
    from prefect._internal.concurrency.threads import get_global_loop

    async def ask() -> None:
        deadline = asyncio.get_running_loop().time() + SETTLE_TIMEOUT
        while (client := getattr(service, "_client", None)) is None:  # set by its lifespan
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError("the concurrency service's client did not start")
            await asyncio.sleep(0.005)
        await client.read_global_concurrency_limits(limit=1)

    get_global_loop().submit(Call.new(ask)).result(timeout=SETTLE_TIMEOUT)
