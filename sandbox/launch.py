"""The command lines that start a jailed worker.

Python: bwrap (new pid/net/ipc/uts namespaces, read-only /usr and
interpreter, private tmpfs /tmp, no /proc, no /etc, no host files) ->
setpriv (unprivileged uid, no capabilities, no_new_privs) -> the
interpreter in isolated mode, which then applies rlimits, Landlock and
seccomp to itself before it reads the callback (sandbox/pyworker/jail.py).

JavaScript: the same bwrap and setpriv when available (defence in depth),
then prlimit (RLIMIT_DATA; RLIMIT_AS breaks V8) -> deno with no --allow-*.
"""

import os
import sys
import tempfile
from pathlib import Path

import deno

from storeflow.sandbox.isolation import IsolationLayers
from storeflow.sandbox.process import LaunchSpec
from storeflow.sandbox.settings import SandboxSettings

PYWORKER_DIR = Path(__file__).resolve().parent / "pyworker"
JSWORKER_DIR = Path(__file__).resolve().parent / "jsworker"
_RT = "/rt"
_MIB = 1024 * 1024
# Deno needs room beyond its V8 heap (code space, buffers, its Rust side).
_DENO_DATA_OVERHEAD_MB = 768


def _interpreter() -> tuple[str, str]:
    """The real interpreter (not the venv's symlink) and its prefix."""
    executable = os.path.realpath(getattr(sys, "_base_executable", sys.executable))
    return executable, os.path.realpath(sys.base_prefix)


def _system_binds() -> list[str]:
    args = ["--ro-bind", "/usr", "/usr"]
    for name in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
        path = f"/{name}"
        if os.path.islink(path):
            args += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            args += ["--ro-bind", path, path]
    return args


def _bind_outside_usr(source: str, target: str) -> list[str]:
    """Bind a directory at `target`, creating its parents traversable.

    bwrap makes missing parents 0700, which an unprivileged uid cannot cross.
    """
    args: list[str] = []
    parents = list(Path(target).parents)[::-1][1:]
    for parent in parents:
        args += ["--perms", "0755", "--dir", str(parent)]
    return [*args, "--ro-bind", source, target]


def _bwrap_base(layers: IsolationLayers, settings: SandboxSettings) -> list[str]:
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
    args += ["--perms", "1777", "--size", str(settings.scratch_size_mb * _MIB), "--tmpfs", "/tmp"]
    args += ["--chdir", "/tmp"]
    return args


def _drop_uid(layers: IsolationLayers, settings: SandboxSettings) -> list[str]:
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


_PY_BOOT = "import sys; sys.path[:0] = [{root!r}]; from pyworker.main import main; main()"


def python_spec(
    layers: IsolationLayers, settings: SandboxSettings
) -> tuple[LaunchSpec, dict[str, object]]:
    """The launch spec and the jail part of the worker's config message."""
    executable, prefix = _interpreter()
    jail: dict[str, object] = {
        "memory_mb": settings.memory_limit_mb,
        "file_size_mb": settings.file_size_limit_mb,
        "open_files": 64,
        "devices": ["/dev/null", "/dev/zero", "/dev/urandom"],
    }
    python_args = ["-I", "-S", "-B", "-c"]
    if layers.bwrap is None:
        # Weak isolation, allowed by policy: no namespaces; Landlock and seccomp
        # still confine reads to the interpreter and writes to a scratch dir.
        scratch = _weak_scratch(settings)
        argv = [*_drop_uid(layers, settings), executable, *python_args]
        argv.append(_PY_BOOT.format(root=str(PYWORKER_DIR.parent)))
        ro = ["/usr", prefix, str(PYWORKER_DIR)]
        ro += [f"/{n}" for n in ("lib", "lib64", "bin") if os.path.isdir(f"/{n}")]
        jail.update(read_only=ro, read_write=[scratch], scratch=scratch)
        spec = LaunchSpec(
            argv=argv, env={}, separate_channel=True, cwd=scratch, cleanup_dir=scratch
        )
        return spec, jail
    argv = _bwrap_base(layers, settings)
    if not prefix.startswith("/usr/"):
        argv += _bind_outside_usr(prefix, prefix)
        site = Path(prefix) / "lib" / f"python{sys.version_info[0]}.{sys.version_info[1]}"
        # Hide the interpreter's own site-packages: a callback gets the stdlib only.
        argv += ["--tmpfs", str(site / "site-packages")]
    argv += _bind_outside_usr(str(PYWORKER_DIR), f"{_RT}/pyworker")
    argv += ["--", *_drop_uid(layers, settings), executable, *python_args]
    argv.append(_PY_BOOT.format(root=_RT))
    jail.update(read_only=["/usr", prefix, _RT], read_write=["/tmp"], scratch="/tmp")
    return LaunchSpec(argv=argv, env={}, separate_channel=True), jail


def _weak_scratch(settings: SandboxSettings) -> str:
    scratch = tempfile.mkdtemp(prefix="storeflow-cb-")
    if os.geteuid() == 0:
        os.chown(scratch, settings.sandbox_uid, settings.sandbox_gid)
    return scratch


def deno_binary() -> str:
    return str(deno.find_deno_bin())


def javascript_spec(layers: IsolationLayers, settings: SandboxSettings) -> LaunchSpec:
    heap_mb = settings.memory_limit_mb
    data_bytes = (heap_mb + _DENO_DATA_OVERHEAD_MB) * _MIB
    deno_env = {
        "DENO_DIR": "/tmp/.deno",
        "HOME": "/tmp",
        "NO_COLOR": "1",
        "DENO_NO_UPDATE_CHECK": "1",
        "DENO_NO_PROMPT": "1",
    }
    binary, host_js = deno_binary(), str(JSWORKER_DIR / "host.js")
    prefix: list[str] = []
    env = dict(deno_env)
    if layers.bwrap is not None:
        prefix = _bwrap_base(layers, settings)
        prefix += _bind_outside_usr(binary, f"{_RT}/deno")
        prefix += ["--ro-bind", str(JSWORKER_DIR), f"{_RT}/js"]
        # deno resolves itself through /proc/self/exe (node: modules need it); the
        # /proc of the new pid namespace, which callbacks cannot read without --allow-read.
        prefix += ["--proc", "/proc"]
        for key, value in deno_env.items():
            prefix += ["--setenv", key, value]
        prefix += ["--", *_drop_uid(layers, settings)]
        binary, host_js, env = f"{_RT}/deno", f"{_RT}/js/host.js", {}
    else:
        env["DENO_DIR"] = _weak_scratch(settings)
        env["HOME"] = env["DENO_DIR"]
    limits: list[str] = []
    if layers.prlimit is not None:
        limits = [
            layers.prlimit,
            f"--data={data_bytes}",
            f"--fsize={settings.file_size_limit_mb * _MIB}",
            "--core=0",
            "--nofile=256",
            "--",
        ]
    argv = [
        *prefix,
        *limits,
        binary,
        "run",
        "--no-remote",
        "--no-npm",
        "--no-prompt",
        "--no-config",
        "--no-lock",
        "--quiet",
        f"--v8-flags=--max-old-space-size={heap_mb}",
        host_js,
    ]
    cleanup = env["DENO_DIR"] if layers.bwrap is None else None
    return LaunchSpec(argv=argv, env=env, separate_channel=False, cleanup_dir=cleanup)
