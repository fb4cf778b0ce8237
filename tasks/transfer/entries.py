"""What a protocol's directory listing returns: one entry per name, never followed."""

from __future__ import annotations

import enum
import stat
from dataclasses import dataclass, replace


class Kind(enum.Enum):
    FILE = "file"
    DIR = "dir"
    LINK = "link"
    OTHER = "other"

    @classmethod
    def of_mode(cls, mode: int) -> Kind:
        """The kind a POSIX st_mode names (local and NFS listings both give one)."""
        if stat.S_ISREG(mode):
            return cls.FILE
        if stat.S_ISDIR(mode):
            return cls.DIR
        if stat.S_ISLNK(mode):
            return cls.LINK
        return cls.OTHER


@dataclass(frozen=True, slots=True)
class Entry:
    """One directory entry with its stat information.

    ``path`` is where the content is read from: the entry itself, or for a symlink that
    was resolved inside the source tree, its target.
    """

    name: str
    kind: Kind
    path: str
    size: int = 0
    mtime_ns: int = 0
    atime_ns: int = 0
    ctime_ns: int = 0
    mode: int = 0
    uid: int = 0
    gid: int = 0

    def age(self, now: float) -> float:
        """Seconds since the last modification."""
        return now - self.mtime_ns / 1e9

    def with_target(self, target: Entry) -> Entry:
        """This entry's name with the content and stat of the link target ``target``."""
        return replace(target, name=self.name)
