"""Which feeds a file meets, fast: indexed, cheap criteria first, regexes in one pass.

Each AND feed sits in one bucket chosen by its most selective cheap key: its exact
MIME type, else its MIME type's `type/*`, else its space, else the catch-all.  A file
looks at three MIME buckets (its type, its `type/*`, and the space-keyed or catch-all
ones) and never at the feeds of another type.  Within a bucket feeds are sorted by
their smallest size, so a bisection drops every feed that wants a bigger file.  What
is left is checked from cheap to dear: sizes and string equalities, then the name's
regular expression, then metadata paths.

Regular expressions are evaluated once per file per distinct pattern, and one combined
alternation of all of them is tried first: a name none of them fits (most names, for
most feeds) costs one call into the regex engine for all the feeds at once.

OR feeds and feeds whose criteria cannot be keyed are evaluated the plain way
(models/feed_criteria.matches) with the same per-file regex memo.  The result is
always exactly what the plain evaluation of every feed would give (tests check it
against it on random feeds and files).
"""

import re
from bisect import bisect_right
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from storeflow.models.feed_criteria import (
    Criteria,
    MatchFile,
    MetadataCondition,
    MetadataOp,
)

_MISSING = object()

_NO_LIMIT = 2**63 - 1
# Patterns that cannot share one alternation: backreferences (group numbers shift),
# named groups (names would repeat), global inline flags (must come first).
_UNSHAREABLE = re.compile(r"\\[1-9]|\(\?P[<=]|\(\?[aiLmsux]+\)")


def literal_ends(pattern: str) -> tuple[str, str]:
    """(prefix, suffix): literal text every whole-name match must start / end with, or
    "" where that cannot be told safely.  A conservative reading: alternation or inline
    flags anywhere give nothing; a quantified character is not required."""
    body = pattern
    # fnmatch.translate's form: (?s:...)\Z, whose flag only changes what '.' matches.
    if body.startswith("(?s:") and body.endswith(")\\Z"):
        body = body[4:-3]
    elif body.endswith("\\Z") or body.endswith("$"):
        body = body[:-2] if body.endswith("\\Z") else body[:-1]
    if "|" in body or "(?" in body.replace("(?:", ""):
        return "", ""
    tokens: list[str | None] = []  # a literal character, or None for anything else
    i = 0
    while i < len(body):
        char = body[i]
        if char == "\\":
            if i + 1 >= len(body):
                return "", ""
            following = body[i + 1]
            tokens.append(None if following.isalnum() else following)
            i += 2
        elif char == "[":
            j = i + 1
            if j < len(body) and body[j] == "^":
                j += 1
            if j < len(body) and body[j] == "]":
                j += 1
            while j < len(body) and body[j] != "]":
                j += 2 if body[j] == "\\" else 1
            tokens.append(None)
            i = j + 1
        elif char in "*+?{":
            if tokens:
                tokens[-1] = None
            if char == "{":
                close = body.find("}", i)
                i = len(body) if close < 0 else close + 1
            else:
                i += 1
            tokens.append(None)
        elif char in "().^$":
            tokens.append(None)
            i += 1
        else:
            tokens.append(char)
            i += 1
    prefix = []
    for token in tokens:
        if token is None:
            break
        prefix.append(token)
    suffix = []
    for token in reversed(tokens):
        if token is None:
            break
        suffix.append(token)
    return "".join(prefix), "".join(reversed(suffix))


@dataclass(slots=True)
class _Feed:
    """A feed compiled for the matcher: its checks as plain attributes."""

    id: int
    mime: str | None  # exact
    major: str | None  # of type/*
    size_min: int
    size_max: int
    space: str | None
    dataset: str | None
    path_prefix: str | None
    owner: str | None
    group: str | None
    regex: int  # index into the matcher's distinct patterns, -1 for none
    metadata: tuple[MetadataCondition, ...]
    # The checks this feed has and no others, cheap first (see _compile_check).
    check: Callable[[MatchFile, int, str, dict[str, Any], Callable[[int], bool]], bool] = field(
        default=lambda *_: True
    )


def _metadata_check(condition: MetadataCondition) -> Callable[[Any], bool]:
    """`metadata_holds(condition, document)` as one function with its path split once
    (the same answers: tests check it against the plain evaluation)."""
    parts = tuple(
        (part, int(part) if part.isdigit() else -1)
        for part in condition.path.removeprefix("$").removeprefix(".").split(".")
    )

    def found_in(document: Any) -> Any:
        current = document
        for part, index in parts:
            if isinstance(current, dict):
                if part not in current:
                    return _MISSING
                current = current[part]
            elif isinstance(current, list) and 0 <= index < len(current):
                current = current[index]
            else:
                return _MISSING
        return current

    op, wanted, low, high = condition.op, condition.value, condition.min, condition.max

    def holds(document: Any) -> bool:
        found = found_in(document)
        if found is _MISSING:
            return False
        if op is MetadataOp.EXISTS:
            return True
        if op is MetadataOp.EQUALS:
            return bool(found == wanted)
        if op is MetadataOp.CONTAINS:
            if isinstance(found, str):
                return isinstance(wanted, str) and wanted in found
            if isinstance(found, list | dict):
                return wanted in found
            return False
        if isinstance(found, bool) or not isinstance(found, int | float):
            return False
        return (low is None or found >= low) and (high is None or found <= high)

    return holds


def _compile_check(
    f: _Feed,
) -> Callable[[MatchFile, int, str, dict[str, Any], Callable[[int], bool]], bool]:
    """One function testing exactly the criteria `f` has, in order of cost.  The source
    holds only variable names; the feed's values are passed in its namespace, so
    nothing a user wrote becomes code.  (The smallest size is the bucket's bisection.)"""
    terms: list[str] = []
    values: dict[str, Any] = {}

    def value(v: Any) -> str:
        name = f"v{len(values)}"
        values[name] = v
        return name

    if f.size_max != _NO_LIMIT:
        terms.append(f"size <= {value(f.size_max)}")
    if f.mime is not None:
        terms.append(f"file.mime_type == {value(f.mime)}")
    if f.major is not None:
        terms.append(f"major == {value(f.major)}")
    for attribute in ("space", "dataset", "owner", "group"):
        wanted = getattr(f, attribute)
        if wanted is not None:
            terms.append(f"file.{attribute} == {value(wanted)}")
    if f.path_prefix is not None:
        terms.append(f"file.path.startswith({value(f.path_prefix)})")
    if f.regex >= 0:
        terms.append(f"regex_holds({value(f.regex)})")
    if f.metadata:
        # Every metadata operator needs its path to exist: no documents, no match.
        terms.append("bool(document)")
        terms.extend(f"{value(_metadata_check(m))}(document)" for m in f.metadata)
    source = (
        "def check(file, size, major, document, regex_holds):\n"
        f"    return {' and '.join(terms) or 'True'}\n"
    )
    namespace: dict[str, Any] = dict(values)
    exec(compile(source, f"<feed {f.id}>", "exec"), namespace)
    check: Callable[[MatchFile, int, str, dict[str, Any], Callable[[int], bool]], bool]
    check = namespace["check"]
    return check


@dataclass(slots=True)
class _Bucket:
    feeds: list[_Feed] = field(default_factory=list)
    keys: list[int] = field(default_factory=list)

    def seal(self) -> None:
        self.feeds.sort(key=lambda f: f.size_min)
        self.keys = [f.size_min for f in self.feeds]

    def within(self, size: int) -> list[_Feed]:
        return self.feeds[: bisect_right(self.keys, size)]


class _KeyedIndex:
    """Feeds keyed by a string the file's value must start (or end) with.  Keys are cut
    to the shortest one's length, so a file costs one dictionary lookup."""

    def __init__(self, *, at_end: bool) -> None:
        self.at_end = at_end
        self.pending: list[tuple[str, _Feed]] = []
        self.length = 0
        self.keyed: dict[str, _Bucket] = {}

    def add(self, key: str, feed: _Feed) -> None:
        self.pending.append((key, feed))

    def seal(self) -> None:
        if not self.pending:
            return
        self.length = min(len(key) for key, _ in self.pending)
        for key, feed in self.pending:
            cut = key[-self.length :] if self.at_end else key[: self.length]
            self.keyed.setdefault(cut, _Bucket()).feeds.append(feed)
        for bucket in self.keyed.values():
            bucket.seal()

    def buckets(self) -> list[_Bucket]:
        return list(self.keyed.values())

    def lookup(self, value: str, into: list[_Bucket]) -> None:
        if self.length:
            cut = value[-self.length :] if self.at_end else value[: self.length]
            found = self.keyed.get(cut)
            if found is not None:
                into.append(found)


def disjuncts(c: Criteria) -> list[Criteria]:
    """An OR feed's criteria one by one, each alone (a file meets the feed iff it meets
    one of them)."""
    alone = [Criteria(**{key: getattr(c, key)}) for key in c.given() if key != "metadata"]
    return alone + [Criteria(metadata=(m,)) for m in c.metadata]


class Matcher:
    """Built once from the feeds' criteria (id -> Criteria), then `match(file)` for each
    file: the ids of the feeds it meets, in ascending order."""

    def __init__(self, feeds: Iterable[tuple[int, Criteria]]) -> None:
        self._patterns: list[re.Pattern[str]] = []
        self._pattern_index: dict[str, int] = {}
        self._exact: dict[str, _Bucket] = {}
        self._major: dict[str, _Bucket] = {}
        self._space: dict[str, _Bucket] = {}
        self._name_start = _KeyedIndex(at_end=False)
        self._name_end = _KeyedIndex(at_end=True)
        self._path = _KeyedIndex(at_end=False)
        self._rest = _Bucket()
        # Feeds keyed by nothing cheaper than metadata, by their type/* ("" for none).
        self._with_metadata: dict[str, _Bucket] = {}
        # A MIME type's buckets (exact, type/*, catch-all), found once per type seen.
        self._by_mime: dict[str, list[_Bucket]] = {}
        self._every: list[int] = []
        # OR feeds are indexed as one single-criterion feed per criterion (same id): a
        # file may then meet one feed several times, and the answer is deduplicated.
        self._disjunctions = False
        self.size = 0
        for feed_id, criteria in feeds:
            self._add(feed_id, criteria)
            self.size += 1
        for bucket in (
            *self._exact.values(),
            *self._major.values(),
            *self._space.values(),
            *self._with_metadata.values(),
            self._rest,
        ):
            bucket.seal()
        for index in (self._name_start, self._name_end, self._path):
            index.seal()
        shareable = [p.pattern for p in self._patterns if not _UNSHAREABLE.search(p.pattern)]
        self._all_shareable = len(shareable) == len(self._patterns)
        self._combined: re.Pattern[str] | None = None
        if shareable:
            try:
                self._combined = re.compile("|".join(f"(?:{p})" for p in shareable))
            except re.error:  # e.g. a pattern only valid on its own
                self._combined = None
                self._all_shareable = False

    def _regex(self, pattern: str | None) -> int:
        if pattern is None:
            return -1
        if pattern not in self._pattern_index:
            self._pattern_index[pattern] = len(self._patterns)
            self._patterns.append(re.compile(pattern))
        return self._pattern_index[pattern]

    def _add(self, feed_id: int, c: Criteria) -> None:
        if c.empty:
            self._every.append(feed_id)
            return
        if c.op == "or" and len(c.given()) > 1:
            self._disjunctions = True
            for alone in disjuncts(c):
                self._add(feed_id, alone)
            return
        mime = c.mime
        major = mime[:-2] if mime is not None and mime.endswith("/*") else None
        exact = mime if mime is not None and major is None else None
        compiled = _Feed(
            id=feed_id,
            mime=exact,
            major=major,
            size_min=c.size_min or 0,
            size_max=_NO_LIMIT if c.size_max is None else c.size_max,
            space=c.space,
            dataset=c.dataset,
            path_prefix=c.path_prefix,
            owner=c.owner,
            group=c.group,
            regex=self._regex(c.name),
            metadata=c.metadata,
        )
        compiled.check = _compile_check(compiled)
        # One bucket per feed, by its most selective cheap key; the others are checked.
        start, end = literal_ends(c.name) if c.name is not None else ("", "")
        if exact is not None:
            bucket = self._exact.setdefault(exact, _Bucket())
        elif len(start) >= 3 or len(end) >= 3:
            if len(start) >= len(end):
                self._name_start.add(start, compiled)
            else:
                self._name_end.add(end, compiled)
            return
        elif c.space is not None:
            bucket = self._space.setdefault(c.space, _Bucket())
        elif c.path_prefix:
            self._path.add(c.path_prefix, compiled)
            return
        elif c.metadata:
            # Consulted only for files that have metadata documents (most have none).
            bucket = self._with_metadata.setdefault(major or "", _Bucket())
        elif major is not None:
            bucket = self._major.setdefault(major, _Bucket())
        else:
            bucket = self._rest
        bucket.feeds.append(compiled)

    def match(self, file: MatchFile) -> list[int]:
        size = file.size
        mime = file.mime_type
        found = list(self._every)
        # Per-file regex verdicts: None until asked; the combined pass may settle all.
        verdicts: list[bool | None] = [None] * len(self._patterns)
        combined_tried = False
        name = file.name
        document = file.metadata

        def regex_holds(index: int) -> bool:
            nonlocal combined_tried
            verdict = verdicts[index]
            if verdict is None:
                if not combined_tried and self._combined is not None:
                    combined_tried = True
                    if self._combined.fullmatch(name) is None and self._all_shareable:
                        for i in range(len(verdicts)):
                            verdicts[i] = False
                        return False
                verdict = self._patterns[index].fullmatch(name) is not None
                verdicts[index] = verdict
            return verdict

        major_type = mime.partition("/")[0]
        by_mime = self._by_mime.get(mime)
        if by_mime is None:
            by_mime = self._by_mime[mime] = [
                b
                for b in (self._exact.get(mime), self._major.get(major_type), self._rest)
                if b is not None and b.feeds
            ]
        buckets = list(by_mime)
        if (spaced := self._space.get(file.space)) is not None:
            buckets.append(spaced)
        if document and self._with_metadata:
            for key in (major_type, ""):
                if (described := self._with_metadata.get(key)) is not None:
                    buckets.append(described)
        for index, value in (
            (self._name_start, name),
            (self._name_end, name),
            (self._path, file.path),
        ):
            if length := index.length:
                keyed = index.keyed.get(value[-length:] if index.at_end else value[:length])
                if keyed is not None:
                    buckets.append(keyed)
        for bucket in buckets:
            for f in bucket.feeds[: bisect_right(bucket.keys, size)]:
                if f.check(file, size, major_type, document, regex_holds):
                    found.append(f.id)
        if self._disjunctions:
            return sorted(set(found))
        found.sort()
        return found
