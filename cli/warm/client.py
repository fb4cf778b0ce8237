"""Hand one `storeflow` command to the warm runner, if one can take it.

Standard library only: this runs before Prefect is imported, and when a warm runner
takes the command, Prefect is never imported here at all; and only what the client needs
of it (no `typing`, no `contextlib`: 4 ms of every command).
"""

from __future__ import annotations

import os
import signal
import socket
import sys

from storeflow.cli.warm import wire

TYPE_CHECKING = False
if TYPE_CHECKING:
    from types import FrameType

#: Commands that manage the warm runner itself always run here.
LOCAL_COMMANDS = ("warm",)
CONNECT_TIMEOUT = 5.0
#: Forking a child and answering takes milliseconds; a runner silent this long is stuck.
REPLY_TIMEOUT = 30.0
FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)


class WarmUnavailable(Exception):
    """No warm runner can take this command (with STOREFLOW_WARM=require: an error)."""


def request(argv: list[str], env: dict[str, str], cwd: str) -> dict[str, object]:
    umask = os.umask(0o022)
    os.umask(umask)
    return {
        "op": "run",
        "protocol": wire.PROTOCOL,
        "argv": argv,
        "cwd": cwd,
        "env": env,
        "umask": umask,
        "settings": wire.settings_fingerprint(env, cwd),
        "code": wire.code_fingerprint(),
    }


def connect(env: dict[str, str]) -> socket.socket:
    """A connection to this storeflow home's warm runner, checked to be that runner
    (same uid, the PID in its pid file) before anything is sent; WarmUnavailable on
    any problem, so the command runs here instead."""
    try:
        wire.ensure_private_dir(wire.runtime_dir(env), create=False)
    except FileNotFoundError:
        raise WarmUnavailable("no warm runner is running (storeflow warm start)") from None
    except wire.UnsafeRuntimeDir as exc:
        raise WarmUnavailable(f"not using the warm runner: {exc}") from None
    except OSError as exc:  # e.g. a runtime directory this user cannot search
        raise WarmUnavailable(f"cannot reach the warm runner: {exc}") from None
    path, pid_path = wire.runner_paths(env)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(CONNECT_TIMEOUT)
    try:
        sock.connect(str(path))
        check_peer(sock, pid_path)
    except (FileNotFoundError, ConnectionRefusedError):
        sock.close()
        raise WarmUnavailable("no warm runner is running (storeflow warm start)") from None
    except OSError as exc:
        sock.close()
        raise WarmUnavailable(f"cannot reach the warm runner at {path}: {exc}") from None
    except WarmUnavailable:
        sock.close()
        raise
    return sock


def check_peer(sock: socket.socket, pid_path: str) -> int:
    """The PID of the runner at the other end, once the kernel confirms it is ours: the
    same uid as this process and the PID the runner recorded. Anything else that
    listens on the path (a leftover, an impostor) is told nothing: not argv, not the
    environment, not our terminal."""
    pid, uid = wire.peer_credentials(sock)
    if uid != os.getuid():
        raise WarmUnavailable(f"the warm runner socket belongs to uid {uid}, not {os.getuid()}")
    recorded = wire.recorded_pid(pid_path)
    if recorded is None:
        raise WarmUnavailable(f"no warm runner pid file at {pid_path}")
    if pid != recorded:
        raise WarmUnavailable(
            f"the process on the warm runner socket (pid {pid}) is not the runner "
            f"recorded in {pid_path} (pid {recorded})"
        )
    return pid


def hand_over(argv: list[str]) -> int | None:
    """Run `argv` in the warm runner and return its exit status; None when it should
    run in this process instead (no runner, a runner for other settings or code, or
    STOREFLOW_WARM=off)."""
    env = dict(os.environ)
    try:
        chosen = wire.mode(env)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if chosen == "off" or (argv and argv[0] in LOCAL_COMMANDS):
        return None
    try:
        return _run_remote(argv, env)
    except WarmUnavailable as exc:
        if chosen == "require":
            print(f"error: {wire.MODE_ENV}=require: {exc}", file=sys.stderr)
            return 2
        return None


def _run_remote(argv: list[str], env: dict[str, str]) -> int:
    sock = connect(env)
    with sock:
        reader = wire.Reader(sock)
        try:
            wire.send(sock, request(argv, env, os.getcwd()), fds=[0, 1, 2])
            sock.settimeout(REPLY_TIMEOUT)
            reply, _ = reader.receive()
        except (OSError, wire.WireError) as exc:
            raise WarmUnavailable(f"the warm runner did not answer: {exc}") from None
        if reply is None:
            raise WarmUnavailable("the warm runner closed the connection")
        if not reply.get("ok"):
            raise WarmUnavailable(str(reply.get("reason", "refused")))
        child = reply.get("pid")
        if not isinstance(child, int) or isinstance(child, bool) or child <= 1:
            # Our terminal went with the request: the command may be running, so this
            # is no reason to run it a second time here.
            print(f"error: the warm runner answered with pid {child!r}", file=sys.stderr)
            return 1
        return _wait_for_exit(sock, reader, child)


def _wait_for_exit(sock: socket.socket, reader: wire.Reader, child: int) -> int:
    """Relay signals to the child's process group until its exit status arrives.

    No timeout here on purpose: the command runs as long as it runs (a transfer can take
    hours), exactly as it would in this process; the child reports its status and so
    does the runner when it reaps it, so a dead child or a dead runner both end this."""

    def relay(signum: int, _frame: FrameType | None) -> None:
        try:  # noqa: SIM105 (contextlib is not imported here: see the module's docstring)
            os.killpg(child, signum)
        except ProcessLookupError:
            pass

    previous = {sig: signal.signal(sig, relay) for sig in FORWARDED}
    try:
        sock.settimeout(None)
        try:
            message, _ = reader.receive()
        except (OSError, wire.WireError) as exc:
            print(f"error: lost the warm runner: {exc}", file=sys.stderr)
            return 1
        code = None if message is None else message.get("exit")
        if not isinstance(code, int) or isinstance(code, bool):
            print("error: the warm runner went away before the command ended", file=sys.stderr)
            return 1
        return code
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
