"""The OTF handler interface: names resolve through entry points, methods keep OTF meaning."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from storeflow.models.transfer import parse_definition
from storeflow.tasks.transfer.errors import UnknownProtocol, UnsupportedOperation
from storeflow.tasks.transfer.handler import TransferHandler
from storeflow.tasks.transfer.local import LocalTransfer
from storeflow.tasks.transfer.nfs import NFSTransfer
from storeflow.tasks.transfer.registry import handler_class
from storeflow.tasks.transfer.smb import SMBTransfer
from tests.transfer.conftest import local_def


def test_entry_points_resolve_otf_and_short_names() -> None:
    assert handler_class("local") is LocalTransfer
    assert handler_class("opentaskpy.remotehandlers.local.LocalTransfer") is LocalTransfer
    assert handler_class("smb") is SMBTransfer
    assert handler_class("nfs") is NFSTransfer
    with pytest.raises(UnknownProtocol, match="known: "):
        handler_class("ftp")


def test_otf_methods(tmp_path: Path) -> None:
    src, dst, stage, done = (tmp_path / n for n in ("src", "dst", "stage", "done"))
    for d in (src, dst, stage):
        d.mkdir()
    for name in ("a.csv", "b.csv", "c.txt"):
        (src / name).write_bytes(name.encode())
    definition = parse_definition(
        local_def(
            src,
            dst,
            fileRegex=r".*\.csv",
            postCopyAction={"action": "move", "destination": str(done)},
        )
    )
    source: TransferHandler = LocalTransfer(definition.source)
    dest: TransferHandler = LocalTransfer(definition.destination[0])
    assert source.supports_direct_transfer()
    listed = source.list_files()
    assert sorted(listed) == ["a.csv", "b.csv"] and listed["a.csv"]["size"] == 5
    assert listed["a.csv"]["age"] >= 0

    assert source.transfer_files(["a.csv"], None, dest) == 0
    assert source.pull_files_to_worker(["b.csv"], str(stage)) == 0
    assert dest.push_files_from_worker(str(stage)) == 0
    assert all(n.startswith(".sf-") for n in os.listdir(dst))
    assert dest.move_files_to_final_location(["a.csv", "b.csv"]) == 0
    assert sorted(os.listdir(dst)) == ["a.csv", "b.csv"]
    assert source.handle_post_copy_action(["a.csv", "b.csv"]) == 0
    assert sorted(os.listdir(done)) == ["a.csv", "b.csv"]
    assert os.listdir(src) == ["c.txt"]
    with pytest.raises(UnsupportedOperation):
        source.pull_files(["c.txt"])
    source.tidy()
