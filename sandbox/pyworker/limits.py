"""Resource limits the worker puts on itself before any callback code runs."""

import resource

_MIB = 1024 * 1024


def apply_rlimits(memory_mb: int, file_size_mb: int, open_files: int) -> None:
    """Cap address space, file size, descriptors and core dumps.

    RLIMIT_AS turns a memory bomb into a MemoryError the runtime can report;
    RLIMIT_FSIZE stops a single file from filling the scratch tmpfs (which
    also has a size cap of its own).
    """
    caps = {
        resource.RLIMIT_AS: memory_mb * _MIB,
        resource.RLIMIT_FSIZE: file_size_mb * _MIB,
        resource.RLIMIT_NOFILE: open_files,
        resource.RLIMIT_CORE: 0,
        resource.RLIMIT_MEMLOCK: 0,
    }
    for which, value in caps.items():
        resource.setrlimit(which, (value, value))
