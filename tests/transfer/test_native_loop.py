"""The native loop: built here, cleanly; its temporary names are the Python ones; the
paths it is given are checked."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from storeflow.tasks.transfer import names, native


def test_the_native_loop_is_built_here_and_compiles_without_a_warning(tmp_path: Path) -> None:
    # A build that fails falls back to the Python loop without a word: say so here.
    assert native.available()
    source = tmp_path / "copyloop.c"
    source.write_text(native._SOURCE)
    built = subprocess.run(
        [
            "cc",
            *native._CFLAGS,
            "-Wall",
            "-Wextra",
            "-Werror",
            "-o",
            str(tmp_path / "x.so"),
            str(source),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert built.returncode == 0, built.stderr


def test_temporary_names_made_in_c_are_the_ones_python_makes() -> None:
    # Every length around SHA-1's 64-byte blocks (55/56 bytes: the length field's
    # own block), names with a newline, non-ASCII letters and undecodable bytes.
    finals = ["x" * k for k in range(200)] + ["é" * 40, "日本語" * 30, "a\nb", "bad\udcff"]
    made = native.temp_names(finals, b".sf-", 20, b".part")
    assert made is not None
    assert made == [names.temp_name(f).encode() for f in finals]
    assert names.temp_names(finals) == made
    assert all(names.is_temp_name(n.decode()) for n in made)


def test_a_name_with_a_nul_gets_its_temporary_name_from_python() -> None:
    assert native.temp_names(["a\0b"], b".sf-", 20, b".part") is None
    assert names.temp_names(["a\0b", "c"]) == [
        names.temp_name("a\0b").encode(),
        names.temp_name("c").encode(),
    ]


def test_a_path_with_a_nul_is_refused_before_anything_is_copied(tmp_path: Path) -> None:
    (tmp_path / "a").write_bytes(b"x")
    batch = native.Batch([b"a", b"b\0c"], [b"t1", b"t2"], [0, 0], [0, 0], [-1, -1])
    batch.source_dir = batch.target_dir = os.fsencode(tmp_path)
    with pytest.raises(ValueError, match="NUL"):
        native.copy_all(batch)
    with pytest.raises(ValueError, match="NUL"):
        native.rename_all([(b"a", b"x\0y")], os.fsencode(tmp_path))
    assert sorted(os.listdir(tmp_path)) == ["a"]


def test_an_empty_batch_is_copied_and_renamed_as_nothing(tmp_path: Path) -> None:
    native.copy_all(native.Batch([], [], [], [], []))
    native.rename_all([], os.fsencode(tmp_path))
    assert os.listdir(tmp_path) == []


_WITHOUT_NATIVE = """
import os, sys
from storeflow.tasks.transfer import names, native
src, dst = sys.argv[1], sys.argv[2]
stat = os.stat(os.path.join(src, "f"))
temp = names.temp_names(["f"])
batch = native.Batch([b"f"], temp, [stat.st_atime_ns], [stat.st_mtime_ns], [0o600])
batch.source_dir, batch.target_dir = os.fsencode(src), os.fsencode(dst)
native.copy_all(batch)
native.rename_all([(temp[0], b"f")], os.fsencode(dst))
print(native.available(), temp[0].decode())
"""


def test_with_the_native_loop_turned_off_python_copies_the_same(tmp_path: Path) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir()
    dst.mkdir()
    (src / "f").write_bytes(b"content")
    os.utime(src / "f", ns=(1_000_000_001, 2_000_000_002))
    env = {**os.environ, "STOREFLOW_NATIVE_COPY": "off"}
    ran = subprocess.run(
        [sys.executable, "-c", _WITHOUT_NATIVE, str(src), str(dst)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.split() == ["False", names.temp_name("f")]
    assert os.listdir(dst) == ["f"]
    copied = (dst / "f").stat()
    assert (dst / "f").read_bytes() == b"content"
    assert (copied.st_mtime_ns, copied.st_mode & 0o777) == (2_000_000_002, 0o600)


@pytest.mark.parametrize(
    ("copy", "rename"),
    [(native.copy_all, native.rename_all), (native._copy_in_python, native._rename_in_python)],
)
def test_paths_given_as_str_are_the_same_files_as_their_bytes(
    tmp_path: Path, copy: Callable[[native.Batch], None], rename: Callable[..., None]
) -> None:
    # Undecodable bytes come in as str with surrogates (os.fsdecode) and must reach
    # the file system as the same bytes; str and bytes may be mixed in one batch.
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir()
    dst.mkdir()
    raw = [b"plain", "\u00e9t\u00e9".encode(), b"bad\xff"]
    for name in raw:
        with open(os.path.join(os.fsencode(src), name), "wb") as out:
            out.write(name)
    as_str = [os.fsdecode(n) for n in raw]
    temps = names.temp_names(as_str)
    batch = native.Batch(as_str, [temps[0], as_str[1] + ".t", temps[2]], [0] * 3, [0] * 3, [-1] * 3)
    batch.source_dir, batch.target_dir = os.fsencode(src), os.fsencode(dst)
    copy(batch)
    rename(
        [(temps[0], as_str[0]), (as_str[1] + ".t", raw[1]), (temps[2], as_str[2])],
        os.fsencode(dst),
    )
    assert sorted(os.listdir(os.fsencode(dst))) == sorted(raw)
    for name in raw:
        with open(os.path.join(os.fsencode(dst), name), "rb") as copied:
            assert copied.read() == name


def test_without_a_compiler_the_python_loop_runs_and_says_why(tmp_path: Path) -> None:
    # A fresh cache and a PATH with no cc: the loop cannot be built; the warning says so.
    script = (
        "import logging\n"
        "logging.basicConfig(format='%(levelname)s %(message)s')\n"
        "from storeflow.tasks.transfer import native\n"
        "print(native.available())\n"
    )
    env = {**os.environ, "PATH": str(tmp_path), "XDG_CACHE_HOME": str(tmp_path / "cache")}
    ran = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, env=env
    )
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.split() == ["False"]
    assert "WARNING native copy loop not built" in ran.stderr
    assert "'cc'" in ran.stderr  # the missing program is named
