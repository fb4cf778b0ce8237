"""Raw system calls the jail needs and Python does not wrap (stdlib ctypes)."""

import ctypes
import os
import platform

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long
_libc.prctl.restype = ctypes.c_int

PR_SET_NO_NEW_PRIVS = 38


def syscall(number: int, *args: object) -> int:
    """syscall(2) that raises OSError instead of returning -1."""
    result = int(_libc.syscall(number, *args))
    if result < 0:
        errno = ctypes.get_errno()
        raise OSError(errno, os.strerror(errno))
    return result


def prctl(option: int, arg2: object = 0) -> int:
    result = int(_libc.prctl(option, arg2, 0, 0, 0))
    if result < 0:
        errno = ctypes.get_errno()
        raise OSError(errno, os.strerror(errno))
    return result


def no_new_privs() -> None:
    """Required before Landlock or seccomp can be applied without privileges."""
    prctl(PR_SET_NO_NEW_PRIVS, 1)


def is_x86_64() -> bool:
    return platform.machine() == "x86_64"
