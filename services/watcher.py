"""The catalog's watcher: files are registered as they are closed after writing.

inotify (through watchdog) reports IN_CLOSE_WRITE for every file written in the
watched tree, and a rename into it (a partial upload given its final name).  Hidden
files are left alone, as the scan leaves them.  Writes that inotify cannot see (a
remote NFS client's, for instance) are the `file-scan` deployment's to find.
"""

import logging
import os
import threading
import uuid
from pathlib import Path

from watchdog.events import (
    DirMovedEvent,
    FileClosedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers.inotify import InotifyObserver

from storeflow.blocks.config import StoreflowConfig
from storeflow.models.errors import StoreflowError
from storeflow.tasks.catalog import register

log = logging.getLogger("storeflow.services.watcher")


class _Registrar(FileSystemEventHandler):
    def __init__(self, config: StoreflowConfig, checksum: bool) -> None:
        self.config = config
        self.checksum = checksum
        self.registered = 0
        self.probe: str | None = None
        self.probed = threading.Event()

    def on_closed(self, event: FileClosedEvent) -> None:
        self._register(event.src_path)

    def on_created(self, event: FileSystemEvent) -> None:
        # A file written into a directory made a moment before can close before the
        # directory's own watch exists: what a new directory already holds is
        # registered now (its close, if it comes, then updates it).
        if event.is_directory:
            self._register_tree(event.src_path)

    def on_moved(self, event: FileSystemEvent) -> None:
        if isinstance(event, FileMovedEvent):
            self._register(event.dest_path)
        elif isinstance(event, DirMovedEvent):
            self._register_tree(event.dest_path)

    def _register_tree(self, raw: str | bytes) -> None:
        for folder, dirs, names in os.walk(os.fsdecode(raw)):
            dirs[:] = [d for d in dirs if not d.startswith(".")]
            for name in names:
                self._register(os.path.join(folder, name))

    def _register(self, raw: str | bytes) -> None:
        path = Path(os.fsdecode(raw))
        if path.name == self.probe:
            self.probed.set()
        if path.name.startswith("."):
            return
        try:
            file, change = register(self.config, path, checksum=self.checksum)
        except StoreflowError as exc:  # gone again, or not a regular file
            log.info("not registered: %s", exc)
            return
        except Exception:
            log.exception("could not register %s", path)
            return
        self.registered += 1
        log.debug("%s %s", change.value, file.path)


class SpaceWatcher:
    """Watch a tree (by default every space) and register files as they are written."""

    def __init__(
        self, config: StoreflowConfig, root: Path | None = None, *, checksum: bool = False
    ) -> None:
        self.root = (root or config.storage.spaces_dir).absolute()
        self.handler = _Registrar(config, checksum)
        self._observer: InotifyObserver | None = None

    def start(self, timeout: float = 10) -> "SpaceWatcher":
        """Start watching; return once inotify is seen to report (a probe file written
        and removed), so nothing written after this returns is missed."""
        self.root.mkdir(parents=True, exist_ok=True)
        observer = InotifyObserver()
        observer.schedule(self.handler, str(self.root), recursive=True)
        observer.daemon = True
        observer.start()
        self._observer = observer
        self.handler.probe = f".storeflow-watcher-probe-{uuid.uuid4().hex}"
        probe = self.root / self.handler.probe
        try:
            while not self.handler.probed.is_set() and timeout > 0:
                probe.write_bytes(b"")
                self.handler.probed.wait(0.2)
                timeout -= 0.2
        finally:
            probe.unlink(missing_ok=True)
        if not self.handler.probed.is_set():
            self.stop()
            raise TimeoutError(f"inotify reported nothing under {self.root}")
        return self

    def stop(self, timeout: float = 10) -> None:
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(timeout)
            self._observer = None
