"""A transfer killed with SIGKILL mid-file leaves no partial file; a rerun completes once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from storeflow.tasks.transfer import run_transfer
from tests.transfer.conftest import local_def

# Runs the transfer and stalls inside the copy of the big file, after the first chunk.
CHILD = """
import sys, time
from pathlib import Path
from storeflow.tasks.transfer import run_transfer

marker = Path(sys.argv[2])
def stall(progress):
    if progress.bytes_done and not marker.exists():
        marker.write_text("copying")
        time.sleep(600)

run_transfer(sys.argv[1], progress=stall, max_workers=1)
"""


def test_sigkill_mid_file_then_rerun_completes_once(tmp_path: Path) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir()
    dst.mkdir()
    big = os.urandom(1 << 20) * 24  # several chunks
    (src / "big.bin").write_bytes(big)
    definition = tmp_path / "transfer.json"
    definition.write_text(json.dumps(local_def(src, dst, postCopyAction={"action": "delete"})))
    marker = tmp_path / "marker"

    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(definition), str(marker)],
        cwd=Path(__file__).resolve().parents[2],
    )
    try:
        deadline = time.monotonic() + 60
        while not marker.exists():
            assert child.poll() is None, "transfer ended before it could be killed"
            assert time.monotonic() < deadline, "transfer never started copying"
            time.sleep(0.05)
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(timeout=30)

    leftovers = os.listdir(dst)
    assert "big.bin" not in leftovers  # nothing under the final name
    assert all(name.startswith(".sf-") for name in leftovers)
    assert (src / "big.bin").read_bytes() == big  # source never touched

    result = run_transfer(definition)
    assert result.files == ("big.bin",)
    assert os.listdir(dst) == ["big.bin"]  # exactly once, temp file replaced
    assert (dst / "big.bin").read_bytes() == big
    assert os.listdir(src) == []
