"""A private nfs-ganesha (FSAL VFS, NFSv4 only) on 127.0.0.1 with its own dirs."""

from __future__ import annotations

import contextlib
import re
import signal
import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from tests.services.process import (
    HOST,
    Daemon,
    ServiceError,
    accepts,
    free_port,
    port_is_free,
    require_binary,
)

_PSEUDO = re.compile(r"(/[A-Za-z0-9_.-]+)+")
_WORD = re.compile(r"[A-Za-z_]+")


@dataclass(frozen=True)
class NfsExport:
    """One EXPORT block.  Ganesha has no config check and a syntax error drops every
    live export on reload, so every field is validated here before it is written."""

    export_id: int
    path: Path
    pseudo: str
    access_type: str = "RW"
    squash: str = "No_Root_Squash"

    def __post_init__(self) -> None:
        if not 0 < self.export_id < 65535:
            raise ValueError(f"export id {self.export_id} out of range")
        if not _PSEUDO.fullmatch(self.pseudo):
            raise ValueError(f"pseudo path {self.pseudo!r} is not allowed")
        if not self.path.is_absolute() or any(c in str(self.path) for c in '"\n\r\0;{}'):
            raise ValueError(f"export path {self.path!s} is not allowed")
        for word in (self.access_type, self.squash):
            if not _WORD.fullmatch(word):
                raise ValueError(f"export option {word!r} is not allowed")

    def block(self) -> str:
        return (
            "EXPORT {\n"
            f"  Export_Id = {self.export_id};\n"
            f'  Path = "{self.path}";\n'
            f'  Pseudo = "{self.pseudo}";\n'
            f"  Access_Type = {self.access_type};\n"
            f"  Squash = {self.squash};\n"
            "  Protocols = 4;\n  Transports = TCP;\n  SecType = sys;\n"
            "  FSAL { Name = VFS; }\n"
            "}\n"
        )


class NfsServer:
    """A running ganesha.nfsd; change ``exports`` and call :meth:`reload` (SIGHUP)."""

    def __init__(
        self,
        root: Path,
        exports: Sequence[NfsExport],
        port: int | None = None,
        includes: Sequence[Path] = (),
    ) -> None:
        self.ganesha = require_binary("ganesha.nfsd", "nfs-ganesha nfs-ganesha-vfs")
        self.host = HOST
        self.root = root
        self.port = port or free_port()
        self.exports = list(exports)
        # Files the config %includes after its EXPORT blocks (e.g. storeflow's exports).
        self.includes = list(includes)
        self.conf = root / "ganesha.conf"
        self.log = root / "ganesha.log"
        self.pidfile = root / "ganesha.pid"
        self.daemon: Daemon | None = None
        (root / "recovery").mkdir(parents=True, exist_ok=True)

    def config(self) -> str:
        return (
            "NFS_CORE_PARAM {\n"
            "  Protocols = 4;\n"
            f"  NFS_Port = {self.port};\n"
            f"  Bind_addr = {HOST};\n"
            "  Enable_NLM = false;\n  Enable_RQUOTA = false;\n  Enable_UDP = false;\n"
            "}\n"
            "NFSV4 {\n"
            "  Graceless = true;\n  RecoveryBackend = fs;\n"
            f'  RecoveryRoot = "{self.root / "recovery"}";\n'
            "}\n"
            + "".join(e.block() for e in self.exports)
            + "".join(f'%include "{path}"\n' for path in self.includes)
        )

    def url(self, pseudo: str, path: str = "/") -> str:
        return f"nfs://{HOST}{pseudo}{path}?version=4&nfsport={self.port}"

    def _export_ready(self) -> bool:
        if not accepts(self.port) or not self.exports:
            return bool(self.exports) is False and accepts(self.port)
        nfs_ls = require_binary("nfs-ls", "libnfs-utils")
        try:
            done = subprocess.run(
                [nfs_ls, self.url(self.exports[0].pseudo)],
                capture_output=True,
                timeout=10,
                check=False,
            )
        except subprocess.TimeoutExpired:
            return False
        return done.returncode == 0

    def start(self, timeout: float = 30.0) -> None:
        if not port_is_free(self.port):
            raise ServiceError(f"ganesha: port {self.port} on {HOST} is taken")
        self.conf.write_text(self.config())
        self.daemon = Daemon(
            [
                self.ganesha,
                "-F",
                "-f",
                str(self.conf),
                "-L",
                str(self.log),
                "-p",
                str(self.pidfile),
                "-N",
                "NIV_EVENT",
            ],
            self.root / "ganesha.out",
        )
        self.daemon.wait_until(self._export_ready, timeout, "nfs-ganesha")

    def reload(self, timeout: float = 30.0) -> None:
        """Rewrite the config and SIGHUP ganesha; wait until the first export answers."""
        if self.daemon is None:
            raise ServiceError("ganesha is not running")
        self.conf.write_text(self.config())
        self.daemon.signal(signal.SIGHUP)
        self.daemon.wait_until(self._export_ready, timeout, "nfs-ganesha reload")

    def stop(self) -> None:
        if self.daemon is not None:
            self.daemon.stop()
            self.daemon = None


@contextlib.contextmanager
def nfs_server(
    root: Path,
    exports: Sequence[NfsExport],
    *,
    timeout: float = 30.0,
    includes: Sequence[Path] = (),
) -> Iterator[NfsServer]:
    """Run ganesha for the ``with`` block; ``root`` holds its config, pid file and log."""
    server = NfsServer(root, exports, includes=includes)
    server.start(timeout)
    try:
        yield server
    finally:
        server.stop()
