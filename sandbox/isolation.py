"""Which jail layers this machine offers, and the refusal when one that a
language requires is missing (each language names its layers in
sandbox/languages/)."""

import ctypes
import enum
import functools
import os
import platform
import shutil
from collections.abc import Collection, Mapping
from dataclasses import dataclass

from storeflow.sandbox.settings import SandboxSettings

_SYS_LANDLOCK_CREATE_RULESET = 444
_PR_GET_SECCOMP = 21


class IsolationUnavailable(RuntimeError):
    """A required jail layer is missing and weak isolation was not allowed."""


class Layer(enum.StrEnum):
    """One layer of a jail. The values are the keys a worker reports them by."""

    NAMESPACES = "bwrap"  # bubblewrap: namespaces, read-only system, private /tmp
    UNPRIVILEGED_UID = "uid"  # setpriv, needed to drop the uid when the host runs as root
    LANDLOCK = "landlock"
    SECCOMP = "seccomp"

    @property
    def label(self) -> str:
        return _LABELS[self]


_LABELS = {
    Layer.NAMESPACES: "bubblewrap",
    Layer.UNPRIVILEGED_UID: "the unprivileged uid",
    Layer.LANDLOCK: "Landlock",
    Layer.SECCOMP: "seccomp",
}


@dataclass(frozen=True)
class IsolationLayers:
    bwrap: str | None
    setpriv: str | None
    prlimit: str | None
    landlock_abi: int
    seccomp: bool
    is_root: bool

    def missing(self, required: Collection[Layer]) -> list[str]:
        """Why each required layer is unavailable here (empty when all are)."""
        missing = []
        if Layer.NAMESPACES in required and self.bwrap is None:
            missing.append("bubblewrap (bwrap) is not installed: apt-get install bubblewrap")
        if Layer.UNPRIVILEGED_UID in required and self.is_root and self.setpriv is None:
            missing.append("setpriv (util-linux) is not installed, so the uid cannot be dropped")
        if Layer.LANDLOCK in required and self.landlock_abi < 1:
            missing.append("the kernel offers no Landlock")
        if Layer.SECCOMP in required and not self.seccomp:
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


def require(settings: SandboxSettings, title: str, required: Collection[Layer]) -> IsolationLayers:
    """This machine's layers, or IsolationUnavailable when a required one is missing."""
    layers = probe(settings)
    missing = layers.missing(required)
    if missing and not settings.allow_weak_isolation:
        raise IsolationUnavailable(
            f"refusing to run {title} callbacks: "
            + "; ".join(missing)
            + ". Install what is missing, or set allow_weak_isolation=True in the sandbox"
            " policy to run them with weaker isolation."
        )
    return layers


def refuse_unapplied(
    settings: SandboxSettings,
    title: str,
    expected: Collection[Layer],
    reported: Mapping[str, object],
) -> None:
    """Check the layers a worker says it applied to itself (one can fail at run time)."""
    problems = [
        f"{layer.label} was not applied ({reported.get(f'{layer.value}_error', 'unknown')})"
        for layer in sorted(expected)
        if not reported.get(layer.value)
    ]
    if problems and not settings.allow_weak_isolation:
        raise IsolationUnavailable(
            f"refusing to run {title} callbacks: "
            + "; ".join(problems)
            + ". Set allow_weak_isolation=True in the sandbox policy to run them anyway."
        )
