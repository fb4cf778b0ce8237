"""Whole directory trees through the transfer engine: what replicas and profiles run.

The engine moves the files of one directory (it never descends, on purpose); a tree is
walked here, one directory at a time, on any protocol, and each directory is one OTF
definition run by the engine, so every file still arrives under a temporary name, keeps
its mtime and is renamed into place.  Links are never followed.
"""

import posixpath
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from pydantic import TypeAdapter

from storeflow.models.transfer import Source, parse_definition
from storeflow.tasks.transfer import Entry, Kind, TransferHandler, run_transfer
from storeflow.tasks.transfer.names import is_temp_name
from storeflow.tasks.transfer.registry import open_handler

# Timestamps of one file on two protocols differ by their precision (SMB keeps 100 ns).
MTIME_TOLERANCE_NS = 1_000


@dataclass(frozen=True)
class Endpoint:
    """A directory on some protocol: the `directory` and `protocol` of an OTF side."""

    directory: str
    protocol: dict[str, Any]

    def at(self, relative: str) -> dict[str, Any]:
        directory = posixpath.join(self.directory, relative) if relative else self.directory
        return {"directory": directory, "protocol": self.protocol}


_side = TypeAdapter(Source)


def open_endpoint(endpoint: Endpoint) -> TransferHandler:
    """A connected handler for the endpoint's protocol (close it with `tidy()`)."""
    return open_handler(_side.validate_python({**endpoint.at(""), "fileRegex": ".*"}))


@dataclass
class TreeReport:
    directories: int = 0
    files: list[str] = field(default_factory=list)
    bytes: int = 0

    def add(self, relative: str, names: tuple[str, ...], nbytes: int) -> None:
        self.directories += 1
        self.files.extend(posixpath.join(relative, n) if relative else n for n in names)
        self.bytes += nbytes


def walk(handler: TransferHandler, root: str, relative: str = "") -> Iterator[str]:
    """`relative` and every directory below it (relative to `root`), parents first."""
    yield relative
    here = posixpath.join(root, relative) if relative else root
    for entry in sorted(handler.scan(here), key=lambda e: e.name):
        if entry.kind is Kind.DIR and not is_temp_name(entry.name):
            yield from walk(handler, root, posixpath.join(relative, entry.name))


def files_in(handler: TransferHandler, directory: str) -> dict[str, Entry]:
    if not handler.is_dir(directory):
        return {}
    return {e.name: e for e in handler.list_entries(directory, ".*")}


def needs_copy(source: Entry, target: Entry | None, newer_only: bool) -> bool:
    """One way, the source wins on any difference; both ways, only a newer file is copied."""
    if target is None:
        return True
    delta = source.mtime_ns - target.mtime_ns
    if newer_only:
        return delta > MTIME_TOLERANCE_NS
    return source.size != target.size or abs(delta) > MTIME_TOLERANCE_NS


def sync_tree(
    source: Endpoint,
    target: Endpoint,
    source_handler: TransferHandler,
    target_handler: TransferHandler,
    *,
    newer_only: bool = False,
) -> TreeReport:
    """Copy what is missing or different at `target`; never deletes anything."""
    report = TreeReport()
    for relative in list(walk(source_handler, source.directory)):
        existing = files_in(target_handler, target.at(relative)["directory"])

        def changed(entry: Entry, existing: dict[str, Entry] = existing) -> bool:
            return needs_copy(entry, existing.get(entry.name), newer_only)

        definition = {
            "type": "transfer",
            "source": {**source.at(relative), "fileRegex": ".*", "error": False},
            "destination": [{**target.at(relative), "createDirectoryIfNotExists": True}],
        }
        result = run_transfer(parse_definition(definition, "sync"), file_filter=changed)
        report.add(relative, result.files, result.bytes)
    return report


def move_tree(
    source: Endpoint,
    target: Endpoint,
    source_handler: TransferHandler,
    *,
    file_regex: str,
    conditionals: dict[str, Any] | None,
    keep: Callable[[Entry], bool] | None = None,
) -> TreeReport:
    """Move the files matching `file_regex` and `conditionals` to the same place under
    `target`: delivered first, the source deleted only after (postCopyAction delete)."""
    report = TreeReport()
    for relative in list(walk(source_handler, source.directory)):
        if not source_handler.list_entries(source.at(relative)["directory"], file_regex):
            continue  # nothing could move: do not create an empty mirror directory
        definition: dict[str, Any] = {
            "type": "transfer",
            "source": {
                **source.at(relative),
                "fileRegex": file_regex,
                "error": False,
                "postCopyAction": {"action": "delete"},
            },
            "destination": [{**target.at(relative), "createDirectoryIfNotExists": True}],
        }
        if conditionals:
            definition["source"]["conditionals"] = conditionals
        result = run_transfer(parse_definition(definition, "tiering"), file_filter=keep)
        if result.files:
            report.add(relative, result.files, result.bytes)
    return report
