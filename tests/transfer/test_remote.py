"""SMB (private smbd) and NFS (private nfs-ganesha) as sources and destinations."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from storeflow.models.transfer import parse_definition
from storeflow.tasks.transfer import plan_transfer, run_transfer
from storeflow.tasks.transfer.errors import ProtocolError, UnsafeName
from tests.services.fixtures import Served

NAMES = ["with space.txt", "ünïcødé.txt", "-dash.txt", "$(id);`x`&.txt"]


def seed(directory: Path) -> dict[str, bytes]:
    directory.mkdir(parents=True, exist_ok=True)
    files = {name: os.urandom(100 * (i + 1)) for i, name in enumerate(NAMES)}
    files["big.bin"] = os.urandom(5 << 20)  # several NFS/SMB requests
    for i, (name, data) in enumerate(files.items()):
        (directory / name).write_bytes(data)
        os.utime(directory / name, (1_500_000_000 + i, 1_500_000_000 + i))
    return files


def check(directory: Path, files: dict[str, bytes]) -> None:
    assert sorted(os.listdir(directory)) == sorted(files)
    for i, (name, data) in enumerate(files.items()):
        assert (directory / name).read_bytes() == data
        assert (directory / name).stat().st_mtime == 1_500_000_000 + i


@pytest.mark.parametrize("remote", ["smb", "nfs"])
def test_local_to_remote_to_local(
    remote: str,
    request: pytest.FixtureRequest,
    tmp_path: Path,
    unique: str,
) -> None:
    served: Served = request.getfixturevalue(f"{remote}_service")
    protocol: dict[str, Any] = request.getfixturevalue(f"{remote}_protocol")
    files = seed(tmp_path / "src")
    push = {
        "type": "transfer",
        "source": {
            "directory": str(tmp_path / "src"),
            "fileRegex": ".*",
            "protocol": {"name": "local"},
        },
        "destination": [
            {
                "directory": f"/{unique}/in",
                "createDirectoryIfNotExists": True,
                "protocol": protocol,
                "flags": {"fullPath": f"/{unique}/in.done"},
            }
        ],
    }
    run_transfer(parse_definition(push))
    check(served.data / unique / "in", files)
    assert (served.data / unique / "in.done").exists()

    pull = {
        "type": "transfer",
        "source": {
            "directory": f"{unique}/in",
            "fileRegex": ".*",
            "protocol": protocol,
            "postCopyAction": {"action": "move", "destination": f"/{unique}/archive"},
        },
        "destination": [
            {
                "directory": str(tmp_path / "back"),
                "createDirectoryIfNotExists": True,
                "protocol": {"name": "local"},
            }
        ],
    }
    result = run_transfer(parse_definition(pull))
    assert sorted(result.files) == sorted(files)
    check(tmp_path / "back", files)
    assert os.listdir(served.data / unique / "in") == []
    assert sorted(os.listdir(served.data / unique / "archive")) == sorted(files)


def test_smb_to_nfs_with_rename_mode_and_delete(
    smb_service: Served,
    nfs_service: Served,
    smb_protocol: dict[str, Any],
    nfs_protocol: dict[str, Any],
    unique: str,
) -> None:
    files = seed(smb_service.data / unique)
    d = {
        "type": "transfer",
        "source": {
            "directory": unique,
            "fileRegex": r".*\.txt",
            "conditionals": {"size": {"gt": 150}},
            "protocol": smb_protocol,
            "postCopyAction": {"action": "delete"},
        },
        "destination": [
            {
                "directory": f"/{unique}",
                "createDirectoryIfNotExists": True,
                "rename": {"pattern": r"\.txt$", "sub": ".dat"},
                "mode": "0640",
                "protocol": nfs_protocol,
            }
        ],
    }
    run_transfer(parse_definition(d))
    delivered = sorted(os.listdir(nfs_service.data / unique))
    assert delivered == sorted(n.replace(".txt", ".dat") for n in NAMES[1:])
    for name in delivered:
        path = nfs_service.data / unique / name
        assert path.read_bytes() == files[name.replace(".dat", ".txt")]
        assert path.stat().st_mode & 0o777 == 0o640
    assert sorted(os.listdir(smb_service.data / unique)) == ["big.bin", NAMES[0]]


def test_nfs_links_out_of_tree_not_followed(
    nfs_service: Served, nfs_protocol: dict[str, Any], tmp_path: Path, unique: str
) -> None:
    src = nfs_service.data / unique
    src.mkdir()
    (src / "real").write_bytes(b"real")
    (src / "to-real").symlink_to("real")
    (src / "to-etc").symlink_to("/etc/passwd")
    (src / "up").symlink_to("../../../../../../etc/passwd")
    (src / "dir").mkdir()
    d = {
        "type": "transfer",
        "source": {"directory": unique, "fileRegex": ".*", "protocol": nfs_protocol},
        "destination": [{"directory": str(tmp_path), "protocol": {"name": "local"}}],
    }
    run_transfer(parse_definition(d))
    assert sorted(os.listdir(tmp_path)) == ["real", "to-real"]


def test_remote_rename_traversal_refused(
    smb_protocol: dict[str, Any], smb_service: Served, tmp_path: Path, unique: str
) -> None:
    (tmp_path / "f").write_bytes(b"x")
    d = {
        "type": "transfer",
        "source": {"directory": str(tmp_path), "fileRegex": ".*", "protocol": {"name": "local"}},
        "destination": [
            {
                "directory": f"/{unique}",
                "createDirectoryIfNotExists": True,
                "rename": {"pattern": "^f$", "sub": r"..\\..\\evil"},
                "protocol": smb_protocol,
            }
        ],
    }
    with pytest.raises(UnsafeName):
        plan_transfer(parse_definition(d))


def test_wrong_password_names_the_server(smb_protocol: dict[str, Any], tmp_path: Path) -> None:
    smb_protocol["credentials"]["password"] = "wrong"
    d = {
        "type": "transfer",
        "source": {"directory": "/", "fileRegex": ".*", "protocol": smb_protocol},
        "destination": [{"directory": str(tmp_path), "protocol": {"name": "local"}}],
    }
    with pytest.raises(ProtocolError, match=r"smb: connect to '127\.0\.0\.1:\d+'"):
        run_transfer(parse_definition(d))


@pytest.mark.parametrize(("chunk", "depth"), [(64 << 10, 1), (64 << 10, 3), (1 << 20, 4)])
def test_smb_pipelined_write_is_whole_and_counted(
    chunk: int,
    depth: int,
    smb_service: Served,
    smb_protocol: dict[str, Any],
    tmp_path: Path,
    unique: str,
) -> None:
    """Several writes in flight: every byte lands at its offset, each counted once."""
    from storeflow.tasks.transfer.registry import open_handler
    from storeflow.tasks.transfer.smb import pipelined_write

    data = os.urandom((3 << 20) + 12345)  # not a multiple of any chunk
    (tmp_path / "src.bin").write_bytes(data)
    definition = parse_definition(
        {
            "type": "transfer",
            "source": {
                "directory": str(tmp_path),
                "fileRegex": ".*",
                "protocol": {"name": "local"},
            },
            "destination": [
                {
                    "directory": f"/{unique}",
                    "createDirectoryIfNotExists": True,
                    "protocol": smb_protocol,
                }
            ],
        }
    )
    handler = open_handler(definition.destination[0])
    counted: list[int] = []
    try:
        handler.make_dirs(f"/{unique}")
        with (
            open(tmp_path / "src.bin", "rb", buffering=0) as reader,
            handler.open_write(f"/{unique}/out.bin") as writer,
        ):
            written = pipelined_write(reader, writer, counted.append, chunk=chunk, depth=depth)
        # The same connection still works afterwards.
        assert handler.exists(f"/{unique}/out.bin")
    finally:
        handler.tidy()
    assert written == sum(counted) == len(data)
    assert max(counted) <= chunk
    assert (smb_service.data / unique / "out.bin").read_bytes() == data


@pytest.fixture
def smbclient_installed() -> None:
    """No skip: without smbclient the product silently falls back to pipelined writes,
    so the path these tests prove would never be tested where it matters."""
    if shutil.which("smbclient") is None:
        pytest.fail(
            "Samba's smbclient is missing: run scripts/bootstrap.sh "
            "(apt-get install smbclient, listed in scripts/debian-packages.txt)",
            pytrace=False,
        )


needs_smbclient = pytest.mark.usefixtures("smbclient_installed")


@needs_smbclient
@pytest.mark.parametrize("source", ["local", "smb"])
def test_smb_large_upload_through_smbclient(
    source: str,
    smb_service: Served,
    smb_protocol: dict[str, Any],
    tmp_path: Path,
    unique: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Above the threshold smbclient writes the temp name; the file arrives whole, with its
    mtime, only under its final name; the password is never on a command line or in an
    environment, and its auth file is gone afterwards."""
    from storeflow.tasks.transfer import smb, smbput

    monkeypatch.setattr(smb, "SMBCLIENT_THRESHOLD", 2 << 20)
    password = smb_protocol["credentials"]["password"]
    launched: list[tuple[list[str], dict[str, str]]] = []
    real_popen = subprocess.Popen

    def popen(args: list[str], **kwargs: Any) -> Any:
        launched.append((list(args), dict(kwargs["env"])))
        auth = args[args.index("--authentication-file") + 1]
        assert os.stat(auth).st_mode & 0o777 == 0o600
        assert os.stat(os.path.dirname(auth)).st_mode & 0o777 == 0o700
        return real_popen(args, **kwargs)

    monkeypatch.setattr(smbput.subprocess, "Popen", popen)
    big = os.urandom((2 << 20) + 4321)
    small = b"small"
    if source == "local":
        src_dir: Path = tmp_path / "src"
        src_protocol: dict[str, Any] = {"name": "local"}
        src_path = str(src_dir)
    else:
        src_dir = smb_service.data / unique / "src"
        src_protocol = smb_protocol
        src_path = f"/{unique}/src"
    src_dir.mkdir(parents=True)
    (src_dir / "big file.bin").write_bytes(big)
    (src_dir / "small.txt").write_bytes(small)
    os.utime(src_dir / "big file.bin", (1_500_000_000, 1_500_000_123))
    d = {
        "type": "transfer",
        "source": {
            "directory": src_path,
            "fileRegex": ".*",
            "protocol": src_protocol,
            "postCopyAction": {"action": "delete"},  # durable writes: FLUSH after smbclient
        },
        "destination": [
            {
                "directory": f"/{unique}/in dir",
                "createDirectoryIfNotExists": True,
                "protocol": smb_protocol,
            }
        ],
    }
    run_transfer(parse_definition(d))
    out = smb_service.data / unique / "in dir"
    assert sorted(os.listdir(out)) == ["big file.bin", "small.txt"]  # no temp names left
    assert (out / "big file.bin").read_bytes() == big
    assert (out / "big file.bin").stat().st_mtime == 1_500_000_123
    assert (out / "small.txt").read_bytes() == small
    assert os.listdir(src_dir) == []
    assert len(launched) == 1  # the big file only
    args, env = launched[0]
    assert not any(password in a for a in args)
    assert not any(password in v for v in env.values())
    assert not os.path.exists(os.path.dirname(args[args.index("--authentication-file") + 1]))


@needs_smbclient
def test_smbclient_wrong_password_names_the_server_and_leaves_nothing(
    smb_service: Served, smb_protocol: dict[str, Any], tmp_path: Path, unique: str
) -> None:
    from storeflow.tasks.transfer.registry import open_handler

    (tmp_path / "big.bin").write_bytes(os.urandom(3 << 20))
    (smb_service.data / unique).mkdir()
    smb_protocol["credentials"]["password"] = "wrong-password"
    definition = parse_definition(
        {
            "type": "transfer",
            "source": {
                "directory": str(tmp_path),
                "fileRegex": ".*",
                "protocol": {"name": "local"},
            },
            "destination": [{"directory": f"/{unique}", "protocol": smb_protocol}],
        }
    )
    src = open_handler(definition.source)
    dst = open_handler(definition.destination[0])
    dst.smbclient_threshold = 1 << 20  # type: ignore[attr-defined]
    try:
        (entry,) = src.list_entries(str(tmp_path), ".*")
        with pytest.raises(ProtocolError, match=r"smb: connect to '127\.0\.0\.1:\d+'") as caught:
            dst.receive(src, entry, dst.temp_path("big.bin"), None)
    finally:
        src.tidy()
        dst.tidy()
    assert "LOGON_FAILURE" in str(caught.value)
    assert "wrong-password" not in str(caught.value)
    assert os.listdir(smb_service.data / unique) == []
