"""A seccomp-BPF filter for the Python callback worker (x86_64).

The filter is a deny list: the callback runtime is CPython and a small
allow list would break ordinary stdlib use, while what a callback must never
do is short to name: create sockets, fork or exec, trace or signal other
processes, touch namespaces, mounts, keyrings, kernel modules or eBPF, and
allocate memory the address-space limit does not see (memfd, SysV shm).
Threads stay allowed: clone is accepted only with CLONE_THREAD and without
any CLONE_NEW* flag; clone3 answers ENOSYS so libc falls back to clone.
"""

import ctypes
import errno
import struct

from .kernel import is_x86_64, no_new_privs, syscall

_AUDIT_ARCH_X86_64 = 0xC000003E
_X32_SYSCALL_BIT = 0x40000000
_SYS_SECCOMP = 317
_SECCOMP_SET_MODE_FILTER = 1
_SECCOMP_FILTER_FLAG_TSYNC = 1

_RET_KILL_PROCESS = 0x80000000
_RET_ERRNO = 0x00050000
_RET_ALLOW = 0x7FFF0000

_LD_ABS_W = 0x20
_JEQ = 0x15
_JGE = 0x35
_JSET = 0x45
_RET = 0x06

_OFFSET_NR = 0
_OFFSET_ARCH = 4
_OFFSET_ARG0_LOW = 16

_CLONE_THREAD = 0x00010000
_CLONE_NAMESPACES = (
    0x00020000  # NEWNS
    | 0x02000000  # NEWCGROUP
    | 0x04000000  # NEWUTS
    | 0x08000000  # NEWIPC
    | 0x10000000  # NEWUSER
    | 0x20000000  # NEWPID
    | 0x40000000  # NEWNET
)

_CLONE = 56
_CLONE3 = 435

# x86_64 numbers of everything a callback is refused, by purpose.
DENIED: dict[str, int] = {
    # network
    "socket": 41, "connect": 42, "accept": 43, "bind": 49, "listen": 50,
    "socketpair": 53, "accept4": 288,
    # new processes and programs
    "fork": 57, "vfork": 58, "execve": 59, "execveat": 322,
    # other processes
    "kill": 62, "tkill": 200, "ptrace": 101, "process_vm_readv": 310,
    "process_vm_writev": 311, "kcmp": 312, "pidfd_open": 434,
    "pidfd_send_signal": 424, "pidfd_getfd": 438, "process_madvise": 440,
    "process_mrelease": 448, "move_pages": 279, "migrate_pages": 256,
    # namespaces, mounts, root
    "unshare": 272, "setns": 308, "mount": 165, "umount2": 166, "pivot_root": 155,
    "chroot": 161, "open_tree": 428, "move_mount": 429, "fsopen": 430,
    "fsconfig": 431, "fsmount": 432, "fspick": 433, "mount_setattr": 442,
    "open_by_handle_at": 304, "name_to_handle_at": 303,
    # memory the address-space limit does not count
    "memfd_create": 319, "memfd_secret": 447, "shmget": 29, "msgget": 68, "semget": 64,
    "userfaultfd": 323,
    # kernel facilities with a host-wide view
    "keyctl": 250, "add_key": 248, "request_key": 249, "bpf": 321,
    "perf_event_open": 298, "io_uring_setup": 425, "io_uring_enter": 426,
    "io_uring_register": 427, "fanotify_init": 300, "syslog": 103,
    "lookup_dcookie": 212, "init_module": 175, "finit_module": 313,
    "delete_module": 176, "kexec_load": 246, "kexec_file_load": 320, "reboot": 169,
    "swapon": 167, "swapoff": 168, "acct": 163, "quotactl": 179, "quotactl_fd": 443,
    "sethostname": 170, "setdomainname": 171, "settimeofday": 164,
    "clock_settime": 227, "clock_adjtime": 305, "adjtimex": 159,
    "iopl": 172, "ioperm": 173, "modify_ldt": 154, "personality": 135,
    "uselib": 134, "vhangup": 153, "mknod": 133, "mknodat": 259,
    # the jail itself: no new filters or Landlock domains once we are done
    "seccomp": 317, "landlock_create_ruleset": 444, "landlock_add_rule": 445,
    "landlock_restrict_self": 446,
}  # fmt: skip


Instruction = tuple[int, int, int, int]
# A jump target is a label name; labels are resolved to forward offsets.
_Pending = tuple[int, str | int, str | int, int]


def _assemble(pending: list[_Pending | str]) -> list[Instruction]:
    """Turn (code, jt, jf, k) with label names into a BPF program.

    Entries that are plain strings mark a label at that position.
    """
    labels: dict[str, int] = {}
    body: list[_Pending] = []
    for entry in pending:
        if isinstance(entry, str):
            labels[entry] = len(body)
        else:
            body.append(entry)
    program: list[Instruction] = []
    for index, (code, jt, jf, k) in enumerate(body):

        def offset(target: str | int, index: int = index) -> int:
            if isinstance(target, int):
                return target
            distance = labels[target] - index - 1
            if not 0 <= distance <= 255:
                raise ValueError(f"seccomp jump to {target} out of range")
            return distance

        program.append((code, offset(jt), offset(jf), k))
    return program


def build_program() -> list[Instruction]:
    """The filter as (code, jt, jf, k) instructions."""
    pending: list[_Pending | str] = [
        (_LD_ABS_W, 0, 0, _OFFSET_ARCH),
        (_JEQ, 0, "kill", _AUDIT_ARCH_X86_64),
        (_LD_ABS_W, 0, 0, _OFFSET_NR),
        # x32 numbers alias the same calls with a high bit: refuse that ABI.
        (_JGE, "kill", 0, _X32_SYSCALL_BIT),
    ]
    pending += [(_JEQ, "eperm", 0, number) for number in sorted(set(DENIED.values()))]
    pending += [
        (_JEQ, 0, "not_clone", _CLONE),
        (_LD_ABS_W, 0, 0, _OFFSET_ARG0_LOW),
        (_JSET, "eperm", 0, _CLONE_NAMESPACES),
        (_JSET, "allow", "eperm", _CLONE_THREAD),
        "not_clone",
        (_JEQ, "enosys", "allow", _CLONE3),
        "eperm",
        (_RET, 0, 0, _RET_ERRNO | errno.EPERM),
        "allow",
        (_RET, 0, 0, _RET_ALLOW),
        "enosys",
        (_RET, 0, 0, _RET_ERRNO | errno.ENOSYS),
        "kill",
        (_RET, 0, 0, _RET_KILL_PROCESS),
    ]
    return _assemble(pending)


class _SockFprog(ctypes.Structure):
    _fields_ = (("len", ctypes.c_ushort), ("filter", ctypes.c_void_p))


def install() -> int:
    """Load the filter for every thread of this process; returns its length."""
    if not is_x86_64():
        raise OSError("the seccomp filter is written for x86_64 only")
    program = build_program()
    blob = b"".join(struct.pack("<HBBI", *instruction) for instruction in program)
    buffer = ctypes.create_string_buffer(blob, len(blob))
    fprog = _SockFprog(len(program), ctypes.cast(buffer, ctypes.c_void_p))
    no_new_privs()
    syscall(_SYS_SECCOMP, _SECCOMP_SET_MODE_FILTER, _SECCOMP_FILTER_FLAG_TSYNC, ctypes.byref(fprog))
    return len(program)
