"""The warm runner for real: `prefect server start` on 127.0.0.1, `storeflow warm start`,
and `storeflow` commands as a user runs them (new processes), checked end to end.

Every runner a test starts is stopped by the test, by its PID.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.server import (
    PREFECT,
    api,
    free_port,
    run_command,
    started,
    wait_until_healthy,
)
from tests.prefect_backend import scratch_database
from tests.transfer.conftest import local_def

STOREFLOW = str(Path(sys.executable).with_name("storeflow"))
pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A Prefect server; yields the environment a user's shell would have."""
    work = tmp_path_factory.mktemp("warm-server")
    port = free_port()
    api_url = f"http://127.0.0.1:{port}/api"
    base = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "STOREFLOW_"))}
    with scratch_database("storeflow_warm_prefect") as database:
        env = {
            **base,
            "PREFECT_HOME": str(work / "prefect-home"),
            "PREFECT_API_DATABASE_CONNECTION_URL": (
                f"postgresql+asyncpg://postgres@127.0.0.1:5432/{database}"
            ),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "DO_NOT_TRACK": "1",
            "PREFECT_UI_ENABLED": "false",
            "PREFECT_LOGGING_LEVEL": "WARNING",
        }
        cmd = [PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(port)]
        with started(cmd, env, work / "server.log", work) as process:
            wait_until_healthy(api_url, process, work / "server.log", 180)
            yield {**env, "PREFECT_API_URL": api_url}


@pytest.fixture
def shell(server: dict[str, str], tmp_path: Path) -> Iterator[dict[str, str]]:
    """This test's environment: its own storeflow home and its own runtime directory
    (short: a socket path must fit in 107 bytes)."""
    runtime = tempfile.mkdtemp(prefix="sfw-", dir="/tmp")
    try:
        yield {
            **server,
            "STOREFLOW_HOME": str(tmp_path / "home"),
            "XDG_RUNTIME_DIR": runtime,
        }
    finally:
        shutil.rmtree(runtime, ignore_errors=True)


def storeflow(
    args: list[str], env: dict[str, str], cwd: Path, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return run_command([STOREFLOW, *args], env, cwd, timeout)


def status(env: dict[str, str], cwd: Path) -> dict[str, Any]:
    result = storeflow(["warm", "status", "--json"], env, cwd, timeout=30)
    return dict(json.loads(result.stdout))


def wait_for(check: Callable[[], bool], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise TimeoutError(f"{what} after {seconds}s")


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def kill_by_pid(pid: int) -> None:
    """Teardown: stop a runner and its process group by PID, whatever state it is in."""
    for sig, wait in ((signal.SIGTERM, 15.0), (signal.SIGKILL, 10.0)):
        if not alive(pid):
            return
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)


@pytest.fixture
def runner(shell: dict[str, str], tmp_path: Path) -> Iterator[int]:
    """A warm runner for `shell`; yields its PID."""
    started_run = storeflow(["warm", "start", "--idle-timeout", "600"], shell, tmp_path, 180)
    assert started_run.returncode == 0, started_run.stderr + started_run.stdout
    pid = int(status(shell, tmp_path)["pid"])
    try:
        yield pid
    finally:
        storeflow(["warm", "stop"], shell, tmp_path, timeout=60)
        kill_by_pid(pid)
        kill_recorded_runner(shell)
        log = Path(shell["STOREFLOW_HOME"]) / "warm.log"
        print(log.read_text() if log.exists() else "(no warm log)")


def ready_child(env: dict[str, str], cwd: Path) -> int:
    """The PID of the runner's child prepared for the next command, once it is ready."""
    found: dict[str, Any] = {}

    def prepared() -> bool:
        found.update(status(env, cwd))
        return bool(found.get("ready")) and found["ready"]["prepared"] is not None

    wait_for(prepared, 120, "no child was made ready")
    return int(found["ready"]["pid"])


def served_by(env: dict[str, str], pid: int) -> str:
    """How the runner's log says it started the child `pid` ("ready for 1.2s", "forked")."""
    log = (Path(env["STOREFLOW_HOME"]) / "warm.log").read_text()
    lines = [line for line in log.splitlines() if f"] pid {pid}: " in line and "(" in line]
    assert lines, f"pid {pid} served nothing:\n{log}"
    return lines[0].rsplit("(", 1)[1].rstrip(")")


def definition(tmp_path: Path, **source: Any) -> Path:
    src = tmp_path / "src"
    src.mkdir(exist_ok=True)
    (src / "report 1.csv").write_bytes(b"a,b\n" * 1000)
    path = tmp_path / "nightly.json"
    transfer = local_def(src, tmp_path / "dst", **source)
    transfer["destination"][0]["createDirectoryIfNotExists"] = True
    path.write_text(json.dumps(transfer))
    return path


def test_a_transfer_runs_in_the_warm_runner(
    shell: dict[str, str], runner: int, tmp_path: Path
) -> None:
    served = status(shell, tmp_path)["served"]
    result = storeflow(["transfer", "run", str(definition(tmp_path)), "--json"], shell, tmp_path)
    assert result.returncode == 0, result.stderr
    outcome = json.loads(result.stdout)
    assert outcome["state"] == "Delivered" and outcome["flow_run_name"] == "transfer/nightly"
    assert (tmp_path / "dst" / "report 1.csv").read_bytes() == b"a,b\n" * 1000
    after = status(shell, tmp_path)
    assert after["served"] == served + 1 and after["pid"] == runner and after["fits"]
    run = api(f"{shell['PREFECT_API_URL']}/flow_runs/{outcome['flow_run_id']}")
    assert run["state"]["type"] == "COMPLETED" and run["state"]["name"] == "Delivered"


def test_each_command_gets_a_child_of_its_own_made_ready_ahead(
    shell: dict[str, str], runner: int, tmp_path: Path
) -> None:
    """A ready child serves one command and exits; the next command gets another one,
    forked from the runner (never from the child that served the first), with its own
    argv and working directory."""
    first = ready_child(shell, tmp_path)
    assert first != runner
    done = storeflow(["transfer", "run", str(definition(tmp_path)), "--json"], shell, tmp_path)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["state"] == "Delivered"
    assert served_by(shell, first).startswith("ready for")
    wait_for(lambda: not alive(first), 60, "the child that served a command is still alive")
    second = ready_child(shell, tmp_path)
    assert second != first
    # The same definition file, another name: the run's name comes from this command's
    # argv, not from anything the first child computed.
    shutil.rmtree(tmp_path / "dst")
    again = storeflow(
        ["transfer", "run", str(definition(tmp_path)), "--name", "again", "--json"],
        shell,
        tmp_path / "src",
    )
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["flow_run_name"] == "transfer/again"
    assert served_by(shell, second).startswith("ready for")
    log = (Path(shell["STOREFLOW_HOME"]) / "warm.log").read_text()
    assert f"pid {first}: transfer run exited 0" in log


def test_a_command_with_other_proxy_settings_gets_a_fresh_child(
    shell: dict[str, str], runner: int, tmp_path: Path
) -> None:
    """The ready child's clients were made with the runner's proxy environment (httpx
    reads it when a client is made): a command with another one is forked afresh, and
    the ready child stays ready for the next command."""
    waiting = ready_child(shell, tmp_path)
    other = {**shell, "NO_PROXY": "example.invalid"}
    listed = storeflow(["space", "list", "--json"], other, tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert json.loads(listed.stdout) == []
    assert status(shell, tmp_path)["served"] == 1
    log = (Path(shell["STOREFLOW_HOME"]) / "warm.log").read_text()
    assert "space list (forked)" in log
    assert ready_child(shell, tmp_path) == waiting and alive(waiting)


def test_exit_status_and_both_streams_come_back(
    shell: dict[str, str], runner: int, tmp_path: Path
) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"type": "transfer", "source": {"directory": "/x"}}))
    served = status(shell, tmp_path)["served"]
    result = storeflow(["transfer", "run", str(bad)], shell, tmp_path)
    assert result.returncode == 2
    assert "error:" in result.stderr and "protocol.name" in result.stderr
    assert result.stdout == ""
    listed = storeflow(["space", "list", "--json"], shell, tmp_path)
    assert listed.returncode == 0 and json.loads(listed.stdout) == []
    assert status(shell, tmp_path)["served"] == served + 2
    # The working directory is the client's: a relative path resolves where the user is.
    (tmp_path / "sub").mkdir()
    shutil.copy(definition(tmp_path), tmp_path / "sub" / "rel.json")
    relative = storeflow(["transfer", "run", "rel.json", "--json"], shell, tmp_path / "sub")
    assert relative.returncode == 0, relative.stderr
    assert json.loads(relative.stdout)["flow_run_name"] == "transfer/rel"


def test_other_settings_run_here_or_are_refused_when_required(
    shell: dict[str, str], runner: int, tmp_path: Path
) -> None:
    served = status(shell, tmp_path)["served"]
    other = {**shell, "STOREFLOW_HOOK_DRIVERS": "storeflow.tasks.hook_drivers.audit:AuditHook"}
    result = storeflow(["transfer", "run", str(definition(tmp_path)), "--json"], other, tmp_path)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["state"] == "Delivered"
    assert status(shell, tmp_path)["served"] == served  # ran in its own process
    required = storeflow(["space", "list"], {**other, "STOREFLOW_WARM": "require"}, tmp_path)
    assert required.returncode == 2
    assert "other Prefect/storeflow settings" in required.stderr
    off = storeflow(["space", "list", "--json"], {**shell, "STOREFLOW_WARM": "off"}, tmp_path)
    assert off.returncode == 0 and status(shell, tmp_path)["served"] == served


def start_waiting_transfer(shell: dict[str, str], tmp_path: Path) -> subprocess.Popen[str]:
    """A transfer that waits (fileWatch) for a file that never comes."""
    watching = definition(tmp_path, fileWatch={"timeout": 300, "fileRegex": "never.txt"})
    client = subprocess.Popen(
        [STOREFLOW, "transfer", "run", str(watching)],
        env=shell,
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    wait_for(lambda: status(shell, tmp_path)["commands_running"] == 1, 60, "not started")
    return client


def test_ctrl_c_reaches_the_command(shell: dict[str, str], runner: int, tmp_path: Path) -> None:
    client = start_waiting_transfer(shell, tmp_path)
    try:
        time.sleep(2)  # well inside the watch
        client.send_signal(signal.SIGINT)
        _out, err = client.communicate(timeout=60)
    finally:
        client.kill()
    assert client.returncode != 0
    assert "Aborted" in err or "interrupt" in err.lower(), err
    wait_for(lambda: status(shell, tmp_path)["commands_running"] == 0, 60, "still running")


def test_a_client_that_dies_interrupts_its_command(
    shell: dict[str, str], runner: int, tmp_path: Path
) -> None:
    client = start_waiting_transfer(shell, tmp_path)
    client.kill()
    client.wait(timeout=10)
    wait_for(lambda: status(shell, tmp_path)["commands_running"] == 0, 60, "orphan still running")


def test_idle_runner_exits_and_stop_stops(shell: dict[str, str], tmp_path: Path) -> None:
    first = storeflow(["warm", "start", "--idle-timeout", "4"], shell, tmp_path, 180)
    assert first.returncode == 0, first.stderr
    pid_file = next(Path(shell["XDG_RUNTIME_DIR"], "storeflow").glob("warm-*.pid"))
    pid = int(pid_file.read_text())
    try:
        waiting = ready_child(shell, tmp_path)
        wait_for(lambda: not alive(pid), 60, "idle runner still alive")
        wait_for(lambda: not alive(waiting), 30, "the ready child outlived its runner")
        assert not pid_file.exists() and not list(pid_file.parent.glob("*.sock"))
        gone = storeflow(["warm", "status"], shell, tmp_path)
        assert gone.returncode == 1 and "no warm runner" in gone.stderr
    finally:
        kill_by_pid(pid)
    second = storeflow(["warm", "start", "--idle-timeout", "0"], shell, tmp_path, 180)
    assert second.returncode == 0, second.stderr
    pid = int(status(shell, tmp_path)["pid"])
    try:
        again = storeflow(["warm", "start"], shell, tmp_path, 60)
        assert "already running" in again.stdout and int(status(shell, tmp_path)["pid"]) == pid
        waiting = ready_child(shell, tmp_path)
        stopped = storeflow(["warm", "stop"], shell, tmp_path, 60)
        assert stopped.returncode == 0 and f"stopped (pid {pid})" in stopped.stdout
        assert not alive(pid)
        wait_for(lambda: not alive(waiting), 30, "the ready child outlived its runner")
    finally:
        kill_by_pid(pid)
        kill_recorded_runner(shell)


def kill_recorded_runner(env: dict[str, str]) -> None:
    """Teardown: also the runner the pid file names, if a `warm start` in the test
    started another one (it replaces a runner whose code changed meanwhile)."""
    for pid_file in Path(env["XDG_RUNTIME_DIR"], "storeflow").glob("warm-*.pid"):
        recorded = pid_file.read_text().strip()
        if recorded.isdigit():
            kill_by_pid(int(recorded))


def test_start_refuses_without_a_server_or_with_an_open_runtime_dir(
    shell: dict[str, str], tmp_path: Path
) -> None:
    no_server = {k: v for k, v in shell.items() if k != "PREFECT_API_URL"}
    result = storeflow(["warm", "start"], no_server, tmp_path, 120)
    assert result.returncode == 2 and "needs a Prefect server" in result.stderr
    runtime = Path(shell["XDG_RUNTIME_DIR"], "storeflow")
    runtime.mkdir(mode=0o777)
    runtime.chmod(0o777)
    result = storeflow(["warm", "start"], shell, tmp_path, 120)
    assert result.returncode == 2 and "must be 700" in result.stderr
    required = storeflow(["space", "list"], {**shell, "STOREFLOW_WARM": "require"}, tmp_path)
    assert required.returncode == 2 and "must be 700" in required.stderr
    assert list(runtime.iterdir()) == []


def test_another_user_is_refused(shell: dict[str, str], runner: int, tmp_path: Path) -> None:
    """Even with the directory opened up, a connection from another uid gets nothing."""
    if os.getuid() != 0 or shutil.which("setpriv") is None:
        pytest.fail("this test needs root and setpriv (util-linux) to act as another user")
    runtime = Path(shell["XDG_RUNTIME_DIR"], "storeflow")
    sock = next(runtime.glob("warm-*.sock"))
    os.chmod(shell["XDG_RUNTIME_DIR"], 0o711)
    runtime.chmod(0o711)
    sock.chmod(0o666)
    probe = "\n".join(
        [
            "import json, socket, struct",
            "s = socket.socket(socket.AF_UNIX); s.settimeout(20); s.connect(PATH)",
            "b = json.dumps({'op': 'status', 'protocol': 1}).encode()",
            "try:",
            "    s.sendall(struct.pack('!I', len(b)) + b); print(repr(s.recv(100)))",
            "except (ConnectionResetError, BrokenPipeError):",
            "    print(repr(b''))",
        ]
    ).replace("PATH", repr(str(sock)))
    try:
        result = subprocess.run(
            ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "/usr/bin/python3"],
            input=probe,
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        runtime.chmod(0o700)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "b''"  # closed without a word
    log = (Path(shell["STOREFLOW_HOME"]) / "warm.log").read_text()
    assert "uid 65534" in log


def test_umask_and_environment_are_the_clients(
    shell: dict[str, str], runner: int, tmp_path: Path
) -> None:
    """A space made through the runner gets the client's umask; an OTF task's `env` lookup
    reads the client's environment, not the runner's."""
    served = status(shell, tmp_path)["served"]
    first = ready_child(shell, tmp_path)
    made = run_command(
        ["sh", "-c", f"umask 077 && exec {STOREFLOW} space create private --json"],
        shell,
        tmp_path,
        120,
    )
    assert made.returncode == 0, made.stderr
    path = Path(json.loads(made.stdout)["result"]["state"]["path"])
    assert path.stat().st_mode & 0o777 == 0o700
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.txt").write_text("from the client's environment\n")
    task = {
        "type": "transfer",
        "source": {
            "directory": "{{ lookup('env', name='SF_WARM_SRC') }}",
            "fileRegex": ".*",
            "protocol": {"name": "local"},
        },
        "destination": [
            {
                "directory": "{{ lookup('env', name='SF_WARM_DST') }}",
                "createDirectoryIfNotExists": True,
                "protocol": {"name": "local"},
            }
        ],
    }
    (tmp_path / "cfg").mkdir()
    (tmp_path / "cfg" / "variables.json").write_text("{}")
    (tmp_path / "cfg" / "envcopy.json.j2").write_text(json.dumps(task))
    env = {**shell, "SF_WARM_SRC": str(tmp_path / "in"), "SF_WARM_DST": str(tmp_path / "out")}
    second = ready_child(shell, tmp_path)
    moved = storeflow(["transfer", "run", "-t", "envcopy", "-c", "cfg", "--json"], env, tmp_path)
    assert moved.returncode == 0, moved.stderr
    assert (tmp_path / "out" / "a.txt").read_text() == "from the client's environment\n"
    assert status(shell, tmp_path)["served"] == served + 2  # both ran in the runner
    # ...each in a child made ready before the command (and its environment) existed.
    assert served_by(shell, first).startswith("ready for")
    assert served_by(shell, second).startswith("ready for")


def test_a_code_change_stops_the_runner_and_the_command_runs_here(
    shell: dict[str, str], runner: int, tmp_path: Path
) -> None:
    import storeflow.models.status as touched

    source = Path(touched.__file__).resolve()
    before = source.stat()
    assert status(shell, tmp_path)["fits"]
    waiting = ready_child(shell, tmp_path)
    os.utime(source, ns=(before.st_atime_ns, before.st_mtime_ns + 5_000_000_000))
    try:
        listed = storeflow(["space", "list", "--json"], shell, tmp_path)
        assert listed.returncode == 0, listed.stderr
        assert json.loads(listed.stdout) == []
        wait_for(lambda: not alive(runner), 60, "the stale runner is still alive")
        wait_for(lambda: not alive(waiting), 30, "the stale runner's ready child is alive")
    finally:
        os.utime(source, ns=(before.st_atime_ns, before.st_mtime_ns))
    log = (Path(shell["STOREFLOW_HOME"]) / "warm.log").read_text()
    assert "stale: storeflow's code or packages changed" in log
