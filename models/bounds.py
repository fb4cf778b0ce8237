"""Bounds on what users give: numbers that fit the databases, text without control
characters, documents of bounded size and depth.

Everything a user types reaches a database (storeflow's, and Prefect's as a flow run's
parameters) and is shown in the Prefect UI; one integer past 64 bits stored as a run
parameter breaks the server's run listing for everyone, and a NUL cannot be stored in
PostgreSQL's JSON at all.  So every integer is bounded, every string is printable, and
documents are measured before they are parsed.
"""

import json
import math
import re
from collections.abc import Mapping
from pathlib import PurePath
from typing import Annotated, Any

from pydantic import Field

MAX_INT64 = 2**63 - 1
MAX_ETAG = 2**31 - 1  # the etag column is a 32-bit integer
MAX_DOCUMENT_BYTES = 1 << 20  # transfer definitions, specs given as files
MAX_DOCUMENT_DEPTH = 32
# C0 and C1 controls and DEL; tab, newline and carriage return are refused as well: no
# user string (names, paths, patterns, options) has a reason to hold them.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")

Etag = Annotated[
    int,
    Field(
        ge=1,
        le=MAX_ETAG,
        description="The etag you last read (`storeflow KIND show NAME --json`).",
    ),
]


class BoundError(ValueError):
    """A value past its bounds; `field` names where it was found."""

    def __init__(self, field: str, reason: str) -> None:
        self.field, self.reason = field, reason
        super().__init__(f"{field}: {reason}" if field else reason)


def check_text(value: str, field: str = "") -> str:
    """`value`, if it holds no control character."""
    found = _CONTROL.search(value)
    if found:
        raise BoundError(
            field, f"control character U+{ord(found.group()):04X} is not allowed in text"
        )
    return value


def check_document(data: Any, field: str = "", depth: int = 0) -> Any:
    """Walk parsed JSON/YAML: every string printable, every integer 64-bit, nesting
    bounded. Returns `data` unchanged."""
    if depth > MAX_DOCUMENT_DEPTH:
        raise BoundError(field, f"nested deeper than {MAX_DOCUMENT_DEPTH} levels")
    if isinstance(data, str | PurePath):
        check_text(str(data), field)
    elif isinstance(data, bool):
        pass
    elif isinstance(data, float):
        if not math.isfinite(data):
            raise BoundError(field, f"{data} is not a finite number")
    elif isinstance(data, int):
        if not -MAX_INT64 - 1 <= data <= MAX_INT64:
            raise BoundError(field, "integer does not fit in 64 bits")
    elif isinstance(data, Mapping):
        for key, value in data.items():
            name = f"{field}.{key}" if field else str(key)
            if isinstance(key, str):
                check_text(key, name)
            check_document(value, name, depth + 1)
    elif isinstance(data, list | tuple):
        for index, value in enumerate(data):
            check_document(value, f"{field}.{index}" if field else str(index), depth + 1)
    return data


def nesting_depth(text: str) -> int:
    """The deepest bracket nesting of JSON (or YAML flow style) text, strings skipped:
    measured before parsing, since the parsers recurse once per level."""
    depth = deepest = 0
    in_string: str | None = None
    escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == in_string:
                in_string = None
        elif char in "\"'":
            in_string = char
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest


def _yaml_load(text: str) -> Any:
    import yaml  # here, not at import: every verb imports this module, few read YAML

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise BoundError("(yaml)", " ".join(str(exc).split())) from None


def parse_document(raw: bytes, kind: str) -> Any:
    """Parse a JSON or YAML document (`kind`: "json" or "yaml") within the bounds.

    Raises BoundError naming the problem (with "(file)" as its field for size,
    encoding, depth and syntax), and for values past their bounds, where they are.
    """
    if len(raw) > MAX_DOCUMENT_BYTES:
        raise BoundError("(file)", f"larger than {MAX_DOCUMENT_BYTES} bytes")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BoundError("(file)", f"not UTF-8 text (byte {exc.start})") from None
    if nesting_depth(text) > MAX_DOCUMENT_DEPTH:
        raise BoundError("(file)", f"nested deeper than {MAX_DOCUMENT_DEPTH} levels")
    try:
        data = json.loads(text) if kind == "json" else _yaml_load(text)
    except json.JSONDecodeError as exc:
        raise BoundError(f"line {exc.lineno} column {exc.colno}", exc.msg) from None
    except (RecursionError, ValueError) as exc:  # e.g. a 5000-digit integer
        raise BoundError("(file)", " ".join(str(exc).split()) or "cannot be parsed") from None
    return check_document(data)
