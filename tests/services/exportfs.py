"""exportfs without kernel NFS: the real binary in a private mount namespace.

Kernel NFS is not available on these machines, but `exportfs -ra` still
parses every exports file and records the result in /var/lib/nfs/etab. The
wrapper written here runs it in `unshare -m` with /etc/exports, /etc/exports.d
and /var/lib/nfs bind-mounted from a private directory (/etc gets a throwaway
overlay so exports.d can exist), so tests exercise the real parser and leave
the host's files alone. Point a block's `exportfs` at `PrivateExportfs.wrapper`.
"""

from __future__ import annotations

import shutil
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path

from tests.services.process import ServiceError, require_binary

_SCRIPT = """#!/bin/sh
# exportfs in a private mount namespace (written by tests/services/exportfs.py).
exec unshare -m sh -euc '
mount --make-rprivate /
mount -t tmpfs tmpfs "$1"
mkdir "$1/upper" "$1/work"
mount -t overlay overlay -o "lowerdir=/etc,upperdir=$1/upper,workdir=$1/work" /etc
mkdir -p /etc/exports.d
mount --bind "$2" /etc/exports.d
mount --bind "$3" /etc/exports
mount --bind "$4" /var/lib/nfs
shift 4
exec {exportfs} "$@"
' sh "{scratch}" "{exports_d}" "{etc_exports}" "{nfs_lib}" "$@"
"""


@dataclass(frozen=True)
class PrivateExportfs:
    root: Path

    @property
    def wrapper(self) -> Path:
        return self.root / "exportfs"

    @property
    def exports_d(self) -> Path:
        """Mounted as /etc/exports.d: storeflow's exports file goes here."""
        return self.root / "exports.d"

    @property
    def etc_exports(self) -> Path:
        """Mounted as /etc/exports: the admin's own exports."""
        return self.root / "exports"

    def run(self, *args: str, timeout: float = 30.0) -> str:
        done = subprocess.run(
            [str(self.wrapper), *args], capture_output=True, text=True, timeout=timeout, check=False
        )
        if done.returncode != 0:
            raise ServiceError(f"exportfs {' '.join(args)}: {done.stderr.strip()}")
        return done.stdout + done.stderr

    def exported(self) -> str:
        """/var/lib/nfs/etab as the last `exportfs -ra` left it."""
        return (self.root / "nfs-lib" / "etab").read_text()


def private_exportfs(root: Path) -> PrivateExportfs:
    exportfs = require_binary("exportfs", "nfs-kernel-server")
    require_binary("unshare", "util-linux")
    setup = PrivateExportfs(root)
    for directory in ("scratch", "exports.d", "nfs-lib"):
        (root / directory).mkdir(parents=True, exist_ok=True)
    setup.etc_exports.write_text("# the admin's exports\n")
    if Path("/var/lib/nfs").is_dir():
        shutil.copytree("/var/lib/nfs", root / "nfs-lib", dirs_exist_ok=True, symlinks=True)
    (root / "nfs-lib" / "etab").write_text("")
    setup.wrapper.write_text(
        _SCRIPT.format(
            exportfs=exportfs,
            scratch=root / "scratch",
            exports_d=setup.exports_d,
            etc_exports=setup.etc_exports,
            nfs_lib=root / "nfs-lib",
        )
    )
    setup.wrapper.chmod(setup.wrapper.stat().st_mode | stat.S_IXUSR)
    return setup
