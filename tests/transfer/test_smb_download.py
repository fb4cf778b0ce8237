"""SMB downloads: pipelined reads (several requests in flight) return every byte in
order on a connection that stays usable; big files come through `smbclient get` and
arrive whole, under their final name only."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from storeflow.models.transfer import parse_definition
from storeflow.tasks.transfer import run_transfer
from tests.services.fixtures import Served


def download(smb_protocol: dict[str, Any], unique: str, dest: Path) -> Any:
    return parse_definition(
        {
            "type": "transfer",
            "source": {"directory": f"/{unique}", "fileRegex": ".*", "protocol": smb_protocol},
            "destination": [{"directory": str(dest), "protocol": {"name": "local"}}],
        }
    )


@pytest.mark.parametrize(("chunk", "depth"), [(1 << 20, 4), (1 << 16, 7), (1 << 20, 1)])
def test_pipelined_read_is_whole_and_in_order(
    chunk: int, depth: int, smb_service: Served, smb_protocol: dict[str, Any], unique: str
) -> None:
    from storeflow.tasks.transfer.registry import open_handler
    from storeflow.tasks.transfer.smb import PipelinedReader

    data = os.urandom((3 << 20) + 4321)  # not a multiple of any chunk
    (smb_service.data / unique).mkdir()
    (smb_service.data / unique / "in.bin").write_bytes(data)
    definition = download(smb_protocol, unique, Path("/tmp"))
    handler = open_handler(definition.source)
    try:
        raw = handler._call(  # type: ignore[attr-defined]
            "open", "in", __import__("smbclient").open_file,
            handler.unc(f"/{unique}/in.bin"), mode="rb", buffering=0,  # type: ignore[attr-defined]
        )  # fmt: skip
        got = bytearray()
        buffer = bytearray(300_000)  # smaller than a chunk: answers are split across calls
        with PipelinedReader(raw, chunk=chunk, depth=depth) as reader:
            while n := reader.readinto(buffer):
                got += buffer[:n]
        assert bytes(got) == data
        assert handler.exists(f"/{unique}/in.bin")  # the connection is still usable
    finally:
        handler.tidy()


def test_big_download_through_smbclient_get(
    smb_service: Served,
    smb_protocol: dict[str, Any],
    unique: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from storeflow.tasks.transfer import smb, smbput

    assert shutil.which("smbclient"), "Samba's smbclient is missing (scripts/bootstrap.sh)"
    monkeypatch.setattr(smb, "SMBCLIENT_THRESHOLD", 2 << 20)
    launched: list[list[str]] = []
    real = subprocess.Popen

    def spy(command: list[str], *args: Any, **kwargs: Any) -> Any:
        launched.append(list(command))
        return real(command, *args, **kwargs)

    monkeypatch.setattr(smbput.subprocess, "Popen", spy)
    big, small = os.urandom((5 << 20) + 7), os.urandom(1000)
    (smb_service.data / unique).mkdir()
    (smb_service.data / unique / "big.bin").write_bytes(big)
    (smb_service.data / unique / "small.bin").write_bytes(small)
    os.utime(smb_service.data / unique / "big.bin", (1_600_000_000, 1_600_000_000))
    dest = tmp_path / "dest"
    dest.mkdir()
    result = run_transfer(download(smb_protocol, unique, dest))
    assert len(result.files) == 2
    assert (dest / "big.bin").read_bytes() == big
    assert (dest / "small.bin").read_bytes() == small
    assert int((dest / "big.bin").stat().st_mtime) == 1_600_000_000
    assert sorted(os.listdir(dest)) == ["big.bin", "small.bin"]  # no temp name left
    # Only the big file went through smbclient, and the password never on its command line.
    assert [c[-1] for c in launched] == ["get big.bin -"]
    assert smb_protocol["credentials"]["password"] not in " ".join(launched[0])
