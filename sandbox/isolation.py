"""Which jail layers this machine offers, and the refusal when one is missing."""

import ctypes
import functools
import os
import platform
import shutil
from dataclasses import dataclass, field

from storeflow.sandbox.settings import SandboxSettings

_SYS_LANDLOCK_CREATE_RULESET = 444
_PR_GET_SECCOMP = 21


class IsolationUnavailable(RuntimeError):
    """A required jail layer is missing and weak isolation was not allowed."""


@dataclass(frozen=True)
class IsolationLayers:
    bwrap: str | None
    setpriv: str | None
    prlimit: str | None
    landlock_abi: int
    seccomp: bool
    is_root: bool
    notes: list[str] = field(default_factory=list)

    def missing_for_python(self) -> list[str]:
        missing = []
        if self.bwrap is None:
            missing.append("bubblewrap (bwrap) is not installed: apt-get install bubblewrap")
        if self.is_root and self.setpriv is None:
            missing.append("setpriv (util-linux) is not installed, so the uid cannot be dropped")
        if self.landlock_abi < 1:
            missing.append("the kernel offers no Landlock")
        if not self.seccomp:
            missing.append("seccomp filters are unavailable (x86_64 Linux with seccomp needed)")
        return missing


def _landlock_abi() -> int:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    return max(0, int(libc.syscall(_SYS_LANDLOCK_CREATE_RULESET, None, 0, 1)))


def _seccomp_available() -> bool:
    if platform.machine() != "x86_64":
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    return int(libc.prctl(_PR_GET_SECCOMP, 0, 0, 0, 0)) >= 0


@functools.lru_cache(maxsize=8)
def _probe(bwrap_path: str | None) -> IsolationLayers:
    bwrap = bwrap_path if bwrap_path is not None else shutil.which("bwrap")
    if bwrap is not None and not os.access(bwrap, os.X_OK):
        bwrap = None
    return IsolationLayers(
        bwrap=bwrap,
        setpriv=shutil.which("setpriv"),
        prlimit=shutil.which("prlimit"),
        landlock_abi=_landlock_abi(),
        seccomp=_seccomp_available(),
        is_root=os.geteuid() == 0,
    )


def probe(settings: SandboxSettings) -> IsolationLayers:
    return _probe(settings.bwrap_path)


def require_python_isolation(settings: SandboxSettings) -> IsolationLayers:
    """The layers to use for Python callbacks, or IsolationUnavailable."""
    layers = probe(settings)
    missing = layers.missing_for_python()
    if missing and not settings.allow_weak_isolation:
        raise IsolationUnavailable(
            "refusing to run Python callbacks: "
            + "; ".join(missing)
            + ". Install what is missing, or set allow_weak_isolation=True in the sandbox"
            " policy to run them with weaker isolation."
        )
    return layers


def refuse_weak_layers(settings: SandboxSettings, reported: dict[str, object]) -> None:
    """Check what the worker reports it applied (a layer can fail at run time)."""
    problems = []
    if not reported.get("landlock"):
        problems.append(f"Landlock was not applied ({reported.get('landlock_error', 'unknown')})")
    if not reported.get("seccomp"):
        problems.append(f"seccomp was not applied ({reported.get('seccomp_error', 'unknown')})")
    if problems and not settings.allow_weak_isolation:
        raise IsolationUnavailable(
            "refusing to run Python callbacks: "
            + "; ".join(problems)
            + ". Set allow_weak_isolation=True in the sandbox policy to run them anyway."
        )
