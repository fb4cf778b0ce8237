"""JavaScript callbacks: the seed's `module.exports = (req) => ...` in deno.

deno runs with no --allow-* flag (no files, network, environment,
subprocesses or FFI), under the same bwrap and setpriv as Python when bwrap
is there (defence in depth, not required), and prlimit (RLIMIT_DATA;
RLIMIT_AS breaks V8). Answers share stdout with console.log, so the host
reads every other byte there as captured output.
"""

from pathlib import Path

import deno
from pydantic import Field

from storeflow.sandbox import isolation, launch
from storeflow.sandbox.languages.base import CallbackLanguage
from storeflow.sandbox.process import LaunchSpec
from storeflow.sandbox.settings import LanguageSettings, SandboxSettings

JSWORKER_DIR = Path(__file__).resolve().parents[1] / "jsworker"
_DENO_ENV = {
    "DENO_DIR": "/tmp/.deno",
    "HOME": "/tmp",
    "NO_COLOR": "1",
    "DENO_NO_UPDATE_CHECK": "1",
    "DENO_NO_PROMPT": "1",
}


class JavaScriptSettings(LanguageSettings):
    data_overhead_mb: int = Field(
        768,
        ge=64,
        description="Room deno needs beyond its V8 heap (code space, buffers, its Rust"
        " side): RLIMIT_DATA is the memory limit plus this.",
    )
    open_files: int = Field(256, ge=16, le=4096, description="RLIMIT_NOFILE of deno.")


def _deno_binary() -> str:
    return str(deno.find_deno_bin())


class JavaScript(CallbackLanguage[JavaScriptSettings]):
    name = "javascript"
    title = "JavaScript"
    suffixes = (".js",)
    settings_model = JavaScriptSettings
    batches = True

    def worker_spec(self, settings: SandboxSettings) -> LaunchSpec:
        layers = isolation.probe(settings)
        own = self.section(settings)
        heap_mb = settings.memory_limit_mb
        binary, host_js = _deno_binary(), str(JSWORKER_DIR / "host.js")
        prefix: list[str] = []
        env = dict(_DENO_ENV)
        if layers.bwrap is not None:
            root = launch.RUNTIME_ROOT
            prefix = launch.bwrap_base(layers, settings)
            prefix += launch.bind_outside_usr(binary, f"{root}/deno")
            prefix += ["--ro-bind", str(JSWORKER_DIR), f"{root}/js"]
            # deno resolves itself through /proc/self/exe (node: modules need it); the
            # /proc of the new pid namespace, which callbacks cannot read without --allow-read.
            prefix += ["--proc", "/proc"]
            for key, value in _DENO_ENV.items():
                prefix += ["--setenv", key, value]
            prefix += ["--", *launch.drop_uid(layers, settings)]
            binary, host_js, env = f"{root}/deno", f"{root}/js/host.js", {}
        else:
            env["DENO_DIR"] = launch.weak_scratch(settings)
            env["HOME"] = env["DENO_DIR"]
        limits: list[str] = []
        if layers.prlimit is not None:
            limits = [
                layers.prlimit,
                f"--data={(heap_mb + own.data_overhead_mb) * launch.MIB}",
                f"--fsize={settings.file_size_limit_mb * launch.MIB}",
                "--core=0",
                f"--nofile={own.open_files}",
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
