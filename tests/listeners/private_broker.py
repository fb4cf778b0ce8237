"""A RabbitMQ node of the test's own, to stop and start without touching the machine's
shared broker on 5672 (other tests use it).

The node has its own name, AMQP and distribution ports on 127.0.0.1, its own mnesia,
log and cookie (HOME) under the test's tmp directory, no plugins and its own config
file (the machine's /etc/rabbitmq/rabbitmq.conf binds 5672).  `stop_node` stops it as
an operator would (`rabbitmqctl stop`: durable queues and persistent messages stay on
disk); `start` brings it back on the same ports and data; `kill` ends it by PID.
"""

import contextlib
import os
import signal
import socket
import subprocess
import time
import uuid
from pathlib import Path

SBIN = Path("/usr/lib/rabbitmq/bin")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def port_open(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(0.5)
        return probe.connect_ex(("127.0.0.1", port)) == 0


class PrivateRabbit:
    def __init__(self, base: Path) -> None:
        self.base = base
        self.node = f"sftest{uuid.uuid4().hex[:8]}@localhost"
        self.port = free_port()
        self.dist_port = free_port()
        base.mkdir(parents=True, exist_ok=True)
        (base / "enabled_plugins").write_text("")
        (base / "rabbitmq-env.conf").write_text("")
        (base / "rabbitmq.conf").write_text(
            f"listeners.tcp.local = 127.0.0.1:{self.port}\nloopback_users = none\n"
        )
        self.env = {
            **os.environ,
            "HOME": str(base),  # its own Erlang cookie, for rabbitmqctl too
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_MNESIA_BASE": str(base / "mnesia"),
            "RABBITMQ_LOG_BASE": str(base / "log"),
            "RABBITMQ_PID_FILE": str(base / "node.pid"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(base / "enabled_plugins"),
            "RABBITMQ_CONFIG_FILE": str(base / "rabbitmq.conf"),
            "RABBITMQ_CONF_ENV_FILE": str(base / "rabbitmq-env.conf"),
        }
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/%2F"

    def start(self, timeout: float = 120) -> "PrivateRabbit":
        with (self.base / "server.log").open("ab") as log:
            self.process = subprocess.Popen(
                [str(SBIN / "rabbitmq-server")],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while not port_open(self.port):
            if self.process.poll() is not None:
                raise AssertionError(f"rabbitmq-server exited: {self.log_tail()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"no AMQP on {self.port} within {timeout} s")
            time.sleep(0.2)
        self.starts += 1
        return self

    def ctl(self, *args: str, timeout: float = 120) -> str:
        return subprocess.run(
            [str(SBIN / "rabbitmqctl"), "-n", self.node, *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=True,
        ).stdout

    def stop_node(self, timeout: float = 120) -> None:
        """Stop the node as an operator does; wait for the server process to end."""
        self.ctl("stop", timeout=timeout)
        if self.process is not None:
            self.process.wait(timeout)
            self.process = None

    def kill(self, timeout: float = 30) -> None:
        """End the node by PID (the Erlang VM, then the script that started it)."""
        pid_file = self.base / "node.pid"
        if pid_file.exists() and (text := pid_file.read_text().strip()).isdigit():
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(text), signal.SIGKILL)
        if self.process is not None:
            if self.process.poll() is None:
                os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout)
            self.process = None

    def log_tail(self) -> str:
        log = self.base / "server.log"
        return log.read_text(errors="replace")[-3000:] if log.exists() else ""
