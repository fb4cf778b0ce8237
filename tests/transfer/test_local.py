"""Local transfers: every definition field, odd names, links, renames, hooks, atomicity."""

from __future__ import annotations

import errno
import functools
import itertools
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from storeflow.models.transfer import parse_definition
from storeflow.tasks.transfer import (
    CopyCounters,
    Entry,
    FileResult,
    deliver,
    finalize,
    plan_transfer,
    run_transfer,
    selection,
)
from storeflow.tasks.transfer.errors import (
    ConditionNotMet,
    DestinationMissing,
    FileWatchTimeout,
    NameCollision,
    NoFilesFound,
    PostCopyRefused,
    ProtocolError,
    UnsafeName,
)
from tests.transfer.conftest import local_def

Dirs = Callable[[str], Path]

ODD_NAMES = [
    "with space.txt",
    "ünïcødé-文件.txt",
    "-leading-dash.txt",
    "$(touch pwned);`id`|&>.txt",
    "quote'\"*?[x].txt",
    "new\nline.txt",
]


def write(directory: Path, name: str, data: bytes = b"data", mtime: float | None = None) -> Path:
    path = directory / name
    path.write_bytes(data)
    if mtime is not None:
        os.utime(path, (mtime, mtime))
    return path


def names(directory: Path) -> list[str]:
    return sorted(os.listdir(directory))


def test_odd_names_copied_with_content_and_mtime(dirs: Dirs) -> None:
    src, dst = dirs("src"), dirs("dst")
    for i, name in enumerate(ODD_NAMES):
        write(src, name, name.encode() * 100, mtime=1_000_000_000 + i)
    result = run_transfer(parse_definition(local_def(src, dst)))
    assert sorted(result.files) == sorted(ODD_NAMES)
    assert names(dst) == sorted(ODD_NAMES)
    for i, name in enumerate(ODD_NAMES):
        assert (dst / name).read_bytes() == name.encode() * 100
        assert (dst / name).stat().st_mtime == 1_000_000_000 + i
    assert not (Path.cwd() / "pwned").exists()
    assert names(src) == sorted(ODD_NAMES)  # no postCopyAction: source untouched


def test_file_regex_matches_whole_name(dirs: Dirs) -> None:
    src, dst = dirs("src"), dirs("dst")
    for name in ("a.txt", "a.txt.tmp", "xa.txt"):
        write(src, name)
    run_transfer(parse_definition(local_def(src, dst, fileRegex=r"a\.txt")))
    assert names(dst) == ["a.txt"]


def test_size_gt_zero_excludes_empty_and_lt_bounds(dirs: Dirs) -> None:
    src, dst = dirs("src"), dirs("dst")
    write(src, "empty", b"")
    write(src, "small", b"x" * 10)
    write(src, "big", b"x" * 100)
    cond = {"size": {"gt": 0, "lt": 100}}
    run_transfer(parse_definition(local_def(src, dst, conditionals=cond)))
    assert names(dst) == ["small"]


def test_age_bounds(dirs: Dirs) -> None:
    src, dst = dirs("src"), dirs("dst")
    now = time.time()
    write(src, "fresh", mtime=now)
    write(src, "hour", mtime=now - 3600)
    write(src, "week", mtime=now - 7 * 86400)
    cond = {"age": {"gt": 600, "lt": 86400}}
    run_transfer(parse_definition(local_def(src, dst, conditionals=cond)))
    assert names(dst) == ["hour"]


def test_count_bounds(dirs: Dirs) -> None:
    src, dst = dirs("src"), dirs("dst")
    for i in range(3):
        write(src, f"f{i}")
    with pytest.raises(ConditionNotMet, match="minCount is 4"):
        plan_transfer(
            parse_definition(local_def(src, dst, conditionals={"count": {"minCount": 4}}))
        )
    with pytest.raises(ConditionNotMet, match="maxCount is 2"):
        plan_transfer(
            parse_definition(local_def(src, dst, conditionals={"count": {"maxCount": 2}}))
        )
    cond = {"count": {"minCount": 3, "maxCount": 3}}
    assert len(plan_transfer(parse_definition(local_def(src, dst, conditionals=cond))).files) == 3
    assert names(dst) == []  # planning copies nothing


def test_no_files_is_an_error_unless_error_false(dirs: Dirs) -> None:
    src, dst = dirs("src"), dirs("dst")
    with pytest.raises(NoFilesFound, match="no file in"):
        run_transfer(parse_definition(local_def(src, dst)))
    result = run_transfer(parse_definition(local_def(src, dst, error=False)))
    assert result.files == ()


def test_directories_and_links_out_of_tree_are_not_followed(dirs: Dirs, tmp_path: Path) -> None:
    src, dst, outside = dirs("src"), dirs("dst"), dirs("outside")
    write(outside, "secret", b"secret")
    write(src, "real", b"real")
    (src / "subdir").mkdir()
    write(src / "subdir", "nested", b"nested")
    (src / "to-secret").symlink_to(outside / "secret")
    (src / "to-secret-rel").symlink_to("../outside/secret")
    (src / "to-etc").symlink_to("/etc/passwd")
    (src / "to-outside-dir").symlink_to(outside)
    (src / "to-real").symlink_to("real")
    (src / "to-nested").symlink_to("subdir/nested")
    (src / "dangling").symlink_to("nowhere")
    run_transfer(parse_definition(local_def(src, dst)))
    assert names(dst) == ["real", "to-nested", "to-real"]
    assert (dst / "to-real").read_bytes() == b"real"
    assert not (dst / "to-real").is_symlink()


def test_destination_rename_and_traversal_refused(dirs: Dirs) -> None:
    src, dst = dirs("src"), dirs("dst")
    write(src, "report.csv")
    d = local_def(src, dst)
    d["destination"][0]["rename"] = {"pattern": r"^(.*)\.csv$", "sub": r"\1-2024.csv"}
    run_transfer(parse_definition(d))
    assert names(dst) == ["report-2024.csv"]
    for sub in ("../escaped.csv", "/etc/evil", "a/b", "..", ""):
        d["destination"][0]["rename"] = {"pattern": r"^.*$", "sub": sub}
        with pytest.raises(UnsafeName):
            plan_transfer(parse_definition(d))
    assert names(dst.parent) == ["dst", "src"]


def test_rename_collision_refused_before_copy(dirs: Dirs) -> None:
    src, dst = dirs("src"), dirs("dst")
    write(src, "a1")
    write(src, "a2")
    d = local_def(src, dst)
    d["destination"][0]["rename"] = {"pattern": r"\d", "sub": ""}
    with pytest.raises(NameCollision, match="would both be delivered as 'a'"):
        run_transfer(parse_definition(d))
    assert names(dst) == []


def test_missing_destination_refused_or_created(dirs: Dirs, tmp_path: Path) -> None:
    src = dirs("src")
    write(src, "f")
    d = local_def(src, tmp_path / "new" / "deep")
    with pytest.raises(DestinationMissing, match="createDirectoryIfNotExists"):
        run_transfer(parse_definition(d))
    d["destination"][0]["createDirectoryIfNotExists"] = True
    run_transfer(parse_definition(d))
    assert names(tmp_path / "new" / "deep") == ["f"]


def test_mode_and_flag(dirs: Dirs) -> None:
    src, dst = dirs("src"), dirs("dst")
    write(src, "f")
    d = local_def(src, dst)
    d["destination"][0]["mode"] = "0640"
    d["destination"][0]["flags"] = {"fullPath": str(dst / "flags" / "DONE")}
    run_transfer(parse_definition(d))
    assert (dst / "f").stat().st_mode & 0o777 == 0o640
    assert (dst / "flags" / "DONE").exists()


def test_two_destinations_then_post_copy_delete(dirs: Dirs) -> None:
    src, d1, d2 = dirs("src"), dirs("d1"), dirs("d2")
    for i in range(5):
        write(src, f"f{i}", bytes([i]) * 1000)
    d = local_def(src, [d1, d2], postCopyAction={"action": "delete"})
    run_transfer(parse_definition(d))
    assert names(d1) == names(d2) == [f"f{i}" for i in range(5)]
    assert names(src) == []


def test_post_copy_delete_waits_for_every_destination(dirs: Dirs, tmp_path: Path) -> None:
    src, d1 = dirs("src"), dirs("d1")
    write(src, "f")
    blocked = tmp_path / "blocked"
    blocked.mkdir()
    d = local_def(src, [d1, blocked], postCopyAction={"action": "delete"})
    plan = plan_transfer(parse_definition(d))
    blocked.chmod(0o500)
    os.rename(blocked, tmp_path / "gone")  # second destination vanishes mid-transfer
    with pytest.raises(ProtocolError, match=r"^local: create '.*/blocked/[^/]+' failed: No such"):
        deliver(plan)
    assert names(src) == ["f"]
    assert names(d1) == []  # nothing under a final name, temp files removed


def test_post_copy_move_creates_target_up_front(dirs: Dirs, tmp_path: Path) -> None:
    src, dst = dirs("src"), dirs("dst")
    write(src, "a.csv")
    archive = tmp_path / "archive" / "2024"
    d = local_def(src, dst, postCopyAction={"action": "move", "destination": str(archive)})
    plan = plan_transfer(parse_definition(d))
    assert archive.is_dir()  # created by the plan, before any copy
    deliver(plan)
    assert names(src) == ["a.csv"]  # not moved before finalize
    finalize(plan)
    assert names(archive) == ["a.csv"] and names(src) == [] and names(dst) == ["a.csv"]


def test_post_copy_move_target_that_cannot_be_created(dirs: Dirs, tmp_path: Path) -> None:
    src, dst = dirs("src"), dirs("dst")
    write(src, "a.csv")
    (tmp_path / "file").write_text("not a dir")
    d = local_def(
        src, dst, postCopyAction={"action": "move", "destination": str(tmp_path / "file" / "x")}
    )
    with pytest.raises(PostCopyRefused, match="cannot be created"):
        run_transfer(parse_definition(d))
    assert names(dst) == [] and names(src) == ["a.csv"]


def test_post_copy_rename_and_traversal(dirs: Dirs, tmp_path: Path) -> None:
    src, dst = dirs("src"), dirs("dst")
    write(src, "a.csv")
    action = {"action": "rename", "pattern": r"\.csv$", "sub": ".done"}
    run_transfer(parse_definition(local_def(src, dst, postCopyAction=action)))
    assert names(src) == ["a.done"]
    action = {"action": "rename", "pattern": "^.*$", "sub": "../../escape"}
    with pytest.raises(UnsafeName):
        run_transfer(parse_definition(local_def(src, dst, postCopyAction=action)))
    assert names(src) == ["a.done"]


def test_destination_equal_to_source_refused(dirs: Dirs) -> None:
    src = dirs("src")
    write(src, "f", b"precious")
    with pytest.raises(NameCollision, match="overwrite itself"):
        run_transfer(parse_definition(local_def(src, src, postCopyAction={"action": "delete"})))
    assert (src / "f").read_bytes() == b"precious"


def test_filter_after_result_and_progress_hooks(dirs: Dirs) -> None:
    src, dst = dirs("src"), dirs("dst")
    for i in range(200):
        write(src, f"f{i:03}", b"x" * i)
    seen: list[Entry] = []
    results: list[FileResult] = []
    progress: list[CopyCounters] = []
    threads: set[str] = set()

    def keep_even(entry: Entry) -> bool:
        seen.append(entry)
        return int(entry.name[1:]) % 2 == 0

    def after(result: FileResult) -> None:
        threads.add(threading.current_thread().name)
        results.append(result)

    result = run_transfer(
        parse_definition(local_def(src, dst)),
        file_filter=keep_even,
        after_result=after,
        progress=progress.append,
        batch_size=10,
        max_workers=4,
    )
    assert len(seen) == 200
    assert len(result.skipped) == 100 and all(int(n[1:]) % 2 for n in result.skipped)
    assert names(dst) == [f"f{i:03}" for i in range(0, 200, 2)]
    assert sorted(r.entry.name for r in results) == names(dst)
    assert results[0].destinations[0].startswith(str(dst))
    assert progress[-1] == CopyCounters(100, 100, sum(range(0, 200, 2)), sum(range(0, 200, 2)))
    assert progress[-1].percent == 100.0
    # One thread of the delivery calls AFTER_RESULT_RECEIVED for every batch, while the
    # copy threads go on copying.
    assert threads == {"sf-copy-after"}


def test_nothing_under_final_name_until_finalize(dirs: Dirs) -> None:
    src, dst = dirs("src"), dirs("dst")
    write(src, "f", b"x" * 10_000)
    plan = plan_transfer(parse_definition(local_def(src, dst)))
    deliver(plan)
    assert [n for n in names(dst) if not n.startswith(".sf-")] == []
    finalize(plan)
    finalize(plan)  # repeating is harmless
    assert names(dst) == ["f"]


def test_in_transit_names_are_never_listed(dirs: Dirs) -> None:
    src, dst = dirs("src"), dirs("dst")
    write(src, ".sf-0123456789abcdef0123.part")
    write(src, "real")
    run_transfer(parse_definition(local_def(src, dst)))
    assert names(dst) == ["real"]


def test_file_watch_trigger_and_watch_only(dirs: Dirs) -> None:
    src, dst, flags = dirs("src"), dirs("dst"), dirs("flags")
    write(src, "data.csv")
    watch = {"timeout": 5, "directory": str(flags), "fileRegex": r"go\.flag"}
    threading.Timer(0.3, lambda: write(flags, "go.flag")).start()
    result = run_transfer(parse_definition(local_def(src, dst, fileWatch=watch)), poll_interval=0.1)
    assert result.watched == ("go.flag",) and names(dst) == ["data.csv"]

    watch_only = {"timeout": 5, "watchOnly": True}
    d = local_def(src, dst, fileWatch=watch_only, fileRegex=r"late\.csv")
    d["destination"] = []
    threading.Timer(0.2, lambda: write(src, "late.csv")).start()
    result = run_transfer(parse_definition(d), poll_interval=0.1)
    assert result.watched == ("late.csv",) and result.files == ()


def test_file_watch_waits_until_file_stops_growing(
    dirs: Dirs, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The file grows by one chunk between every two polls (the watch's own sleep is
    where the writer runs), so no poll pair sees it stable until the last chunk: no
    race between a writer thread and the stable-size window, on any machine speed."""
    src, dst = dirs("src"), dirs("dst")
    path = src / "growing"
    path.write_bytes(b"x" * 1000)
    chunks = iter(range(1, 8))
    polls: list[int] = []

    def writer_runs_between_polls(seconds: float) -> None:
        polls.append(path.stat().st_size)
        if next(chunks, None) is not None:
            with open(path, "ab") as out:
                out.write(b"x" * 1000)
            # Same size is not enough: give each chunk a distinct mtime as well.
            os.utime(path, ns=(len(polls) * 10**9, len(polls) * 10**9))

    real_watch = selection.watch
    monkeypatch.setattr(
        selection, "watch", functools.partial(real_watch, sleep=writer_runs_between_polls)
    )
    result = run_transfer(
        parse_definition(local_def(src, dst, fileWatch={"timeout": 10})), poll_interval=0.4
    )
    assert result.files == ("growing",)
    assert (dst / "growing").stat().st_size == 8000
    # Eight polls saw it grow, the ninth saw it unchanged and released it.
    assert polls == [1000 * n for n in range(1, 9)]


def test_file_watch_times_out(dirs: Dirs) -> None:
    src, dst = dirs("src"), dirs("dst")
    with pytest.raises(FileWatchTimeout, match=r"within 0\.3s"):
        run_transfer(
            parse_definition(local_def(src, dst, fileWatch={"timeout": 0.3})), poll_interval=0.1
        )


def test_progress_counts_every_destination_and_the_inside_of_big_files(dirs: Dirs) -> None:
    """The totals cover each destination's copy; a big file is counted as it is copied
    (what the progress artifact relies on); interval 0 reports each step."""
    from storeflow.tasks.transfer.streams import CHUNK

    src, d1, d2 = dirs("src"), dirs("d1"), dirs("d2")
    big = os.urandom(CHUNK) * 3
    write(src, "big.bin", big)
    write(src, "a", b"aaaa")
    write(src, "b", b"bb")
    seen: list[CopyCounters] = []
    plan = plan_transfer(parse_definition(local_def(src, [d1, d2])))
    deliver(plan, progress=seen.append, progress_interval=0, max_workers=1)
    finalize(plan)

    total = 2 * (len(big) + 6)
    final = seen[-1]
    assert (final.files_done, final.files_total) == (3, 3)
    assert (final.bytes_done, final.bytes_total) == (total, total)
    assert len(seen) > 2  # not only the final report
    # The big file's bytes are reported as each destination's copy lands, not once at
    # the end of the file (small files are counted once per batch).
    done = [0] + [c.bytes_done for c in seen]
    steps = [after - before for before, after in itertools.pairwise(done)]
    assert len(big) in steps, done
    assert [c.bytes_done for c in seen] == sorted(c.bytes_done for c in seen)


def test_a_big_file_is_read_and_written_where_the_kernel_cannot_copy_it(
    dirs: Dirs, monkeypatch: pytest.MonkeyPatch
) -> None:
    """copy_file_range refused (EXDEV: filesystems the kernel cannot copy between): the
    file is read and written instead, whole, its mtime kept and its bytes counted as
    they land; an error of the copy itself is not taken for that."""
    from storeflow.tasks.transfer.streams import CHUNK

    src, dst = dirs("src"), dirs("dst")
    big = os.urandom(CHUNK + 12345)
    write(src, "big.bin", big)
    os.utime(src / "big.bin", ns=(1_500_000_000_123_456_789, 1_500_000_000_123_456_789))

    def refused(*args: object) -> int:
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(os, "copy_file_range", refused)
    seen: list[CopyCounters] = []
    plan = plan_transfer(parse_definition(local_def(src, dst)))
    deliver(plan, progress=seen.append, progress_interval=0, max_workers=1)
    finalize(plan)

    assert (dst / "big.bin").read_bytes() == big
    assert (dst / "big.bin").stat().st_mtime_ns == 1_500_000_000_123_456_789
    done = [0] + [c.bytes_done for c in seen]
    steps = [after - before for before, after in itertools.pairwise(done) if after > before]
    assert sum(steps) == len(big) and max(steps) <= 1 << 20, steps

    def broken(*args: object) -> int:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "copy_file_range", broken)
    again = dirs("again")
    with pytest.raises(ProtocolError, match="Input/output error"):
        run_transfer(parse_definition(local_def(src, again)), max_workers=1)
    assert os.listdir(again) == []


def test_progress_interval_throttles_to_the_final_report(dirs: Dirs) -> None:
    src, dst = dirs("src"), dirs("dst")
    for i in range(5):
        write(src, f"f{i}", b"x" * 10)
    seen: list[CopyCounters] = []
    plan = plan_transfer(parse_definition(local_def(src, dst)))
    started = time.monotonic()
    delivery = deliver(plan, progress=seen.append, progress_interval=3600, max_workers=1)
    took = time.monotonic() - started
    assert (delivery.files, delivery.bytes) == (5, 50)
    assert 0 <= delivery.seconds <= took  # its own wall time, for the summary
    assert 1 <= len(seen) <= 2  # at most one before the final one, in an hour
    assert (seen[-1].files_done, seen[-1].bytes_done) == (5, 50)


@pytest.mark.parametrize(("action", "durable"), [(None, False), ("delete", True)])
def test_writes_are_made_durable_only_before_a_source_delete(
    dirs: Dirs, action: str | None, durable: bool
) -> None:
    """The source goes away only after its copies are on stable storage; without a
    delete, no fsync slows the copy."""
    from storeflow.tasks.transfer.registry import open_handler

    src, d1, d2 = dirs("src"), dirs("d1"), dirs("d2")
    write(src, "f")
    extra = {"postCopyAction": {"action": action}} if action else {}
    plan = plan_transfer(parse_definition(local_def(src, [d1, d2], **extra)))
    opened: list[Any] = []

    def recording(spec: Any) -> Any:
        handler = open_handler(spec)
        opened.append(handler)
        return handler

    deliver(plan, open_handler=recording)
    finalize(plan)
    destinations = [h for h in opened if hasattr(h, "sync_writes")][1:]  # after the source
    assert len(destinations) == 2
    assert [h.sync_writes for h in destinations] == [durable, durable]
    assert names(d1) == names(d2) == ["f"]


@pytest.mark.parametrize(
    ("action", "synced"),
    [({"action": "delete"}, 1), ({"action": "move", "destination": "ARCHIVE"}, 0), (None, 0)],
)
def test_destinations_are_synced_before_the_source_is_deleted_and_only_then(
    dirs: Dirs, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, action: Any, synced: int
) -> None:
    """A sync of every destination before the source goes (its data then exists only
    there); none for a move or no action: a sync flushes the whole machine's caches."""
    from storeflow.tasks.transfer.local import LocalTransfer

    flushed: list[object] = []
    monkeypatch.setattr(LocalTransfer, "flush", lambda self: flushed.append(self))
    src, dst = dirs("src"), dirs("dst")
    write(src, "a.csv")
    source = {}
    if action is not None:
        source["postCopyAction"] = {
            k: str(tmp_path / "archive") if v == "ARCHIVE" else v for k, v in action.items()
        }
    run_transfer(parse_definition(local_def(src, dst, **source)))
    assert names(dst) == ["a.csv"]
    assert len(flushed) == synced
