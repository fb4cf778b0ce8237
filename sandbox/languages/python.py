"""Python callbacks: the seed's `def run(req)` in a full jail.

bwrap (namespaces, read-only /usr and interpreter, private capped /tmp, no
/proc, no /etc, no host files) -> setpriv (unprivileged uid) -> the
interpreter in isolated mode, which applies rlimits, Landlock and seccomp to
itself before it reads the callback (sandbox/pyworker/jail.py). Answers use a
pipe of their own, so nothing the callback prints can pass for one.
"""

import os
import sys
from pathlib import Path

from pydantic import Field

from storeflow.sandbox import isolation, launch
from storeflow.sandbox.isolation import Layer
from storeflow.sandbox.languages.base import CallbackLanguage
from storeflow.sandbox.process import LaunchSpec
from storeflow.sandbox.settings import LanguageSettings, SandboxSettings

PYWORKER_DIR = Path(__file__).resolve().parents[1] / "pyworker"
_BOOT = "import sys; sys.path[:0] = [{root!r}]; from pyworker.main import main; main()"
_PYTHON_ARGS = ["-I", "-S", "-B", "-c"]
_DEVICES = ["/dev/null", "/dev/zero", "/dev/urandom"]


class PythonSettings(LanguageSettings):
    open_files: int = Field(64, ge=16, le=4096, description="RLIMIT_NOFILE inside the jail.")


def _interpreter() -> tuple[str, str]:
    """The real interpreter (not the venv's symlink) and its prefix."""
    executable = os.path.realpath(getattr(sys, "_base_executable", sys.executable))
    return executable, os.path.realpath(sys.base_prefix)


class Python(CallbackLanguage[PythonSettings]):
    name = "python"
    title = "Python"
    suffixes = (".py",)
    settings_model = PythonSettings
    required_layers = frozenset(
        {Layer.NAMESPACES, Layer.UNPRIVILEGED_UID, Layer.LANDLOCK, Layer.SECCOMP}
    )
    worker_layers = frozenset({Layer.LANDLOCK, Layer.SECCOMP})
    batches = True
    batch_encoding = "marshal"

    def worker_spec(self, settings: SandboxSettings) -> LaunchSpec:
        layers = isolation.probe(settings)
        executable, prefix = _interpreter()
        jail: dict[str, object] = {
            "memory_mb": settings.memory_limit_mb,
            "file_size_mb": settings.file_size_limit_mb,
            "open_files": self.section(settings).open_files,
            "devices": list(_DEVICES),
        }
        if layers.bwrap is None:
            # Weak isolation, allowed by policy: no namespaces; Landlock and seccomp
            # still confine reads to the interpreter and writes to a scratch dir.
            scratch = launch.weak_scratch(settings)
            argv = [*launch.drop_uid(layers, settings), executable, *_PYTHON_ARGS]
            argv.append(_BOOT.format(root=str(PYWORKER_DIR.parent)))
            ro = ["/usr", prefix, str(PYWORKER_DIR)]
            ro += [f"/{n}" for n in ("lib", "lib64", "bin") if os.path.isdir(f"/{n}")]
            jail.update(read_only=ro, read_write=[scratch], scratch=scratch)
            return LaunchSpec(
                argv=argv,
                env={},
                separate_channel=True,
                cwd=scratch,
                cleanup_dir=scratch,
                config=jail,
            )
        root = launch.RUNTIME_ROOT
        argv = launch.bwrap_base(layers, settings)
        if not prefix.startswith("/usr/"):
            argv += launch.bind_outside_usr(prefix, prefix)
            site = Path(prefix) / "lib" / f"python{sys.version_info[0]}.{sys.version_info[1]}"
            # Hide the interpreter's own site-packages: a callback gets the stdlib only.
            argv += ["--tmpfs", str(site / "site-packages")]
        argv += launch.bind_outside_usr(str(PYWORKER_DIR), f"{root}/pyworker")
        argv += ["--", *launch.drop_uid(layers, settings), executable, *_PYTHON_ARGS]
        argv.append(_BOOT.format(root=root))
        jail.update(read_only=["/usr", prefix, root], read_write=["/tmp"], scratch="/tmp")
        return LaunchSpec(argv=argv, env={}, separate_channel=True, config=jail)
