"""A feed's criteria: which files it selects, checked when the feed is saved.

Criteria are one JSON object.  Every key given is one criterion; `op` says whether a
file must meet all of them (`and`, the default) or any (`or`); an object with no
criterion selects every file.

    name          a regular expression the whole file name must match
    mime          a MIME type, exact (`image/png`) or a whole type (`image/*`)
    size_min/max  bytes, inclusive
    space         the storeflow space the file lies in
    dataset       the folder that holds the file (exact)
    path_prefix   the file's absolute path starts with it
    owner/group   the file's owner user / group
    metadata      a list of {path, op, value|min|max}: a dotted JSON path into the
                  file's metadata documents, op one of equals, contains, exists, range

`matches` is the plain evaluation of one feed against one file (the reference the
indexed matcher, tasks/matcher.py, is measured and tested against).  A mistake is an
InvalidInput naming the field (`criteria.name`, `criteria.metadata.0.op`).
"""

import fnmatch
import re
import shlex
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from storeflow.models.bounds import MAX_INT64, BoundError, check_document
from storeflow.models.errors import InvalidInput

MAX_REGEX = 1000
#: Top-level MIME types (IANA's, and libmagic's `inode/` for empty files and the like).
MIME_TYPES = frozenset(
    {
        "application",
        "audio",
        "chemical",
        "font",
        "image",
        "inode",
        "message",
        "model",
        "multipart",
        "text",
        "video",
    }
)
_TOKEN = r"[a-z0-9][a-z0-9!#$&^_.+-]*"
_MIME = re.compile(rf"(?P<type>{_TOKEN})/(?P<sub>{_TOKEN}|\*)")


class MetadataOp(StrEnum):
    EQUALS = "equals"
    CONTAINS = "contains"
    EXISTS = "exists"
    RANGE = "range"


class MetadataCondition(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    path: str = Field(min_length=1, max_length=500)
    op: MetadataOp
    value: Any = None
    min: float | None = None
    max: float | None = None

    def check(self) -> None:
        if self.op in (MetadataOp.EQUALS, MetadataOp.CONTAINS) and self.value is None:
            raise ValueError(f"{self.op.value} needs a value")
        if self.op is MetadataOp.RANGE and self.min is None and self.max is None:
            raise ValueError("range needs min or max")


class Criteria(BaseModel):
    """What a file must be to be selected; see the module's docstring."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    op: Literal["and", "or"] = "and"
    name: str | None = Field(default=None, max_length=MAX_REGEX)
    mime: str | None = Field(default=None, max_length=255)
    size_min: int | None = Field(default=None, ge=0, le=MAX_INT64)
    size_max: int | None = Field(default=None, ge=0, le=MAX_INT64)
    space: str | None = Field(default=None, max_length=255)
    dataset: str | None = Field(default=None, max_length=4096)
    path_prefix: str | None = Field(default=None, max_length=4096)
    owner: str | None = Field(default=None, max_length=64)
    group: str | None = Field(default=None, max_length=64)
    metadata: tuple[MetadataCondition, ...] = ()

    @field_validator("name")
    @classmethod
    def _regex(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"invalid regular expression: {exc}") from None
        return value

    @field_validator("mime")
    @classmethod
    def _mime(cls, value: str | None) -> str | None:
        if value is None:
            return None
        found = _MIME.fullmatch(value.lower())
        if not found or (found["type"] not in MIME_TYPES and not found["type"].startswith("x-")):
            raise ValueError(f"{value!r} is not a MIME type or type/* pattern")
        return value.lower()

    @property
    def empty(self) -> bool:
        return not self.given()

    def given(self) -> list[str]:
        """The criteria set, by key."""
        return [
            key
            for key in (
                "name",
                "mime",
                "size_min",
                "size_max",
                "space",
                "dataset",
                "path_prefix",
                "owner",
                "group",
            )
            if getattr(self, key) is not None
        ] + (["metadata"] if self.metadata else [])


class FeedKind(StrEnum):
    FILE = "file"
    DATASET = "dataset"


def _first_error(exc: ValidationError, prefix: str) -> InvalidInput:
    first = exc.errors()[0]
    where = ".".join(str(part) for part in (prefix, *first["loc"]) if part != "")
    reason = str(first["msg"]).removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        reason = "unknown criterion"
    elif first["type"] == "enum":
        reason = f"{first.get('input')!r}: {reason}"
    return InvalidInput(where, reason)


def parse_criteria(data: Any, field_name: str = "criteria") -> Criteria:
    """Criteria from user JSON; InvalidInput naming the field at the first mistake."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise InvalidInput(field_name, "must be a JSON object")
    try:
        check_document(data, field_name)
        criteria = Criteria.model_validate(data)
    except BoundError as exc:
        raise InvalidInput(exc.field or field_name, exc.reason) from None
    except ValidationError as exc:
        raise _first_error(exc, field_name) from None
    for index, condition in enumerate(criteria.metadata):
        try:
            condition.check()
        except ValueError as exc:
            raise InvalidInput(f"{field_name}.metadata.{index}", str(exc)) from None
    if (
        criteria.size_min is not None
        and criteria.size_max is not None
        and criteria.size_min > criteria.size_max
    ):
        raise InvalidInput(f"{field_name}.size_max", "is smaller than size_min")
    return criteria


_SIZE_UNITS = {"": 1, "b": 1, "k": 1 << 10, "kb": 1 << 10, "m": 1 << 20, "mb": 1 << 20}
_SIZE_UNITS |= {"g": 1 << 30, "gb": 1 << 30, "t": 1 << 40, "tb": 1 << 40}
_SIZE_TERM = re.compile(r"size(?P<cmp>>=|<=|>|<)(?P<n>[0-9]+)(?P<unit>[a-z]*)", re.IGNORECASE)


def parse_query(query: str) -> dict[str, Any]:
    """Clowder's query string for the common cases, as criteria JSON: `name:*.xlsx`
    (a glob), `mime:image/*`, `size>10MB`, `space:S`, `owner:U`, `group:G`,
    `path:PREFIX`; terms joined by spaces (all) or `OR` (any)."""
    try:
        words = shlex.split(query)
    except ValueError as exc:
        raise InvalidInput("query", str(exc)) from None
    criteria: dict[str, Any] = {}
    names: list[str] = []
    terms = [w for w in words if w.upper() != "OR"]
    if len(terms) != len(words):
        criteria["op"] = "or"
    for term in terms:
        size = _SIZE_TERM.fullmatch(term)
        if size:
            unit = _SIZE_UNITS.get(size["unit"].lower())
            if unit is None:
                raise InvalidInput("query", f"{term!r}: unknown size unit {size['unit']!r}")
            n = int(size["n"]) * unit
            if size["cmp"] in (">", ">="):
                criteria["size_min"] = n + (1 if size["cmp"] == ">" else 0)
            else:
                criteria["size_max"] = n - (1 if size["cmp"] == "<" else 0)
            continue
        key, sep, value = term.partition(":")
        if not sep or not value:
            raise InvalidInput("query", f"{term!r} is not KEY:VALUE or size>N")
        target = {
            "name": "name",
            "mime": "mime",
            "space": "space",
            "owner": "owner",
            "group": "group",
            "path": "path_prefix",
            "dataset": "dataset",
        }.get(key.lower())
        if target is None:
            raise InvalidInput("query", f"{key!r} is not one of name, mime, size, space, ...")
        if target == "name":
            # fnmatch's translation ends in \Z; fullmatch makes that redundant but harmless.
            names.append(fnmatch.translate(value))
            continue
        if target in criteria:
            raise InvalidInput("query", f"{key} given twice")
        criteria[target] = value
    if len(names) > 1 and criteria.get("op") != "or":
        raise InvalidInput("query", "name given twice (join names with OR)")
    if names:
        criteria["name"] = "|".join(f"(?:{n})" for n in names) if len(names) > 1 else names[0]
    return criteria


# -- evaluation ------------------------------------------------------------------------


@dataclass(slots=True)
class MatchFile:
    """What criteria are evaluated on: a file's catalog facts and its metadata documents
    merged into one object (later documents win)."""

    id: int
    name: str
    path: str
    space: str
    dataset: str
    mime_type: str
    size: int
    owner: str
    group: str
    metadata: dict[str, Any] = field(default_factory=dict)
    #: What changes when the file's content does (size, mtime, checksum): a dataset's
    #: version is made of its files' stamps.
    stamp: str = ""


_MISSING = object()


def lookup(document: Any, path: str) -> Any:
    """The value at a dotted JSON path (`$.a.b.0` or `a.b.0`), or _MISSING."""
    current = document
    for part in path.removeprefix("$").removeprefix(".").split("."):
        if isinstance(current, dict) and part in current:
            current = current[part]
        elif isinstance(current, list) and part.isdigit() and int(part) < len(current):
            current = current[int(part)]
        else:
            return _MISSING
    return current


def metadata_holds(condition: MetadataCondition, document: dict[str, Any]) -> bool:
    found = lookup(document, condition.path)
    if found is _MISSING:
        return False
    op = condition.op
    if op is MetadataOp.EXISTS:
        return True
    if op is MetadataOp.EQUALS:
        return bool(found == condition.value)
    if op is MetadataOp.CONTAINS:
        if isinstance(found, str):
            return isinstance(condition.value, str) and condition.value in found
        if isinstance(found, list | dict):
            return condition.value in found
        return False
    if isinstance(found, bool) or not isinstance(found, int | float):
        return False
    low, high = condition.min, condition.max
    return (low is None or found >= low) and (high is None or found <= high)


def mime_holds(pattern: str, mime_type: str) -> bool:
    if pattern.endswith("/*"):
        return mime_type.split("/", 1)[0] == pattern[:-2]
    return mime_type == pattern


def checks(criteria: Criteria, file: MatchFile) -> list[bool]:
    """Each criterion's verdict on `file`, in the order of `Criteria.given()`."""
    c = criteria
    verdicts: list[bool] = []
    if c.name is not None:
        verdicts.append(re.fullmatch(c.name, file.name) is not None)
    if c.mime is not None:
        verdicts.append(mime_holds(c.mime, file.mime_type))
    if c.size_min is not None:
        verdicts.append(file.size >= c.size_min)
    if c.size_max is not None:
        verdicts.append(file.size <= c.size_max)
    if c.space is not None:
        verdicts.append(file.space == c.space)
    if c.dataset is not None:
        verdicts.append(file.dataset == c.dataset)
    if c.path_prefix is not None:
        verdicts.append(file.path.startswith(c.path_prefix))
    if c.owner is not None:
        verdicts.append(file.owner == c.owner)
    if c.group is not None:
        verdicts.append(file.group == c.group)
    verdicts.extend(metadata_holds(m, file.metadata) for m in c.metadata)
    return verdicts


def matches(criteria: Criteria, file: MatchFile) -> bool:
    """Whether `file` meets `criteria`: every criterion evaluated, the plain way."""
    verdicts = checks(criteria, file)
    if not verdicts:
        return True
    return all(verdicts) if criteria.op == "and" else any(verdicts)
