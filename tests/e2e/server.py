"""A real `prefect server start` and a process worker, for end-to-end tests.

Both bind to 127.0.0.1 on a free port and are stopped by PID (their whole
process group) when the test ends; every wait has a deadline.
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
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

PREFECT = str(Path(sys.executable).with_name("prefect"))
FINAL = ("COMPLETED", "FAILED", "CRASHED", "CANCELLED")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def api(url: str, method: str = "GET", body: Any = None, timeout: float = 30) -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        url, data=data, method=method, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        raise RuntimeError(f"{method} {url}: {exc.code} {exc.read().decode()[:2000]}") from None


def wait_until_healthy(
    api_url: str, process: subprocess.Popen[bytes], log: Path, seconds: float
) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"prefect server exited early:\n{log.read_text()[-3000:]}")
        try:
            api(f"{api_url}/health", timeout=2)
            return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.5)
    raise TimeoutError(f"prefect server not healthy after {seconds}s:\n{log.read_text()[-3000:]}")


def stop(process: subprocess.Popen[bytes], grace: float = 15) -> None:
    """Stop a process group started with start_new_session: SIGTERM, then SIGKILL."""
    if process.poll() is not None:
        return
    for sig, wait in ((signal.SIGINT, grace), (signal.SIGTERM, grace), (signal.SIGKILL, 10)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


@contextmanager
def started(
    cmd: list[str], env: dict[str, str], log: Path, cwd: Path
) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        process = subprocess.Popen(
            cmd,
            env=env,
            cwd=cwd,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    try:
        yield process
    finally:
        stop(process)


def run_command(
    cmd: list[str], env: dict[str, str], cwd: Path, timeout: float
) -> subprocess.CompletedProcess[str]:
    """A command run to its end (or its timeout): output captured, nothing on stdin."""
    return subprocess.run(
        cmd,
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def run_cli(args: list[str], env: dict[str, str], cwd: Path, timeout: float = 300) -> str:
    result = run_command([PREFECT, *args], env, cwd, timeout)
    if result.returncode != 0:
        raise RuntimeError(f"prefect {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result.stdout


def wait_for_final_state(api_url: str, flow_run_id: str, seconds: float) -> dict[str, Any]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        run = api(f"{api_url}/flow_runs/{flow_run_id}")
        if run["state"] and run["state"]["type"] in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED"):
            return dict(run)
        time.sleep(0.5)
    raise TimeoutError(f"flow run {flow_run_id} not finished after {seconds}s")


def create_runs(api_url: str, deployment: str, parameters: list[dict[str, Any]]) -> list[str]:
    """Runs of `deployment`, created at once (one request per run, all in flight)."""
    found = api(f"{api_url}/deployments/name/{deployment}/{deployment}")
    url = f"{api_url}/deployments/{found['id']}/create_flow_run"
    with ThreadPoolExecutor(len(parameters)) as pool:
        made = pool.map(lambda p: api(url, "POST", {"parameters": p}), parameters)
        return [str(run["id"]) for run in made]


def wait_for_all(api_url: str, ids: list[str], seconds: float) -> list[dict[str, Any]]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        runs = api(
            f"{api_url}/flow_runs/filter",
            "POST",
            {"flow_runs": {"id": {"any_": ids}}, "limit": len(ids)},
        )
        if len(runs) == len(ids) and all(r["state"]["type"] in FINAL for r in runs):
            return list(runs)
        time.sleep(2)
    raise TimeoutError(f"{len(ids)} runs not all finished within {seconds}s")


def outcomes(runs: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    """Each run's name, final state name and message: what a failure message shows."""
    return [(r["name"], r["state"]["name"], r["state"]["message"]) for r in runs]


def workers_of(api_url: str, ids: list[str]) -> dict[str, str]:
    """Flow run id -> the worker that submitted it, from the run's own log."""
    logs = api(
        f"{api_url}/logs/filter",
        "POST",
        {
            "logs": {"flow_run_id": {"any_": ids}, "text": {"query": '"submitting flow run"'}},
            "limit": 200,
        },
    )
    found: dict[str, str] = {}
    for log in logs:
        message = log["message"]
        if message.startswith("Worker '") and "submitting flow run" in message:
            found[log["flow_run_id"]] = message.split("'")[1]
    return found
