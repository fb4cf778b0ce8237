"""Run the stock pyclowder word-count extractor as a subprocess, stopped by its PID."""

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent / "extractors"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class ExtractorProcess:
    def __init__(
        self,
        workdir: Path,
        name: str,
        broker_url: str,
        *,
        script: str = "wordcount.py",
        info_file: str = "extractor_info.json",
        **env: str,
    ) -> None:
        """`name` is the extractor's name and queue; its extractor_info (`info_file`)
        is copied into `workdir` (where pyclowder looks first) under that name."""
        workdir.mkdir(parents=True, exist_ok=True)
        self.script = HERE / script
        info = json.loads((HERE / info_file).read_text())
        info["name"] = name
        (workdir / "extractor_info.json").write_text(json.dumps(info))
        self.name = name
        self.log = workdir / "extractor.log"
        self.env = {
            **os.environ,
            "CLOWDER_VERSION": "2",
            "RABBITMQ_URI": broker_url,
            "RABBITMQ_QUEUE": name,
            "HEARTBEAT": "1",
            **env,
        }
        self.workdir = workdir
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> "ExtractorProcess":
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, str(self.script)],
                cwd=self.workdir,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        return self

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            os.kill(self.process.pid, sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                os.kill(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout)
        self.process = None

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""
