"""The local stack behind `storeflow server start|stop|status`: a Prefect server on
127.0.0.1, storeflow's Block types and config document, the work pool, every
deployment of prefect.yaml, and workers.  (One run at a time per resource is the
resource database's lock, a lease that a killed run stops renewing; Prefect's
concurrency slots are reclaimed only by the server's own services, and a run killed
while holding one wedged its resource.)

Each part is brought up only if it is not there yet (start is idempotent); the
processes started are recorded with their PIDs in `$STOREFLOW_HOME/stack/stack.json`
and stopped by those PIDs (their process groups), never by name.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from storeflow.models.errors import StoreflowError
from storeflow.models.settings import CONFIG_BLOCK_ENV, DATABASE_URL_ENV, storeflow_home

POOL = "storeflow-process"
CONFIG_DOCUMENT = "storeflow"
BLOCK_MODULES = (
    "storeflow.blocks.storage",
    "storeflow.blocks.database",
    "storeflow.blocks.hooks",
    "storeflow.blocks.samba",
    "storeflow.blocks.nfs",
    "storeflow.blocks.sandbox",
    "storeflow.blocks.remote",
    "storeflow.blocks.config",
)
HEALTH_SECONDS = 180.0
DEPLOY_SECONDS = 600.0


class StackError(StoreflowError):
    """A part of the stack could not be brought up (the message says which and why)."""


@dataclass
class StackRecord:
    """What `start` brought up, as `stop` and `status` need it."""

    port: int
    api_url: str
    server_pid: int | None = None
    worker_pids: list[int] = field(default_factory=list)
    pool: str = POOL
    config_document: str = CONFIG_DOCUMENT
    database_url: str | None = None
    prefect_database_url: str | None = None
    #: Runs each worker takes at once (`prefect worker start --limit`); None: no limit,
    #: and then the first worker to poll takes every run that is due.
    worker_limit: int | None = None


def stack_dir() -> Path:
    return storeflow_home() / "stack"


def record_path() -> Path:
    return stack_dir() / "stack.json"


def read_record() -> StackRecord | None:
    try:
        return StackRecord(**json.loads(record_path().read_text()))
    except FileNotFoundError:
        return None


def write_record(record: StackRecord) -> None:
    stack_dir().mkdir(parents=True, exist_ok=True)
    tmp = record_path().with_suffix(".tmp")
    tmp.write_text(json.dumps(asdict(record), indent=1))
    tmp.replace(record_path())


def project_root() -> Path:
    """The directory holding prefect.yaml (deployments' entry points are relative to it)."""
    import storeflow

    root = Path(storeflow.__file__).resolve().parent.parent
    if not (root / "prefect.yaml").is_file():
        raise StackError(f"deployments: no prefect.yaml in {root} (storeflow's source tree)")
    return root


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child of this process counts as gone.
    with suppress(ChildProcessError):
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    return True


def healthy(api_url: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(f"{api_url}/health", timeout=timeout) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
        return False


def _prefect() -> str:
    return str(Path(sys.executable).with_name("prefect"))


def _environment(record: StackRecord) -> dict[str, str]:
    """What the stack's processes see: this shell's environment and the stack's API."""
    env = dict(os.environ)
    env["PREFECT_API_URL"] = record.api_url
    env.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    env.setdefault("DO_NOT_TRACK", "1")
    if record.database_url:
        env[DATABASE_URL_ENV] = record.database_url
    env[CONFIG_BLOCK_ENV] = record.config_document
    return env


def _spawn(cmd: list[str], env: dict[str, str], log: Path) -> int:
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        process = subprocess.Popen(
            cmd,
            env=env,
            cwd=project_root(),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # its own process group: stopped as one, by PID
        )
    return process.pid


def start_server(record: StackRecord) -> None:
    if alive(record.server_pid) and healthy(record.api_url):
        return
    env = _environment(record)
    env.pop("PREFECT_API_URL")
    # The UI the server serves calls back to this API, not Prefect's default port 4200.
    env["PREFECT_UI_API_URL"] = record.api_url
    if record.prefect_database_url:
        env["PREFECT_API_DATABASE_CONNECTION_URL"] = record.prefect_database_url
    log = stack_dir() / "server.log"
    cmd = [_prefect(), "server", "start", "--host", "127.0.0.1", "--port", str(record.port)]
    record.server_pid = _spawn(cmd, env, log)
    write_record(record)
    deadline = time.monotonic() + HEALTH_SECONDS
    while time.monotonic() < deadline:
        if not alive(record.server_pid):
            raise StackError(f"prefect server exited at start (see {log})")
        if healthy(record.api_url):
            return
        time.sleep(0.5)
    raise StackError(f"prefect server not healthy after {HEALTH_SECONDS:.0f}s (see {log})")


@contextmanager
def against(record: StackRecord) -> Iterator[None]:
    """Prefect's client in this process talks to the stack's server."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: record.api_url}):
        yield


def register_blocks() -> list[str]:
    """Register every storeflow Block type and schema (what `prefect block register -m`
    does); returns the slugs."""
    import importlib

    from prefect.blocks.core import Block

    slugs: list[str] = []
    for module_name in BLOCK_MODULES:
        module = importlib.import_module(module_name)
        for value in vars(module).values():
            if (
                isinstance(value, type)
                and issubclass(value, Block)
                and value.__module__ == module_name
            ):
                value.register_type_and_schema()
                slugs.append(value.get_block_type_slug())
    return slugs


def save_config_document(record: StackRecord) -> bool:
    """The StoreflowConfig document runs use by default; created from this environment
    once, never overwritten (an admin edits it under Blocks).  True if created."""
    from prefect.exceptions import ObjectNotFound
    from pydantic import SecretStr

    from storeflow.blocks.config import StoreflowConfig

    try:
        StoreflowConfig.load(record.config_document)
        return False
    except (ValueError, ObjectNotFound):
        pass
    config = StoreflowConfig()
    if record.database_url:
        config.database.url = SecretStr(record.database_url)
    config.save(record.config_document, overwrite=False)
    return True


def ensure_pool(pool: str) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectAlreadyExists

    with get_client(sync_client=True) as client, suppress(ObjectAlreadyExists):
        client.create_work_pool(WorkPoolCreate(name=pool, type="process"))


def deploy(record: StackRecord) -> None:
    """`prefect deploy --all` from the project root: every deployment of prefect.yaml."""
    env = _environment(record)
    result = subprocess.run(
        [_prefect(), "--no-prompt", "deploy", "--all"],
        env=env,
        cwd=project_root(),
        capture_output=True,
        text=True,
        timeout=DEPLOY_SECONDS,
        stdin=subprocess.DEVNULL,
    )
    (stack_dir() / "deploy.log").write_text(result.stdout + result.stderr)
    if result.returncode != 0:
        tail = (result.stdout + result.stderr).strip().splitlines()[-3:]
        raise StackError(f"prefect deploy --all failed: {' | '.join(tail)}")


def start_workers(record: StackRecord, count: int) -> None:
    record.worker_pids = [pid for pid in record.worker_pids if alive(pid)]
    env = _environment(record)
    while len(record.worker_pids) < count:
        index = len(record.worker_pids) + 1
        name = f"storeflow-{socket.gethostname()}-{index}"
        cmd = [_prefect(), "worker", "start", "--pool", record.pool, "--name", name]
        if record.worker_limit:
            cmd += ["--limit", str(record.worker_limit)]
        record.worker_pids.append(_spawn(cmd, env, stack_dir() / f"worker-{index}.log"))
        write_record(record)


def start(
    port: int | None = None,
    workers: int = 1,
    database_url: str | None = None,
    prefect_database_url: str | None = None,
    deploy_flows: bool = True,
    progress: Any = None,
    worker_limit: int | None = None,
) -> StackRecord:
    """Bring every part up that is not up yet; returns what runs."""
    say = progress or (lambda _message: None)
    record = read_record()
    if record is None or not (alive(record.server_pid) and healthy(record.api_url)):
        chosen = port or (record.port if record else None) or free_port()
        record = StackRecord(
            port=chosen,
            api_url=f"http://127.0.0.1:{chosen}/api",
            worker_pids=[p for p in (record.worker_pids if record else []) if alive(p)],
        )
    elif port and port != record.port:
        raise StackError(f"port: the stack already runs on {record.port}; stop it first")
    record.database_url = database_url or record.database_url
    record.prefect_database_url = prefect_database_url or record.prefect_database_url
    record.worker_limit = worker_limit or record.worker_limit  # for the workers started now
    write_record(record)
    start_server(record)
    say(f"server: {record.api_url} (pid {record.server_pid})")
    with against(record):
        say(f"blocks: {len(register_blocks())} types registered")
        created = save_config_document(record)
        say(f"config: {record.config_document} ({'created' if created else 'kept'})")
        ensure_pool(record.pool)
        say(f"work pool: {record.pool}")
    if deploy_flows:
        deploy(record)
        say("deployments: prefect.yaml deployed")
    start_workers(record, workers)
    say(f"workers: {len(record.worker_pids)} (pids {', '.join(map(str, record.worker_pids))})")
    return record


def _stop_pid(pid: int, grace: float = 15.0) -> None:
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if not alive(pid):
                return
            time.sleep(0.2)


def stop() -> list[str]:
    """Stop the recorded workers, then the server, by PID; returns what was stopped."""
    record = read_record()
    if record is None:
        return []
    stopped: list[str] = []
    for pid in record.worker_pids:
        if alive(pid):
            _stop_pid(pid)
            stopped.append(f"worker {pid}")
    if record.server_pid and alive(record.server_pid):
        _stop_pid(record.server_pid)
        stopped.append(f"server {record.server_pid}")
    record.worker_pids, record.server_pid = [], None
    write_record(record)
    return stopped


def status() -> dict[str, Any]:
    """Each part: is it there, and what it is."""
    record = read_record()
    if record is None:
        return {"server": {"up": False, "detail": "never started"}}
    up = alive(record.server_pid) and healthy(record.api_url)
    parts: dict[str, Any] = {
        "server": {"up": up, "detail": f"{record.api_url} pid {record.server_pid}"},
        "workers": {
            "up": bool(record.worker_pids) and all(alive(p) for p in record.worker_pids),
            "detail": ", ".join(
                f"{p} {'running' if alive(p) else 'gone'}" for p in record.worker_pids
            )
            or "none",
        },
    }
    if not up:
        return parts
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterTags
    from prefect.exceptions import ObjectNotFound

    with against(record), get_client(sync_client=True) as client:
        types = [t.slug for t in client.read_block_types() if t.slug.startswith("storeflow-")]
        parts["blocks"] = {"up": bool(types), "detail": f"{len(types)} storeflow block types"}
        try:
            client.read_block_document_by_name(record.config_document, "storeflow-config")
            parts["config"] = {"up": True, "detail": record.config_document}
        except ObjectNotFound:
            parts["config"] = {"up": False, "detail": f"no document {record.config_document}"}
        try:
            client.read_work_pool(record.pool)
            parts["pool"] = {"up": True, "detail": record.pool}
        except ObjectNotFound:
            parts["pool"] = {"up": False, "detail": f"no work pool {record.pool}"}
        deployments = client.read_deployments(
            deployment_filter=DeploymentFilter(tags=DeploymentFilterTags(all_=["storeflow"]))
        )
        parts["deployments"] = {"up": bool(deployments), "detail": f"{len(deployments)}"}
    return parts
