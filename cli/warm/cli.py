"""`storeflow warm start|stop|status`: keep a warm runner for this storeflow home."""

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer

from storeflow.cli.common import JsonOption, err, fail, out
from storeflow.cli.warm import wire
from storeflow.cli.warm.client import WarmUnavailable, connect

#: Importing Prefect and every flow takes seconds; on a loaded machine, many.
START_TIMEOUT = 120.0
STOP_TIMEOUT = 30.0

warm_app = typer.Typer(
    help="A warm runner: storeflow commands start at once instead of importing Prefect.",
    no_args_is_help=True,
)


def ask(op: str) -> dict[str, Any] | None:
    """One request to the running warm runner; None when there is none."""
    env = dict(os.environ)
    try:
        sock = connect(env)
    except WarmUnavailable:
        return None
    with sock:
        try:
            wire.send(sock, {"op": op, "protocol": wire.PROTOCOL})
            reply, _ = wire.Reader(sock).receive()
        except (OSError, wire.WireError):
            return None
    return reply


def fits(status: dict[str, Any]) -> bool:
    """Would this shell's commands be served by that runner (same settings and code)?"""
    env = dict(os.environ)
    settings = wire.settings_fingerprint(env, os.getcwd())
    return (
        status.get("settings") == settings
        and status.get("pyproject") == wire.pyproject_settings(os.getcwd())
        and status.get("code") == wire.code_fingerprint()
    )


def log_path() -> Path:
    home = Path(wire.storeflow_home(dict(os.environ)))
    home.mkdir(parents=True, exist_ok=True)
    return home / "warm.log"


def require_server() -> None:
    from prefect.settings import PREFECT_API_URL

    if not PREFECT_API_URL.value():
        fail(
            "the warm runner needs a Prefect server: set PREFECT_API_URL (without one, "
            "every command would start its own ephemeral server)"
        )


def poll(check: Callable[[], bool], seconds: float) -> bool:
    """Whether `check()` came true within `seconds` (asked every 0.1 s)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.1)
    return False


def wait_until(check: Callable[[], bool], seconds: float, what: str) -> None:
    if not poll(check, seconds):
        fail(f"{what} after {seconds:.0f}s", 1)


@warm_app.command("start")
def start(
    idle_timeout: float = typer.Option(
        3600, "--idle-timeout", min=0, help="Exit after this many idle seconds; 0: never."
    ),
    foreground: bool = typer.Option(
        False, "--foreground", help="Run in this process (for a service manager)."
    ),
    ahead: bool = typer.Option(
        True,
        "--ready/--no-ready",
        help="Fork and prepare the next command's process ahead of it (Prefect's "
        "per-process start-up off the command's path).",
    ),
) -> None:
    """Start the warm runner for this storeflow home (a no-op when one fits already)."""
    require_server()
    try:
        wire.ensure_private_dir(wire.runtime_dir(dict(os.environ)), create=True)
    except wire.UnsafeRuntimeDir as exc:
        fail(str(exc))
    status = ask("status")
    if status is not None:
        if fits(status):
            out().print(f"warm runner already running (pid {status['pid']})")
            return
        out().print(f"replacing the warm runner (pid {status['pid']}): other settings or code")
        _stop_and_wait()
    command = [
        sys.executable,
        "-m",
        "storeflow.cli.warm.zygote",
        "--idle-timeout",
        f"{idle_timeout:g}",
        *([] if ahead else ["--no-ready"]),
    ]
    if foreground:
        os.execv(sys.executable, command)
    with log_path().open("ab") as log:
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,  # not in this terminal's process group: Ctrl-C spares it
        )

    def ready() -> bool:
        if process.poll() is not None:
            tail = log_path().read_text(errors="replace")[-2000:]
            fail(f"the warm runner exited with status {process.returncode}:\n{tail}", 1)
        return ask("status") is not None

    wait_until(ready, START_TIMEOUT, "the warm runner did not answer")
    out().print(f"warm runner started (pid {process.pid}); log: {log_path()}")


def _stop_and_wait() -> int | None:
    reply = ask("stop")
    if reply is None:
        return None
    pid = int(reply["pid"])
    socket_path, _ = wire.runner_paths(dict(os.environ))
    wait_until(
        lambda: not os.path.exists(socket_path), STOP_TIMEOUT, "the warm runner kept its socket"
    )
    return pid


@warm_app.command("stop")
def stop() -> None:
    """Stop the warm runner: it takes no new commands and exits when running ones end."""
    pid = _stop_and_wait()
    if pid is None:
        out().print("no warm runner is running")
        return
    if poll(lambda: not _alive(pid), STOP_TIMEOUT):
        out().print(f"warm runner stopped (pid {pid})")
    else:
        out().print(f"warm runner (pid {pid}) takes no new commands; it exits when they end")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@warm_app.command("status")
def status(as_json: bool = JsonOption) -> None:
    """Is a warm runner serving this storeflow home, and does it fit this shell?"""
    found = ask("status")
    if found is None:
        if as_json:
            print(json.dumps({"running": False}))
        else:
            err().print("no warm runner is running")
        raise typer.Exit(1)
    view = {
        "running": True,
        "pid": found["pid"],
        "fits": fits(found),
        "served": found["served"],
        "commands_running": found["running"],
        "idle_timeout": found["idle_timeout"],
        "uptime": round(time.time() - float(found["started"]), 1),
        "socket": found["socket"],
        # The child forked ahead of the next command: its PID, and the seconds its
        # preparation took once it is ready (None while it prepares).
        "ready": found.get("ready"),
    }
    if as_json:
        print(json.dumps(view))
        return
    verdict = "serves" if view["fits"] else "does NOT fit (other settings or code) for"
    out().print(
        f"warm runner pid {view['pid']} {verdict} this shell: {view['served']} commands "
        f"served, {view['commands_running']} running, up {view['uptime']}s"
    )
