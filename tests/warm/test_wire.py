"""The warm runner's wire format, private directory and fingerprints, without a runner."""

import os
import socket
from pathlib import Path

import pytest

from storeflow.cli.warm import wire


def test_reader_splits_messages_that_arrive_together_and_joins_split_ones() -> None:
    left, right = socket.socketpair()
    with left, right:
        data = wire.encode({"ok": True, "pid": 7}) + wire.encode({"exit": 3})
        left.sendall(data[:3])  # not even a whole header
        reader = wire.Reader(right)
        left.sendall(data[3:])
        assert reader.receive() == ({"ok": True, "pid": 7}, [])
        assert reader.receive() == ({"exit": 3}, [])
        left.close()
        assert reader.receive() == (None, [])


def test_descriptors_travel_with_a_message(tmp_path: Path) -> None:
    target = tmp_path / "out.txt"
    left, right = socket.socketpair()
    with left, right, target.open("w") as out:
        wire.send(left, {"op": "run"}, fds=[out.fileno()])
        message, fds = wire.Reader(right).receive(with_fds=3)
        assert message == {"op": "run"} and len(fds) == 1
        os.write(fds[0], b"through the passed descriptor")
        os.close(fds[0])
    assert target.read_text() == "through the passed descriptor"


def test_a_message_cut_short_or_oversized_is_an_error() -> None:
    left, right = socket.socketpair()
    with right:
        left.sendall(wire.encode({"op": "status"})[:-2])
        left.close()
        with pytest.raises(wire.WireError, match="mid-message"):
            wire.Reader(right).receive()
    left, right = socket.socketpair()
    with left, right:
        left.sendall((wire.MAX_MESSAGE + 1).to_bytes(4, "big"))
        with pytest.raises(wire.WireError, match="refused"):
            wire.Reader(right).receive()


def test_private_dir_is_made_0700_and_anything_else_is_refused(tmp_path: Path) -> None:
    made = tmp_path / "run" / "storeflow"
    wire.ensure_private_dir(str(made), create=True)
    assert made.stat().st_mode & 0o777 == 0o700
    made.chmod(0o755)
    with pytest.raises(wire.UnsafeRuntimeDir, match="mode 755, must be 700"):
        wire.ensure_private_dir(str(made), create=False)
    made.chmod(0o700)
    link = tmp_path / "link"
    link.symlink_to(made)
    with pytest.raises(wire.UnsafeRuntimeDir, match="not a directory"):
        wire.ensure_private_dir(str(link), create=False)
    with pytest.raises(FileNotFoundError):
        wire.ensure_private_dir(str(tmp_path / "missing"), create=False)


def test_socket_path_is_short_and_one_per_storeflow_home(tmp_path: Path) -> None:
    deep = tmp_path / ("x" * 150)
    env = {"XDG_RUNTIME_DIR": "/run/user/1000", "STOREFLOW_HOME": str(deep)}
    sock, pid = wire.runner_paths(env)
    assert len(sock) < 100 and sock.startswith("/run/user/1000/storeflow/warm-")
    assert pid.endswith(".pid")
    other, _ = wire.runner_paths({**env, "STOREFLOW_HOME": str(tmp_path / "other")})
    assert other != sock


def test_settings_fingerprint_follows_prefect_settings_not_the_rest(tmp_path: Path) -> None:
    env = {"PREFECT_API_URL": "http://127.0.0.1:1/api", "PREFECT_HOME": str(tmp_path), "X": "1"}
    base = wire.settings_fingerprint(env, str(tmp_path))
    assert wire.settings_fingerprint({**env, "X": "2", "TERM": "xterm"}, str(tmp_path)) == base
    assert wire.settings_fingerprint({**env, wire.MODE_ENV: "require"}, str(tmp_path)) == base
    changed = {**env, "PREFECT_API_URL": "http://127.0.0.1:2/api"}
    assert wire.settings_fingerprint(changed, str(tmp_path)) != base
    assert wire.settings_fingerprint({**env, "STOREFLOW_HOOK_DRIVERS": "a"}, str(tmp_path)) != base
    (tmp_path / "profiles.toml").write_text('active = "x"\n')
    assert wire.settings_fingerprint(env, str(tmp_path)) != base
    (tmp_path / "profiles.toml").unlink()
    (tmp_path / "prefect.toml").write_text('[api]\nurl = "x"\n')
    assert wire.settings_fingerprint(env, str(tmp_path)) != base


def test_pyproject_settings_follow_tool_prefect_only(tmp_path: Path) -> None:
    none = wire.pyproject_settings(str(tmp_path))
    (tmp_path / "pyproject.toml").write_text('[project]\ndependencies = ["prefect==3.8.8"]\n')
    assert wire.pyproject_settings(str(tmp_path)) == none
    (tmp_path / "pyproject.toml").write_text('[tool.prefect]\nhome = "/elsewhere"\n')
    assert wire.pyproject_settings(str(tmp_path)) != none
    (tmp_path / "pyproject.toml").unlink()
    os.mkfifo(tmp_path / "pyproject.toml")  # read by the runner: must not block it
    assert wire.pyproject_settings(str(tmp_path)) == none


def test_code_fingerprint_changes_with_any_source_file(tmp_path: Path) -> None:
    (tmp_path / "pkg").mkdir()
    module = tmp_path / "pkg" / "mod.py"
    module.write_text("x = 1\n")
    (tmp_path / "pkg" / "notes.txt").write_text("not code")
    roots = [str(tmp_path / "pkg")]
    before = wire.code_fingerprint(roots)
    (tmp_path / "pkg" / "notes.txt").write_text("still not code")
    assert wire.code_fingerprint(roots) == before
    # The fingerprint is size + mtime (no reading every file on each command). Each
    # change below pins the mtime itself, so the test does not depend on the clock's
    # resolution: a same-size rewrite within one timestamp tick would go unseen.
    stamp = module.stat().st_mtime_ns
    module.write_text("x = 2\n")  # same size
    os.utime(module, ns=(stamp + 10**9, stamp + 10**9))
    after_edit = wire.code_fingerprint(roots)
    assert after_edit != before
    module.write_text("x = 22\n")  # another size, the mtime put back
    os.utime(module, ns=(stamp + 10**9, stamp + 10**9))
    assert wire.code_fingerprint(roots) not in (before, after_edit)
    (tmp_path / "pkg" / "new.py").write_text("")  # a module added
    assert wire.code_fingerprint(roots) != after_edit


def test_every_storeflow_package_is_fingerprinted() -> None:
    """A change to any of storeflow's code makes a runner stale, the CLI's included."""
    import storeflow

    linked = {entry.name for entry in Path(storeflow.__file__).parent.iterdir() if entry.is_dir()}
    linked.discard("__pycache__")
    assert {Path(root).name for root in wire.package_roots()} == linked


def test_mode_is_validated() -> None:
    assert wire.mode({}) == "auto"
    assert wire.mode({wire.MODE_ENV: "OFF"}) == "off"
    with pytest.raises(ValueError, match="STOREFLOW_WARM='sometimes'"):
        wire.mode({wire.MODE_ENV: "sometimes"})
