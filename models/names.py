"""Validation of the names and sizes users give, shared by every kind.

Names become directory names and, later, share and export names, so they are
kept to a strict, boring alphabet: no separators, no leading dot or dash, no
whitespace or control characters, no look-alike unicode.
"""

import re
from typing import Annotated

from pydantic import AfterValidator, BeforeValidator, WithJsonSchema

NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")
_SIZE_PATTERN = re.compile(r"(\d+)\s*([KMGTP]?)(i?B?)?", re.IGNORECASE)
_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4, "P": 1024**5}


def check_name(value: str) -> str:
    if not NAME_PATTERN.fullmatch(value):
        raise ValueError(
            f"{value!r} is not a valid name: use 1-63 ASCII letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    if value.endswith(".") or ".." in value:
        raise ValueError(f"{value!r} is not a valid name: no trailing dot and no '..'")
    return value


def parse_size(value: object) -> int:
    """Bytes from an int or a string like '10G', '512MiB', '100k' (binary units)."""
    if isinstance(value, bool):
        raise ValueError("a size must be a number of bytes or a string like '10G'")
    if isinstance(value, int):
        if value < 0:
            raise ValueError("a size cannot be negative")
        return value
    if isinstance(value, str):
        match = _SIZE_PATTERN.fullmatch(value.strip())
        if match:
            return int(match.group(1)) * _UNITS[match.group(2).upper()]
    raise ValueError(f"{value!r} is not a size: use bytes or a number with K, M, G, T or P")


def format_size(value: int) -> str:
    for unit in ("P", "T", "G", "M", "K"):
        if value and value % _UNITS[unit] == 0:
            return f"{value // _UNITS[unit]}{unit}"
    return str(value)


ResourceName = Annotated[str, AfterValidator(check_name)]
SIZE_PATTERN = r"^\s*\d+\s*([KMGTPkmgtp]([iI]?[bB])?)?\s*$"
# Bytes, or a string like '10G': the JSON Schema says so, so the Prefect UI and
# the API's parameter validation accept both forms.
Size = Annotated[
    int,
    BeforeValidator(parse_size),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "integer", "minimum": 0},
                {"type": "string", "pattern": SIZE_PATTERN},
            ],
            "description": "bytes, or a number with K, M, G, T or P (binary units)",
        }
    ),
]
