"""Registering files in the catalog: observe a file on disk, record it, announce it.

The MIME type comes from the file's content (libmagic), never from its name alone.
Each new or changed file emits one Prefect event, `storeflow.file.created` or
`storeflow.file.updated`, whose resource labels are what a deployment trigger (a feed)
matches on.  A file seen again unchanged emits nothing.
"""

import grp
import hashlib
import os
import pwd
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import magic
from prefect.events import emit_event

from storeflow.blocks.config import StoreflowConfig
from storeflow.models import catalog_repository as catalog
from storeflow.models import repository
from storeflow.models.catalog_repository import Change, FileFacts, FileView
from storeflow.models.db import session_scope
from storeflow.models.errors import InvalidInput

CHUNK = 1024 * 1024


def mime_type_of(path: Path) -> str:
    """The MIME type libmagic reads from the file's first bytes."""
    return str(magic.from_file(str(path), mime=True))


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while chunk := stream.read(CHUNK):
            digest.update(chunk)
    return f"sha256:{digest.hexdigest()}"


def _user(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _group(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


def space_of(config: StoreflowConfig, path: Path) -> str:
    """The space a path lies in ("" outside every space)."""
    return _space_below(str(config.storage.spaces_dir.resolve()), str(path))


def _space_below(spaces_root: str, path: str) -> str:
    """The first directory of ``path`` below ``spaces_root`` when ``path`` lies deeper
    than it ("" for the space directory itself, the root, or a path outside).  Strings,
    not pathlib: it runs once per delivered file."""
    prefix = spaces_root if spaces_root.endswith("/") else spaces_root + "/"
    if not path.startswith(prefix):
        return ""
    space, below, _ = path[len(prefix) :].partition("/")
    return space if below else ""


def _spaces_of_files(config: StoreflowConfig) -> Callable[[Path], str]:
    """:func:`space_of` for many files, each given absolute: the spaces' root and each
    directory resolved once, not once a file (a transfer's files share a few; resolving
    is a system call per path component, which made 10,000 delivered files cost a
    second).  A file that is itself a symlink is resolved whole, as space_of would."""
    root = str(config.storage.spaces_dir.resolve())
    directories: dict[str, str] = {}

    def space(path: Path) -> str:
        text = str(path)
        if os.path.islink(text):
            return _space_below(root, os.path.realpath(text))
        parent, name = os.path.split(text)
        directory = directories.get(parent)
        if directory is None:
            directory = directories[parent] = os.path.realpath(parent)
        return _space_below(root, os.path.join(directory, name))

    return space


def observe(config: StoreflowConfig, path: Path, *, checksum: bool = True) -> FileFacts:
    """The catalog's facts about one regular file."""
    resolved = path.expanduser().absolute().resolve()
    if not resolved.exists():
        raise InvalidInput("path", f"{path} does not exist")
    if not resolved.is_file():
        raise InvalidInput("path", f"{path} is not a regular file")
    stat = resolved.stat()
    return FileFacts(
        path=str(resolved),
        space=space_of(config, resolved),
        name=resolved.name,
        dataset=str(resolved.parent),
        mime_type=mime_type_of(resolved),
        size=stat.st_size,
        owner=_user(stat.st_uid),
        group=_group(stat.st_gid),
        mtime=datetime.fromtimestamp(stat.st_mtime, UTC),
        checksum=sha256_of(resolved) if checksum else None,
    )


def file_labels(file: FileView) -> dict[str, str]:
    """The resource of a file's events: its id and labels (strings: triggers match globs)."""
    return {
        "prefect.resource.id": f"storeflow.file.{file.id}",
        "prefect.resource.name": file.name,
        "storeflow.file.id": str(file.id),
        "storeflow.file.space": file.space,
        "storeflow.file.path": file.path,
        "storeflow.file.name": file.name,
        "storeflow.file.mime-type": file.mime_type,
        "storeflow.file.size": str(file.size),
        "storeflow.file.owner": file.owner,
        "storeflow.file.group": file.group,
        "storeflow.file.dataset": file.dataset,
    }


def announce(file: FileView, change: Change) -> None:
    """One event for a new or changed file; nothing for an unchanged one."""
    if change is Change.UNCHANGED:
        return
    payload = {"checksum": file.checksum, "mtime": file.mtime.isoformat()}
    emit_event(event=f"storeflow.file.{change.value}", resource=file_labels(file), payload=payload)


def register(
    config: StoreflowConfig, path: Path, *, checksum: bool = True
) -> tuple[FileView, Change]:
    """Observe `path`, record it in the catalog and announce it if it is new or changed."""
    facts = observe(config, path, checksum=checksum)
    with session_scope(config.database_url) as session:
        file, change = catalog.upsert(session, facts)
    announce(file, change)
    return file, change


#: Files per catalog transaction when a transfer registers what it delivered.
DELIVERY_BATCH = 500


def known_spaces(config: StoreflowConfig) -> set[str]:
    """The names of the spaces storeflow manages (its resource database)."""
    with session_scope(config.database_url) as session:
        return {space.name for space in repository.list_kind(session, "space")}


def register_delivered(
    config: StoreflowConfig, paths: Iterable[Path], *, batch: int | None = None
) -> "ScanCounts":
    """Register files a transfer delivered: those that lie in a known space (others are
    counted as skipped).  One catalog transaction per batch of files, not one per file;
    then one `storeflow.file.created` / `.updated` event per new or changed file.  No
    checksum is computed (the transfer just wrote the bytes; a scan can add it)."""
    batch = batch or DELIVERY_BATCH
    spaces = known_spaces(config)
    space_of_file = _spaces_of_files(config)
    counts = ScanCounts()
    pending: list[FileFacts] = []
    for path in paths:
        resolved = path.absolute()
        if space_of_file(resolved) not in spaces or not resolved.is_file():
            counts.skipped += 1
            continue
        pending.append(observe(config, resolved, checksum=False))
        if len(pending) >= batch:
            _record(config, pending, counts)
            pending = []
    if pending:
        _record(config, pending, counts)
    return counts


def _record(config: StoreflowConfig, facts: list[FileFacts], counts: "ScanCounts") -> None:
    with session_scope(config.database_url) as session:
        recorded = [catalog.upsert(session, f) for f in facts]
    # Announced once committed: a trigger never sees a file the catalog does not have.
    for file, change in recorded:
        announce(file, change)
        counts.add(change)


@dataclass
class ScanCounts:
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    skipped: int = 0

    def add(self, change: Change) -> None:
        if change is Change.CREATED:
            self.created += 1
        elif change is Change.UPDATED:
            self.updated += 1
        else:
            self.unchanged += 1

    def summary(self) -> str:
        return f"{self.created} new, {self.updated} changed, {self.unchanged} unchanged" + (
            f", {self.skipped} skipped" if self.skipped else ""
        )


def scan(config: StoreflowConfig, root: Path, *, checksum: bool = False) -> ScanCounts:
    """Register every regular file under `root`: the safety net for files that arrived
    without storeflow seeing them (written through a CIFS or NFS exposer).  A file whose
    size and mtime match the catalog is not read again.  Hidden files are skipped:
    partial uploads and tools' temporary files are named so."""
    root = root.expanduser().absolute().resolve()
    if not root.is_dir():
        raise InvalidInput("path", f"{root} is not a directory")
    with session_scope(config.database_url) as session:
        known = {
            f.path: (f.size, f.mtime)
            for f in catalog.list_files(session)
            if f.path.startswith(str(root) + os.sep)
        }
    counts = ScanCounts()
    for folder, dirs, names in os.walk(root):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in names:
            path = Path(folder) / name
            if name.startswith(".") or not path.is_file() or path.is_symlink():
                counts.skipped += 1
                continue
            stat = path.stat()
            seen = known.get(str(path))
            if seen is not None and seen == (
                stat.st_size,
                datetime.fromtimestamp(stat.st_mtime, UTC),
            ):
                counts.unchanged += 1
                continue
            _, change = register(config, path, checksum=checksum)
            counts.add(change)
    return counts
