"""File-name rules shared by every protocol: matching, renaming, temporary names."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from functools import lru_cache

from storeflow.tasks.transfer import native
from storeflow.tasks.transfer.errors import UnsafeName

# Files being delivered carry this hidden name until they are complete; listings never
# return such names, so a transfer reading a directory another one writes into never
# picks up a half-written file.
_TEMP_PREFIX = ".sf-"
_TEMP_SUFFIX = ".part"
_TEMP_HEX = 20
_TEMP_RE = re.compile(rf"\.sf-[0-9a-f]{{{_TEMP_HEX}}}\.part")


@lru_cache(maxsize=64)
def _compiled(pattern: str) -> re.Pattern[str]:
    # DOTALL: a newline is a legal file-name character, and ``.*`` must still match it.
    return re.compile(pattern, re.DOTALL)


def matches(pattern: str, name: str) -> bool:
    """True when ``pattern`` matches the whole of ``name`` (not just a prefix, as in OTF)."""
    return _compiled(pattern).fullmatch(name) is not None


def is_temp_name(name: str) -> bool:
    return _TEMP_RE.fullmatch(name) is not None


def temp_name(final: str) -> str:
    """The temporary name ``final`` is written under, in the same directory.

    Deterministic, so a rerun after a kill overwrites the leftover instead of adding a
    second one; short and plain, so it fits NAME_MAX and every protocol whatever
    ``final`` contains.
    """
    digest = hashlib.sha1(final.encode("utf-8", "surrogateescape")).hexdigest()[:_TEMP_HEX]
    return f"{_TEMP_PREFIX}{digest}{_TEMP_SUFFIX}"


def temp_names(finals: Sequence[str]) -> list[bytes]:
    """:func:`temp_name` of each name, as bytes (for the native copy loop, relative to
    the destination directory); the digests are taken in C where the native loop is."""
    prefix = _TEMP_PREFIX.encode("ascii")
    suffix = _TEMP_SUFFIX.encode("ascii")
    made = native.temp_names(finals, prefix, _TEMP_HEX, suffix)
    if made is not None:
        return made
    sha1 = hashlib.sha1
    return [
        prefix
        + sha1(f.encode("utf-8", "surrogateescape")).hexdigest()[:_TEMP_HEX].encode()
        + suffix
        for f in finals
    ]


def check_plain_name(name: str, what: str) -> str:
    """Refuse anything that is not a single file name in its directory."""
    if name in ("", ".", "..") or any(c in name for c in "/\\\0"):
        raise UnsafeName(
            f"{what}: {name!r} is not a plain file name (it would leave its directory or is empty)"
        )
    if is_temp_name(name):
        raise UnsafeName(f"{what}: {name!r} is reserved for files in transit")
    return name


def renamed(name: str, pattern: str, sub: str, what: str) -> str:
    """``re.sub(pattern, sub, name)``, refused unless the result is a plain file name."""
    try:
        result = _compiled(pattern).sub(sub, name)
    except (re.error, IndexError) as exc:
        raise UnsafeName(f"{what}: substitution {sub!r} failed on {name!r}: {exc}") from None
    return check_plain_name(result, f"{what} of {name!r}")
