"""Validation of the names and sizes users give, shared by every kind.

Names become directory names and, later, share and export names, so they are
kept to a strict, boring alphabet: no separators, no leading dot or dash, no
whitespace or control characters, no look-alike unicode.
"""

import re
from typing import Annotated

from pydantic import AfterValidator, BeforeValidator, Field, WithJsonSchema

from storeflow.models.bounds import MAX_INT64, check_text

NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")
# ASCII digits only: `\d` would take Arabic-Indic and other digits as well.
_SIZE_PATTERN = re.compile(r"([0-9]+)[ ]*([KMGTP]?)(i?B?)?", re.IGNORECASE | re.ASCII)
_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4, "P": 1024**5}


def check_name(value: str) -> str:
    if not NAME_PATTERN.fullmatch(value) or not value.isascii():
        raise ValueError(
            f"{value!r} is not a valid name: use 1-63 ASCII letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    if value.endswith(".") or ".." in value:
        raise ValueError(f"{value!r} is not a valid name: no trailing dot and no '..'")
    return value


# What fits a signed 64-bit integer: storeflow's database and Prefect's run parameters.
MAX_SIZE = MAX_INT64


def parse_size(value: object) -> int:
    """Bytes from an int or a string like '10G', '512MiB', '100k' (binary units)."""
    if isinstance(value, bool):
        raise ValueError("a size must be a number of bytes or a string like '10G'")
    size: int | None = None
    if isinstance(value, int):
        if value < 0:
            raise ValueError("a size cannot be negative")
        size = value
    elif isinstance(value, str) and len(value) <= 64:
        match = _SIZE_PATTERN.fullmatch(value.strip(" "))
        if match:
            size = int(match.group(1)) * _UNITS[match.group(2).upper()]
    if size is None:
        shown = value if not isinstance(value, str) or len(value) <= 64 else f"{value[:64]}..."
        raise ValueError(f"{shown!r} is not a size: use bytes or a number with K, M, G, T or P")
    if size > MAX_SIZE:
        raise ValueError(f"{format_size(size)} is more than the largest size, {MAX_SIZE} bytes")
    return size


def format_size(value: int) -> str:
    for unit in ("P", "T", "G", "M", "K"):
        if value and value % _UNITS[unit] == 0:
            return f"{value // _UNITS[unit]}{unit}"
    return str(value)


ResourceName = Annotated[
    str,
    Field(pattern=f"^{NAME_PATTERN.pattern}$", description="1-63 ASCII letters, digits, . _ -"),
    AfterValidator(check_name),
]
# A transfer's task id (OTF's -t TASK_ID, also a run name and a callback's req.id):
# longer than a resource name and with a few more characters, never a path or a line.
TASK_ID_PATTERN = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._@+=-]{0,254}")
TaskId = Annotated[
    str,
    Field(
        pattern=f"^{TASK_ID_PATTERN.pattern}$",
        description="Up to 255 ASCII letters, digits and . _ @ + = -",
    ),
]


def as_task_id(text: str) -> str:
    """`text` (e.g. a definition file's stem) made into a task id."""
    cleaned = re.sub(r"[^A-Za-z0-9._@+=-]+", "-", text).lstrip(".-")[:255]
    return cleaned or "transfer"


# Free text a user gives (paths, patterns, block names): printable, any length the
# field allows.
Text = Annotated[str, AfterValidator(check_text), Field(pattern=r"^[^\x00-\x1f\x7f-\x9f]*$")]
SIZE_PATTERN = r"^ *[0-9]{1,19} *([KMGTPkmgtp]([iI]?[bB])?)? *$"
# Bytes, or a string like '10G': the JSON Schema says so, so the Prefect UI and
# the API's parameter validation accept both forms.
Size = Annotated[
    int,
    BeforeValidator(parse_size),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "integer", "minimum": 0, "maximum": MAX_SIZE},
                {"type": "string", "pattern": SIZE_PATTERN},
            ],
            "description": "bytes, or a number with K, M, G, T or P (binary units)",
        }
    ),
]
