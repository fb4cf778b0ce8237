"""The warm runner probed as a hostile or unlucky neighbour would: an impostor on its
socket, a stale runner beside a newer one, a deeply nested message, silent
connections, a runtime directory that cannot be reached.

The runners here are real processes running the real loop (`Zygote.serve`) without the
warm-up (no Prefect import: they answer `status` and `stop`, and a command's child
imports what it needs), so each starts in a fraction of a second. Every process is
stopped by its PID.
"""

import os
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from storeflow.cli.warm import client, wire, zygote

LIGHT_RUNNER = """
import os, sys
from pathlib import Path
from storeflow.cli.warm import wire, zygote
sock, pid = wire.runner_paths(dict(os.environ))
try:
    zygote.Zygote(Path(sock), Path(pid), float(sys.argv[1])).serve()
except zygote.BecomeChild as forked:  # a command: run as the real runner's children do
    zygote.leave(zygote.run_child(forked.with_traceback(None)))
"""


def wait_for(check: Callable[[], bool], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise TimeoutError(f"{what} after {seconds}s")


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """A storeflow home and a short runtime directory of this test's own, in this
    process's environment too (the client reads os.environ)."""
    runtime = Path(f"/tmp/sfp-{os.getpid()}-{time.monotonic_ns() % 10**9}")
    runtime.mkdir(mode=0o700)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    monkeypatch.setenv("STOREFLOW_HOME", str(tmp_path / "home"))
    monkeypatch.delenv(wire.MODE_ENV, raising=False)
    return dict(os.environ)


@pytest.fixture(autouse=True)
def _cleanup_runtime(env: dict[str, str]) -> Iterator[None]:
    yield
    subprocess.run(["rm", "-rf", env["XDG_RUNTIME_DIR"]], check=False, timeout=30)


class LightRunner:
    def __init__(self, env: dict[str, str], log: Path, idle: float) -> None:
        self.log = log
        with log.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-c", LIGHT_RUNNER, str(idle)],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=out,
                start_new_session=True,
            )
        self.pid = self.process.pid
        socket_path, pid_path = wire.runner_paths(env)
        self.socket_path = socket_path

        def ready() -> bool:
            assert self.process.poll() is None, log.read_text()
            return wire.recorded_pid(pid_path) == self.pid

        wait_for(ready, 30, "the runner did not start")

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.pid, 15)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.pid, 9)
                self.process.wait(timeout=10)


@pytest.fixture
def runners(env: dict[str, str], tmp_path: Path) -> Iterator[Callable[[float], LightRunner]]:
    started: list[LightRunner] = []

    def start(idle: float = 0) -> LightRunner:
        runner = LightRunner(env, tmp_path / "warm.log", idle)
        started.append(runner)
        return runner

    try:
        yield start
    finally:
        for runner in started:
            runner.stop()


def ask_status(env: dict[str, str], timeout: float = 5) -> dict[str, Any]:
    sock = client.connect(env)
    with sock:
        sock.settimeout(timeout)
        wire.send(sock, {"op": "status", "protocol": wire.PROTOCOL})
        reply, _ = wire.Reader(sock).receive()
    assert reply is not None
    return reply


def raw_connection(path: str) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(30)
    sock.connect(path)
    return sock


def test_a_nested_message_is_refused_and_the_runner_keeps_serving(
    env: dict[str, str], runners: Callable[[float], LightRunner]
) -> None:
    runner = runners(0)
    body = b"[" * 200_000
    with raw_connection(runner.socket_path) as sock:
        sock.sendall(struct.pack("!I", len(body)) + body)
        assert sock.recv(100) == b""  # dropped without an answer
    assert runner.process.poll() is None
    assert ask_status(env)["pid"] == runner.pid
    assert "nested deeper than" in runner.log.read_text()
    # Brackets inside strings nest nothing: a request may carry any text.
    assert wire.decode(b'{"argv": ["[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[\\"{{{{{{{{{{{"]}') == {
        "argv": ['[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["{{{{{{{{{{{']
    }


def test_silent_connections_delay_nobody_and_are_dropped(
    env: dict[str, str], runners: Callable[[float], LightRunner]
) -> None:
    runner = runners(0)
    silent = [raw_connection(runner.socket_path) for _ in range(4)]
    half = raw_connection(runner.socket_path)
    half.sendall(wire.encode({"op": "status", "protocol": wire.PROTOCOL})[:6])  # and no more
    try:
        started = time.monotonic()
        assert ask_status(env)["pid"] == runner.pid
        assert time.monotonic() - started < 2.0  # not after the silent ones time out
        for sock in [*silent, half]:  # each dropped after its own deadline
            assert sock.recv(100) == b""
        assert time.monotonic() - started < zygote.REQUEST_TIMEOUT + 5
    finally:
        for sock in [*silent, half]:
            sock.close()
    assert "no request in" in runner.log.read_text()


def impostor(path: str, received: list[bytes]) -> tuple[socket.socket, threading.Thread]:
    """Something else listening on the runner's path: records whatever it is sent."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(4)
    listener.settimeout(10)

    def serve() -> None:
        try:
            conn, _ = listener.accept()
        except OSError:
            return
        with conn:
            conn.settimeout(3)
            try:
                while chunk := conn.recv(65536):
                    received.append(chunk)
            except OSError:
                pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return listener, thread


@pytest.mark.parametrize("pid_file", ["missing", "another pid"])
def test_an_impostor_on_the_socket_is_told_nothing(
    env: dict[str, str],
    pid_file: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    socket_path, pid_path = wire.runner_paths(env)
    wire.ensure_private_dir(wire.runtime_dir(env), create=True)
    if pid_file == "another pid":
        Path(pid_path).write_text("1\n")
    received: list[bytes] = []
    listener, thread = impostor(socket_path, received)
    with listener:
        assert client.hand_over(["space", "list"]) is None  # runs here instead
        monkeypatch.setenv(wire.MODE_ENV, "require")
        assert client.hand_over(["space", "list"]) == 2
        thread.join(timeout=10)
    assert received == []  # not argv, not the environment, not our terminal
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: STOREFLOW_WARM=require")
    expected = "not the runner recorded" if pid_file == "another pid" else "no warm runner pid"
    assert expected in lines[0]


def test_a_stale_runner_leaves_a_newer_runners_socket_alone(
    env: dict[str, str], runners: Callable[[float], LightRunner]
) -> None:
    old = runners(3)
    os.unlink(old.socket_path)  # e.g. removed by hand, or by a start that found it dead
    new = runners(0)
    assert ask_status(env)["pid"] == new.pid
    old.process.wait(timeout=30)  # it stops on idle...
    assert os.path.exists(new.socket_path)  # ...without removing the newer socket
    assert ask_status(env)["pid"] == new.pid
    assert "another runner's socket" in old.log.read_text()


def test_a_runner_that_stops_removes_its_own_files(
    env: dict[str, str], runners: Callable[[float], LightRunner]
) -> None:
    runner = runners(2)
    runner.process.wait(timeout=30)
    socket_path, pid_path = wire.runner_paths(env)
    assert not os.path.exists(socket_path) and not os.path.exists(pid_path)


@pytest.mark.parametrize("breakage", ["not a directory", "symlink loop"])
def test_an_unreachable_runtime_dir_runs_the_command_here(
    env: dict[str, str],
    breakage: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Root can read any directory, so the breakages are ones root meets too."""
    base = Path(env["XDG_RUNTIME_DIR"])
    if breakage == "not a directory":
        (base / "file").write_text("")
        monkeypatch.setenv("XDG_RUNTIME_DIR", str(base / "file"))
    else:
        (base / "loop").symlink_to(base / "loop")
        monkeypatch.setenv("XDG_RUNTIME_DIR", str(base / "loop"))
    assert client.hand_over(["space", "list"]) is None
    monkeypatch.setenv(wire.MODE_ENV, "require")
    assert client.hand_over(["space", "list"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "cannot reach the warm runner" in lines[0]


def test_a_directory_with_its_own_tool_prefect_settings_is_not_served(
    env: dict[str, str],
    runners: Callable[[float], LightRunner],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The runner reads [tool.prefect] of each command's directory itself (the client
    no longer parses TOML): a directory whose section differs from the runner's is
    refused, one that only names prefect elsewhere is served."""
    runner = runners(0)
    monkeypatch.setenv(wire.MODE_ENV, "require")
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "pyproject.toml").write_text('[project]\ndependencies = ["prefect==3.8.8"]\n')
    monkeypatch.chdir(plain)
    assert client.hand_over(["schema", "space"]) == 0, runner.log.read_text()
    assert ask_status(env)["served"] == 1
    own = tmp_path / "own"
    own.mkdir()
    (own / "pyproject.toml").write_text('[tool.prefect]\nhome = "/elsewhere"\n')
    monkeypatch.chdir(own)
    assert client.hand_over(["schema", "space"]) == 2
    assert "other Prefect/storeflow settings" in capsys.readouterr().err
    assert ask_status(env)["served"] == 1 and runner.process.poll() is None
