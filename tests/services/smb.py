"""A private smbd on 127.0.0.1: own port, config, state/lock/pid/log dirs and user."""

from __future__ import annotations

import contextlib
import re
import secrets
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
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

# testparm accepts a share name with ']' or a newline and injects a section: the config
# is built only from names and values that pass these checks.
_SHARE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.$-]{0,79}")
_OPTION_NAME = re.compile(r"[a-z][a-z0-9 :]*[a-z0-9]")


def _value(text: str) -> str:
    if any(c in text for c in "\n\r\0"):
        raise ValueError(f"smb.conf value {text!r} contains a line break or NUL")
    return text


@dataclass(frozen=True)
class SmbShare:
    """One ``[name]`` section: ``path`` plus any smb.conf options (``read only`` = no)."""

    name: str
    path: Path
    options: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not _SHARE_NAME.fullmatch(self.name):
            raise ValueError(f"share name {self.name!r} is not allowed")
        for key, value in self.options.items():
            if not _OPTION_NAME.fullmatch(key):
                raise ValueError(f"smb.conf option {key!r} is not allowed")
            _value(value)

    def section(self) -> str:
        options = {"path": str(self.path), "read only": "no", **self.options}
        body = "".join(f"  {k} = {_value(v)}\n" for k, v in options.items())
        return f"[{self.name}]\n{body}"


class SmbServer:
    """A running smbd; ``shares`` may be changed and made live with :meth:`reload`."""

    def __init__(
        self,
        root: Path,
        shares: Sequence[SmbShare],
        *,
        username: str = "root",
        password: str | None = None,
        port: int | None = None,
        global_options: Mapping[str, str] | None = None,
    ) -> None:
        self.smbd = require_binary("smbd", "samba")
        self.host = HOST
        self.root = root
        self.port = port or free_port()
        self.username = username
        self.password = password or secrets.token_urlsafe(12)
        self.shares: dict[str, SmbShare] = {s.name: s for s in shares}
        self.global_options = dict(global_options or {})
        self.conf = root / "smb.conf"
        self.logdir = root / "log"
        self.daemon: Daemon | None = None
        for sub in ("state", "lock", "pid", "cache", "private", "ncalrpc", "log"):
            (root / sub).mkdir(parents=True, exist_ok=True)

    def config(self) -> str:
        r = self.root
        options = {
            "server role": "standalone server",
            "interfaces": HOST,
            "bind interfaces only": "yes",
            "smb ports": str(self.port),
            "disable netbios": "yes",
            "lock directory": str(r / "lock"),
            "state directory": str(r / "state"),
            "cache directory": str(r / "cache"),
            "pid directory": str(r / "pid"),
            "private dir": str(r / "private"),
            "ncalrpc dir": str(r / "ncalrpc"),
            "passdb backend": f"tdbsam:{r / 'private' / 'passdb.tdb'}",
            "log file": str(self.logdir / "log.%m"),
            "load printers": "no",
            "printing": "bsd",
            "printcap name": "/dev/null",
            "disable spoolss": "yes",
            "map to guest": "never",
            **self.global_options,
        }
        lines = "".join(f"  {k} = {_value(v)}\n" for k, v in options.items())
        return "[global]\n" + lines + "".join(s.section() for s in self.shares.values())

    def write_config(self) -> None:
        self.conf.write_text(self.config())

    def start(self, timeout: float = 30.0) -> None:
        if not port_is_free(self.port):
            raise ServiceError(f"smbd: port {self.port} on {HOST} is taken")
        self.write_config()
        self._add_user()
        self.daemon = Daemon(
            [
                self.smbd,
                "--foreground",
                "--no-process-group",
                "--debug-stdout",
                "--debuglevel=1",
                f"--configfile={self.conf}",
                f"--log-basename={self.logdir}",
            ],
            self.logdir / "smbd.out",
        )
        self.daemon.wait_until(lambda: accepts(self.port), timeout, "smbd")

    def _add_user(self) -> None:
        smbpasswd = require_binary("smbpasswd", "samba")
        done = subprocess.run(
            [smbpasswd, "-c", str(self.conf), "-s", "-a", self.username],
            input=f"{self.password}\n{self.password}\n",
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        if done.returncode != 0:
            raise ServiceError(
                f"smbpasswd -a {self.username} failed ({done.returncode}): "
                f"{done.stderr.strip() or done.stdout.strip()}"
            )

    def add_share(self, share: SmbShare) -> None:
        self.shares[share.name] = share
        self.reload()

    def remove_share(self, name: str) -> None:
        self.shares.pop(name, None)
        self.reload()

    def reload(self) -> None:
        """Rewrite the config and make it live (``smbcontrol reload-config``)."""
        self.write_config()
        smbcontrol = require_binary("smbcontrol", "samba")
        done = subprocess.run(
            [smbcontrol, "-s", str(self.conf), "smbd", "reload-config"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        if done.returncode != 0:
            raise ServiceError(f"smbcontrol reload-config failed: {done.stderr or done.stdout}")

    def stop(self) -> None:
        if self.daemon is not None:
            self.daemon.stop()
            self.daemon = None


@contextlib.contextmanager
def smb_server(
    root: Path,
    shares: Sequence[SmbShare],
    *,
    username: str = "root",
    password: str | None = None,
    global_options: Mapping[str, str] | None = None,
    timeout: float = 30.0,
) -> Iterator[SmbServer]:
    """Run smbd for the ``with`` block; ``root`` holds its config, state and logs."""
    server = SmbServer(
        root, shares, username=username, password=password, global_options=global_options
    )
    server.start(timeout)
    try:
        yield server
    finally:
        server.stop()
