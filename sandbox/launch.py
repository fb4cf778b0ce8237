"""The parts of a jailed worker's command line that languages share.

bwrap (new pid/net/ipc/uts namespaces, read-only /usr, private tmpfs /tmp,
no /etc, no host files) -> setpriv (unprivileged uid, no capabilities,
no_new_privs) -> the language's runtime. What each language adds on top is
in its module under sandbox/languages/.
"""

import os
import tempfile
from pathlib import Path

from storeflow.sandbox.isolation import IsolationLayers
from storeflow.sandbox.settings import SandboxSettings

# Where a jail mounts the language runtime's own files.
RUNTIME_ROOT = "/rt"
MIB = 1024 * 1024


def _system_binds() -> list[str]:
    args = ["--ro-bind", "/usr", "/usr"]
    for name in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
        path = f"/{name}"
        if os.path.islink(path):
            args += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            args += ["--ro-bind", path, path]
    return args


def bind_outside_usr(source: str, target: str) -> list[str]:
    """Bind a directory at `target`, creating its parents traversable.

    bwrap makes missing parents 0700, which an unprivileged uid cannot cross.
    """
    args: list[str] = []
    parents = list(Path(target).parents)[::-1][1:]
    for parent in parents:
        args += ["--perms", "0755", "--dir", str(parent)]
    return [*args, "--ro-bind", source, target]


def bwrap_base(layers: IsolationLayers, settings: SandboxSettings) -> list[str]:
    """bwrap with fresh namespaces, the read-only system and a capped private /tmp."""
    assert layers.bwrap is not None
    args = [
        layers.bwrap,
        "--unshare-ipc",
        "--unshare-pid",
        "--unshare-net",
        "--unshare-uts",
        "--unshare-cgroup-try",
        "--die-with-parent",
        "--new-session",
        "--clearenv",
        "--hostname",
        "sandbox",
    ]
    if not layers.is_root:
        # Unprivileged bwrap needs a user namespace; forbid nesting another.
        args += ["--unshare-user", "--disable-userns"]
    args += _system_binds()
    args += ["--dev", "/dev"]
    args += ["--perms", "1777", "--size", str(settings.scratch_size_mb * MIB), "--tmpfs", "/tmp"]
    args += ["--chdir", "/tmp"]
    return args


def drop_uid(layers: IsolationLayers, settings: SandboxSettings) -> list[str]:
    """setpriv to the sandbox uid when we run as root (otherwise we are unprivileged)."""
    if not (layers.is_root and layers.setpriv):
        return []
    return [
        layers.setpriv,
        f"--reuid={settings.sandbox_uid}",
        f"--regid={settings.sandbox_gid}",
        "--clear-groups",
        "--inh-caps=-all",
        "--bounding-set=-all",
        "--no-new-privs",
        "--",
    ]


def weak_scratch(settings: SandboxSettings) -> str:
    """A host scratch directory for a worker without bwrap's private /tmp."""
    scratch = tempfile.mkdtemp(prefix="storeflow-cb-")
    if os.geteuid() == 0:
        os.chown(scratch, settings.sandbox_uid, settings.sandbox_gid)
    return scratch
