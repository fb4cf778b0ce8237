"""Keep a stock extractor running as a service manager does (systemd's
Restart=always, a Kubernetes pod): pyclowder does not reconnect; when its broker goes
away its process exits, and whatever runs it starts it again."""

import threading
from pathlib import Path

from tests.listeners.extractor import ExtractorProcess


class Supervised:
    def __init__(self, workdir: Path, name: str, broker_url: str, **env: str) -> None:
        self.extractor = ExtractorProcess(workdir, name, broker_url, **env)
        self.restarts = 0
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._watch, name=f"supervise {name}", daemon=True)

    @property
    def name(self) -> str:
        return self.extractor.name

    def start(self) -> "Supervised":
        with self._lock:
            self.extractor.start()
        self._thread.start()
        return self

    def pid(self) -> int | None:
        with self._lock:
            process = self.extractor.process
            return process.pid if process is not None and process.poll() is None else None

    def _watch(self) -> None:
        while not self._stop.wait(1.0):
            with self._lock:
                process = self.extractor.process
                if process is not None and process.poll() is not None:
                    # Exited (lost its broker, or killed): start it again, as a service
                    # manager would, one second later.
                    self.extractor.process = None
                    self.extractor.start()
                    self.restarts += 1

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)
        with self._lock:
            self.extractor.stop()

    def output(self) -> str:
        return self.extractor.output()
