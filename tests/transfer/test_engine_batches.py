"""The engine's batch paths: handlers opened once per run, FILTER and AFTER_RESULT_RECEIVED
a batch at a time, the native copy loop (and its Python twin) and its failures."""

from __future__ import annotations

import dataclasses
import json
import os
import pickle
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest

from storeflow.models.transfer import parse_definition
from storeflow.tasks.transfer import (
    Entry,
    FileResult,
    PlannedFile,
    deliver,
    finalize,
    native,
    plan_transfer,
    run_transfer,
)
from storeflow.tasks.transfer.engine import FILTER_BATCH, open_handlers
from storeflow.tasks.transfer.entries import Kind
from storeflow.tasks.transfer.errors import ProtocolError
from storeflow.tasks.transfer.handler import Spec, TransferHandler
from storeflow.tasks.transfer.registry import open_handler
from tests.transfer.conftest import local_def

Dirs = Callable[[str], Path]


def fill(directory: Path, count: int) -> None:
    for i in range(count):
        path = directory / f"f{i:04}"
        path.write_bytes(bytes([i % 256]) * (i + 1))
        os.utime(path, ns=(1_600_000_000_000_000_000 + i, 1_700_000_000_123_456_789 + i))


class Counting:
    """A handler factory that counts handlers opened and closed."""

    def __init__(self) -> None:
        self.opened: list[TransferHandler] = []
        self.closed = 0

    def __call__(self, spec: Spec) -> TransferHandler:
        handler = open_handler(spec)
        original = handler.tidy

        def tidy() -> None:
            self.closed += 1
            original()

        handler.tidy = tidy  # type: ignore[method-assign]
        self.opened.append(handler)
        return handler


def test_a_run_opens_each_handler_once(dirs: Dirs) -> None:
    src, d1, d2 = dirs("src"), dirs("d1"), dirs("d2")
    fill(src, 5)
    counting = Counting()
    result = run_transfer(parse_definition(local_def(src, [d1, d2])), open_handler=counting)
    assert len(result.files) == 5
    assert len(counting.opened) == 3  # source + two destinations, for plan, deliver, finalize
    assert counting.closed == 3


def test_steps_given_handlers_leave_them_open(dirs: Dirs) -> None:
    src, dst = dirs("src"), dirs("dst")
    fill(src, 3)
    counting = Counting()
    definition = parse_definition(local_def(src, dst))
    with open_handlers(definition, counting) as handlers:
        plan = plan_transfer(definition, handlers=handlers)
        deliver(plan, handlers=handlers)
        finalize(plan, handlers=handlers)
        assert counting.closed == 0
    assert (len(counting.opened), counting.closed) == (2, 2)
    assert sorted(os.listdir(dst)) == ["f0000", "f0001", "f0002"]
    # Standalone, each step still opens and closes its own.
    alone = Counting()
    plan = plan_transfer(definition, open_handler=alone)
    assert (len(alone.opened), alone.closed) == (2, 2)


def test_batch_filter_sees_batches_and_skips(dirs: Dirs) -> None:
    src, dst = dirs("src"), dirs("dst")
    count = FILTER_BATCH + 10
    fill(src, count)
    sizes: list[int] = []

    def odd_out(entries: Sequence[Entry]) -> list[bool]:
        sizes.append(len(entries))
        return [int(e.name[1:]) % 2 == 0 for e in entries]

    result = run_transfer(parse_definition(local_def(src, dst)), batch_filter=odd_out)
    assert sizes == [FILTER_BATCH, 10]
    assert len(result.files) == (count + 1) // 2
    assert len(result.skipped) == count // 2
    assert sorted(os.listdir(dst)) == sorted(result.files)


class Chunked:
    """A batch filter that also takes its chunks as a stream (as the transfer's
    callbacks do): refuses names in ``refuse``, fails at chunk ``fail_at``."""

    def __init__(self, refuse: set[str], fail_at: int | None = None) -> None:
        self.refuse = refuse
        self.fail_at = fail_at
        self.streamed: list[int] = []

    def __call__(self, entries: Sequence[Entry]) -> list[bool]:
        raise AssertionError("a chunked filter is given its chunks as a stream")

    def chunks(self, chunks: Iterator[Sequence[Entry]]) -> Iterator[list[bool]]:
        for index, entries in enumerate(chunks):
            if index == self.fail_at:
                raise RuntimeError(f"filter broke at chunk {index}")
            self.streamed.append(len(entries))
            yield [e.name not in self.refuse for e in entries]


def test_a_chunked_filter_gets_every_chunk_as_a_stream_and_refuses_in_later_ones(
    dirs: Dirs,
) -> None:
    src, dst = dirs("src"), dirs("dst")
    count = 2 * FILTER_BATCH + 5
    fill(src, count)
    late = {f"f{FILTER_BATCH * 2 + 1:04}", f"f{FILTER_BATCH + 3:04}", "f0000"}
    chunked = Chunked(late)
    result = run_transfer(parse_definition(local_def(src, dst)), batch_filter=chunked)
    assert chunked.streamed == [FILTER_BATCH, FILTER_BATCH, 5]
    assert sorted(result.skipped) == sorted(late)
    expected = [f"f{i:04}" for i in range(count)]
    assert sorted(os.listdir(dst)) == [name for name in expected if name not in late]


def test_a_chunked_filter_failing_in_a_later_chunk_stops_the_transfer_and_leaves_nothing(
    dirs: Dirs,
) -> None:
    src, dst = dirs("src"), dirs("dst")
    fill(src, 2 * FILTER_BATCH + 5)
    chunked = Chunked(set(), fail_at=2)
    with pytest.raises(RuntimeError, match="filter broke at chunk 2"):
        run_transfer(parse_definition(local_def(src, dst)), batch_filter=chunked)
    assert chunked.streamed == [FILTER_BATCH, FILTER_BATCH]
    assert os.listdir(dst) == []


def test_a_batch_filter_answering_the_wrong_count_is_refused(dirs: Dirs) -> None:
    src, dst = dirs("src"), dirs("dst")
    fill(src, 3)
    with pytest.raises(ValueError, match="2 verdicts for 3 files"):
        plan_transfer(parse_definition(local_def(src, dst)), batch_filter=lambda e: [True, True])
    assert os.listdir(dst) == []


def test_after_results_once_per_batch_with_every_file(dirs: Dirs) -> None:
    src, dst = dirs("src"), dirs("dst")
    fill(src, 25)
    batches: list[list[FileResult]] = []
    each: list[FileResult] = []
    result = run_transfer(
        parse_definition(local_def(src, dst)),
        after_results=lambda results: batches.append(list(results)),
        after_result=each.append,
        batch_size=10,
        max_workers=2,
    )
    assert sorted(len(b) for b in batches) == [5, 10, 10]
    delivered = sorted(r.entry.name for b in batches for r in b)
    assert delivered == sorted(result.files) == sorted(r.entry.name for r in each)
    assert len(result.delivered) == 25
    # When AFTER_RESULT_RECEIVED runs, the file is still under its temporary name.
    first = batches[0][0]
    assert first.destinations == (str(dst / first.entry.name),)


@pytest.mark.parametrize("workers", [1, 3])
def test_native_copy_keeps_content_mtime_and_mode(dirs: Dirs, workers: int) -> None:
    src, d1, d2 = dirs("src"), dirs("d1"), dirs("d2")
    fill(src, 40)
    d = local_def(src, [d1, d2])
    d["destination"][1]["mode"] = "600"
    d["destination"][1]["rename"] = {"pattern": "^f", "sub": "g"}
    run_transfer(parse_definition(d), max_workers=workers, batch_size=7)
    for i in range(40):
        original = src / f"f{i:04}"
        for copy in (d1 / f"f{i:04}", d2 / f"g{i:04}"):
            assert copy.read_bytes() == original.read_bytes()
            assert copy.stat().st_mtime_ns == original.stat().st_mtime_ns
    assert stat.S_IMODE((d2 / "g0000").stat().st_mode) == 0o600
    assert not [n for n in os.listdir(d1) + os.listdir(d2) if n.startswith(".sf-")]


def test_python_loop_matches_the_native_one(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    fill(src, 4)
    # Before 1970, with a fraction of a second: negative nanoseconds.
    os.utime(src / "f0001", ns=(-1_234_567_891, -86_400_000_000_001))
    names = sorted(os.listdir(src))
    # Stat once: reading a source may move its atime (relatime).
    stats = [(src / n).stat() for n in names]

    def batch(target: Path) -> native.Batch:
        target.mkdir()
        return native.Batch(
            [os.fsencode(src / n) for n in names],
            [os.fsencode(target / n) for n in names],
            [s.st_atime_ns for s in stats],
            [s.st_mtime_ns for s in stats],
            [0o640] * len(names),
        )

    native.copy_all(batch(tmp_path / "a"))
    native._copy_in_python(batch(tmp_path / "b"))
    for name in names:
        a, b = (tmp_path / "a" / name).stat(), (tmp_path / "b" / name).stat()
        assert (a.st_size, a.st_mtime_ns, a.st_atime_ns, stat.S_IMODE(a.st_mode)) == (
            b.st_size,
            b.st_mtime_ns,
            stats[names.index(name)].st_atime_ns,
            0o640,
        )
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


@pytest.mark.parametrize("copy", [native.copy_all, native._copy_in_python])
def test_copy_failure_names_the_file_and_step(tmp_path: Path, copy: Callable[..., None]) -> None:
    (tmp_path / "ok").write_bytes(b"x")
    job = native.Batch(
        [os.fsencode(tmp_path / "ok"), os.fsencode(tmp_path / "missing")],
        [os.fsencode(tmp_path / "ok.copy"), os.fsencode(tmp_path / "missing.copy")],
        [0, 0],
        [0, 0],
        [-1, -1],
    )
    with pytest.raises(native.CopyFailed) as failed:
        copy(job)
    assert (failed.value.index, failed.value.operation) == (1, "open")
    assert failed.value.reason == os.strerror(2)
    assert (tmp_path / "ok.copy").read_bytes() == b"x"


@pytest.mark.parametrize("copy", [native.copy_all, native._copy_in_python])
def test_sizes_from_the_listing_still_copy_each_file_to_its_end(
    tmp_path: Path, copy: Callable[..., None]
) -> None:
    """The sizes a batch carries (as listed) spare the call that finds the end; a file
    that grew or shrank since, or is empty, is copied as it is when copied."""
    contents = {b"same": b"s" * 4096, b"grew": b"g" * 70_000, b"shrank": b"k" * 10, b"empty": b""}
    listed = {b"same": 4096, b"grew": 4096, b"shrank": 4096, b"empty": 0}
    for name, data in contents.items():
        (tmp_path / os.fsdecode(name)).write_bytes(data)
    names = list(contents)
    job = native.Batch(
        names,
        [name + b".copy" for name in names],
        [0] * len(names),
        [0] * len(names),
        [-1] * len(names),
        source_dir=os.fsencode(tmp_path),
        target_dir=os.fsencode(tmp_path),
        sizes=[listed[name] for name in names],
    )
    copy(job)
    for name, data in contents.items():
        assert (tmp_path / (os.fsdecode(name) + ".copy")).read_bytes() == data


def test_a_file_that_grew_after_planning_is_delivered_whole(dirs: Dirs) -> None:
    src, dst = dirs("src"), dirs("dst")
    fill(src, 10)
    plan = plan_transfer(parse_definition(local_def(src, dst)))
    (src / "f0003").write_bytes(b"grown" * 20_000)
    (src / "f0007").write_bytes(b"")
    deliver(plan, batch_size=4, max_workers=2)
    finalize(plan)
    assert (dst / "f0003").read_bytes() == b"grown" * 20_000
    assert (dst / "f0007").read_bytes() == b""
    assert (dst / "f0005").read_bytes() == bytes([5]) * 6


def test_a_source_vanishing_mid_copy_fails_cleanly(dirs: Dirs) -> None:
    src, dst = dirs("src"), dirs("dst")
    fill(src, 30)
    plan = plan_transfer(parse_definition(local_def(src, dst)))
    os.unlink(src / "f0017")
    with pytest.raises(ProtocolError, match=r"open .*f0017.* failed: No such file"):
        deliver(plan, batch_size=8, max_workers=2)
    assert os.listdir(dst) == []  # every temporary file of the plan removed


def test_rename_into_place_is_repeatable(tmp_path: Path) -> None:
    (tmp_path / "t1").write_bytes(b"1")
    (tmp_path / "f2").write_bytes(b"2")  # moved by an earlier attempt
    pairs = [
        (os.fsencode(tmp_path / "t1"), os.fsencode(tmp_path / "f1")),
        (os.fsencode(tmp_path / "t2"), os.fsencode(tmp_path / "f2")),
    ]
    native.rename_all(pairs)
    native.rename_all(pairs)
    assert sorted(os.listdir(tmp_path)) == ["f1", "f2"]
    with pytest.raises(native.CopyFailed):
        native.rename_all([(os.fsencode(tmp_path / "t3"), os.fsencode(tmp_path / "f3"))])


@pytest.mark.parametrize("copy", [native.copy_all, native._copy_in_python])
def test_names_relative_to_directories_copy_like_paths(
    tmp_path: Path, copy: Callable[..., None]
) -> None:
    """The engine hands the loop names relative to the source and destination
    directories (an absolute source path, a link resolved elsewhere, still works); a
    link at a target name is never followed."""
    src, dst, elsewhere = tmp_path / "src", tmp_path / "dst", tmp_path / "elsewhere"
    for directory in (src, dst, elsewhere):
        directory.mkdir()
    (src / "a").write_bytes(b"aaa")
    (elsewhere / "b").write_bytes(b"bb")
    (dst / "trap").symlink_to(elsewhere / "b")
    job = native.Batch(
        [b"a", os.fsencode(elsewhere / "b"), b"a"],
        [b".a.tmp", b".b.tmp", b"trap"],
        [0, 0, 0],
        [1_000_000_000, 2_000_000_000, 0],
        [0o600, -1, -1],
        source_dir=os.fsencode(src),
        target_dir=os.fsencode(dst),
    )
    with pytest.raises(native.CopyFailed) as failed:
        copy(job)
    assert (failed.value.index, failed.value.operation) == (2, "create")
    assert (dst / ".a.tmp").read_bytes() == b"aaa"
    assert (dst / ".b.tmp").read_bytes() == b"bb"
    assert (dst / ".a.tmp").stat().st_mtime_ns == 1_000_000_000
    assert stat.S_IMODE((dst / ".a.tmp").stat().st_mode) == 0o600
    assert (elsewhere / "b").read_bytes() == b"bb"  # the link's target untouched


@pytest.mark.parametrize("rename", [native.rename_all, native._rename_in_python])
def test_rename_of_names_in_a_directory_is_repeatable(
    tmp_path: Path, rename: Callable[..., None]
) -> None:
    (tmp_path / "t1").write_bytes(b"1")
    (tmp_path / "f2").write_bytes(b"2")  # moved by an earlier attempt
    pairs = [(b"t1", b"f1"), (b"t2", b"f2")]
    rename(pairs, os.fsencode(tmp_path))
    rename(pairs, os.fsencode(tmp_path))
    assert sorted(os.listdir(tmp_path)) == ["f1", "f2"]
    assert (tmp_path / "f1").read_bytes() == b"1"
    with pytest.raises(native.CopyFailed):
        rename([(b"t3", b"f3")], os.fsencode(tmp_path))


_PLAN_MEMORY = """
import gc, json, sys, tracemalloc
from storeflow.models.transfer import parse_definition
from storeflow.tasks.transfer import plan_transfer
warm, measured = (parse_definition(json.loads(arg)) for arg in sys.argv[1:3])
plan_transfer(warm)  # first-call costs (imports, compiled patterns) are not per file
gc.collect()
tracemalloc.start()
before = tracemalloc.get_traced_memory()[0]
plan = plan_transfer(measured)
gc.collect()
print((tracemalloc.get_traced_memory()[0] - before) / len(plan.files))
"""


def test_plan_memory_per_file_is_bounded(dirs: Dirs) -> None:
    """What a plan keeps per file (entry, stat ints, final names), measured: a million
    files must plan in well under 500 MB. Measured in a process of its own: tracemalloc
    counts every thread's allocations, and a suite's process has other tests' threads."""
    src, dst, warm = dirs("src"), dirs("dst"), dirs("warm")
    payload = b"x" * 1024
    for i in range(5000):
        (src / f"file-{i:07}.dat").write_bytes(payload)
    (warm / "one.dat").write_bytes(payload)
    measured = subprocess.run(
        [
            sys.executable,
            "-c",
            _PLAN_MEMORY,
            json.dumps(local_def(warm, dst)),
            json.dumps(local_def(src, dst)),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    per_file = float(measured.stdout)
    # The source path is part of each entry: allow for this test's longer directory.
    allowance = len(str(src)) - len("/dev/shm/storeflow-bench-xxxxxxxx/million")
    assert per_file < 500 + max(0, allowance), per_file


def test_a_planned_file_keeps_no_names_tuple_but_reads_as_one() -> None:
    """Unrenamed files keep only a count of destinations; they still compare, hash,
    pickle and refuse changes as the frozen dataclass they replaced did."""
    entry = Entry("a.dat", Kind.FILE, "/src/a.dat", 3)
    plain = PlannedFile(entry, ("a.dat", "a.dat"))
    counted = PlannedFile.unrenamed(entry, 2)
    renamed = PlannedFile(entry, ("a.dat", "b.dat"))
    assert plain == counted and hash(plain) == hash(counted)
    assert plain.targets == counted.targets == ("a.dat", "a.dat")
    assert [counted.target(i) for i in (0, 1, -1)] == ["a.dat", "a.dat", "a.dat"]
    assert renamed.targets == ("a.dat", "b.dat") and renamed.target(1) == "b.dat"
    assert renamed != plain
    with pytest.raises(IndexError):
        counted.target(2)
    with pytest.raises(dataclasses.FrozenInstanceError):
        counted.entry = entry
    for planned in (counted, renamed):
        copy = pickle.loads(pickle.dumps(planned))
        assert copy == planned and copy.targets == planned.targets
    assert "targets=('a.dat', 'b.dat')" in repr(renamed)


@pytest.mark.parametrize("workers", [1, 2])
def test_an_after_results_failure_ends_the_delivery_and_its_temporary_files(
    dirs: Dirs, workers: int
) -> None:
    """AFTER_RESULT_RECEIVED runs beside the copies: its failure is raised by deliver all
    the same, the copies stop, and every temporary file of the plan is removed."""
    src, dst = dirs("src"), dirs("dst")
    fill(src, 30)
    plan = plan_transfer(parse_definition(local_def(src, dst)))
    calls: list[int] = []

    def broken(results: Sequence[FileResult]) -> None:
        calls.append(len(results))
        raise RuntimeError("callback broke")

    with pytest.raises(RuntimeError, match="callback broke"):
        deliver(plan, after_results=broken, batch_size=4, max_workers=workers)
    assert calls == [4]  # the batches after the failure are not called
    assert os.listdir(dst) == []


class ChunkedAfter:
    """An AFTER_RESULT_RECEIVED hook that takes its batches as a stream (as the
    transfer's callbacks do); fails at the batch holding the file ``fail_at``."""

    def __init__(self, fail_at: str | None = None) -> None:
        self.fail_at = fail_at
        self.seen: list[list[str]] = []

    def __call__(self, results: Sequence[FileResult]) -> None:
        raise AssertionError("a chunked hook is given its batches as a stream")

    def chunks(self, batches: Iterator[Sequence[FileResult]]) -> Iterator[None]:
        for results in batches:
            names = [r.entry.name for r in results]
            if self.fail_at in names:
                raise RuntimeError(f"hook broke at {self.fail_at}")
            self.seen.append(names)
            yield None


@pytest.mark.parametrize("workers", [1, 2])
def test_a_chunked_after_hook_gets_every_delivered_batch_as_one_stream(
    dirs: Dirs, workers: int
) -> None:
    src, dst = dirs("src"), dirs("dst")
    fill(src, 30)
    hook = ChunkedAfter()
    result = run_transfer(
        parse_definition(local_def(src, dst)),
        after_results=hook,
        batch_size=4,
        max_workers=workers,
    )
    # Every file once, in batches of the copies' size or batches joined while waiting.
    assert sorted(n for names in hook.seen for n in names) == [f"f{i:04}" for i in range(30)]
    assert all(len(names) % 4 == 0 or "f0029" in names for names in hook.seen)
    # run_transfer still records every delivered file.
    assert sorted(r.entry.name for r in result.delivered) == [f"f{i:04}" for i in range(30)]


@pytest.mark.parametrize("workers", [1, 2])
def test_a_chunked_after_hook_failing_in_a_later_batch_ends_the_delivery_and_its_temporaries(
    dirs: Dirs, workers: int
) -> None:
    src, dst = dirs("src"), dirs("dst")
    fill(src, 40)
    plan = plan_transfer(parse_definition(local_def(src, dst)))
    hook = ChunkedAfter(fail_at="f0020")
    with pytest.raises(RuntimeError, match="hook broke at f0020"):
        deliver(plan, after_results=hook, batch_size=4, max_workers=workers)
    assert "f0020" not in {n for names in hook.seen for n in names}
    assert os.listdir(dst) == []


def test_batches_waiting_for_a_slow_after_hook_are_joined(dirs: Dirs) -> None:
    """While the callbacks keep up they get the copies' batches; batches that wait for
    them go together, in order, in one call (fewer sandbox round trips)."""
    src, dst = dirs("src"), dirs("dst")
    fill(src, 40)
    plan = plan_transfer(parse_definition(local_def(src, dst)))

    class Slow(ChunkedAfter):
        def chunks(self, batches: Iterator[Sequence[FileResult]]) -> Iterator[None]:
            for results in batches:
                time.sleep(0.05)  # the copies go on meanwhile
                self.seen.append([r.entry.name for r in results])
                yield None

    hook = Slow()
    deliver(plan, after_results=hook, batch_size=4, max_workers=1)
    assert len(hook.seen) < 10  # fewer calls than the copies' ten batches
    assert [n for names in hook.seen for n in names] == [f"f{i:04}" for i in range(40)]


def test_a_chunked_after_hook_beside_a_per_file_hook_is_called_per_batch(dirs: Dirs) -> None:
    """With a per-file hook as well, deliver calls the hooks batch by batch: the chunked
    one is then called, not streamed, and still sees every file."""
    src, dst = dirs("src"), dirs("dst")
    fill(src, 10)

    class Both(ChunkedAfter):
        def __call__(self, results: Sequence[FileResult]) -> None:
            self.seen.append([r.entry.name for r in results])

    hook, each = Both(), []
    result = run_transfer(
        parse_definition(local_def(src, dst)),
        after_results=hook,
        after_result=lambda r: each.append(r.entry.name),
        batch_size=4,
    )
    expected = [f"f{i:04}" for i in range(10)]
    assert sorted(n for names in hook.seen for n in names) == expected
    assert sorted(each) == expected
    assert sorted(r.entry.name for r in result.delivered) == expected
