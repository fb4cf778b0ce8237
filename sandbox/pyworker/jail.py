"""Put the worker in its jail: rlimits, then Landlock, then seccomp.

bwrap (namespaces, read-only system, private /tmp) and setpriv (uid) have
already been applied by the command line that started this process. Each
layer reports whether it took hold; the host decides whether a missing layer
is acceptable (see sandbox/isolation.py), and loads no callback otherwise.
"""

import threading
from typing import Any

from . import landlock, limits, seccomp


def apply(config: dict[str, Any]) -> dict[str, Any]:
    # Landlock and seccomp bind the calling thread; there must be no other.
    if threading.active_count() != 1:
        raise RuntimeError("the jail must be applied before any thread starts")
    layers: dict[str, Any] = {}
    limits.apply_rlimits(
        memory_mb=int(config["memory_mb"]),
        file_size_mb=int(config["file_size_mb"]),
        open_files=int(config["open_files"]),
    )
    layers["rlimits"] = True
    try:
        layers["landlock"] = landlock.restrict(
            read_only=list(config["read_only"]),
            read_write=list(config["read_write"]),
            devices=list(config["devices"]),
        )
    except OSError as exc:
        layers["landlock"] = 0
        layers["landlock_error"] = str(exc)
    try:
        layers["seccomp"] = seccomp.install() > 0
    except OSError as exc:
        layers["seccomp"] = False
        layers["seccomp_error"] = str(exc)
    return layers
