"""kill -9 at a chosen point: a child process that writes a marker file when it gets
there, killed with its process group (its ephemeral Prefect server dies with it)."""

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path


def wait_for_marker(
    child: subprocess.Popen[bytes], marker: Path, where: str, seconds: float = 120
) -> None:
    """Until `child` wrote `marker`; fails the test, with the child's stderr when it is a
    pipe, if the child ends first or never gets there."""
    deadline = time.monotonic() + seconds
    while not marker.exists():
        if child.poll() is not None:
            stderr = child.stderr.read().decode() if child.stderr else ""
            raise AssertionError(f"the child ended before {where}: {stderr[-2000:]}")
        assert time.monotonic() < deadline, f"the child never reached {where}"
        time.sleep(0.05)


def kill_at_marker(
    argv: list[str], marker: Path, env: dict[str, str], cwd: Path, where: str
) -> None:
    """Run `argv` in a new session; once `marker` exists, SIGKILL the session.  Fails the
    test, with the child's stderr, if the child ends first or never gets there."""
    child = subprocess.Popen(
        argv,
        cwd=cwd,
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        wait_for_marker(child, marker, where)
    finally:
        with contextlib.suppress(ProcessLookupError):  # it may have ended on its own
            os.killpg(child.pid, signal.SIGKILL)
        child.wait(timeout=30)
        if child.stderr:
            child.stderr.close()
