"""A transfer killed with SIGKILL mid-file leaves no partial file; a rerun completes once."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from storeflow.tasks.transfer import run_transfer
from tests.killing import kill_at_marker
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

    kill_at_marker(
        [sys.executable, "-c", CHILD, str(definition), str(marker)],
        marker,
        dict(os.environ),
        Path(__file__).resolve().parents[2],
        "the transfer started copying",
    )

    leftovers = os.listdir(dst)
    assert "big.bin" not in leftovers  # nothing under the final name
    assert all(name.startswith(".sf-") for name in leftovers)
    assert (src / "big.bin").read_bytes() == big  # source never touched

    result = run_transfer(definition)
    assert result.files == ("big.bin",)
    assert os.listdir(dst) == ["big.bin"]  # exactly once, temp file replaced
    assert (dst / "big.bin").read_bytes() == big
    assert os.listdir(src) == []


# The same kill, through the `transfer` flow: `storeflow transfer run` in a child process
# (against the suite's Prefect database), stalled inside the copy of the big file.
FLOW_CHILD = """
import sys, time
from pathlib import Path
from storeflow.tasks.transfer import steps

marker = Path(sys.argv[2])
real_deliver = steps.deliver

def stalling_deliver(plan, **kwargs):
    report = kwargs.get("progress")
    def stall(progress):
        if report is not None:
            report(progress)
        if progress.bytes_done and not marker.exists():
            marker.write_text("copying")
            time.sleep(600)
    kwargs.update(progress=stall, max_workers=1, progress_interval=0)
    return real_deliver(plan, **kwargs)

steps.deliver = stalling_deliver
from storeflow.cli.app import main
main(["transfer", "run", sys.argv[1]])
"""


def test_sigkill_of_the_transfer_flow_then_rerun_completes_once(
    tmp_path: Path, storeflow_home: Path
) -> None:
    from storeflow.flows.transfers import transfer
    from storeflow.models.transfer import parse_definition

    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir()
    dst.mkdir()
    big = os.urandom(1 << 20) * 24
    (src / "big.bin").write_bytes(big)
    spec = local_def(src, dst, postCopyAction={"action": "delete"})
    definition = tmp_path / "transfer.json"
    definition.write_text(json.dumps(spec))
    marker = tmp_path / "marker"

    kill_at_marker(
        [sys.executable, "-c", FLOW_CHILD, str(definition), str(marker)],
        marker,
        {**os.environ, "STOREFLOW_WARM": "off"},
        Path(__file__).resolve().parents[2],
        "the flow started copying",
    )

    leftovers = os.listdir(dst)
    assert "big.bin" not in leftovers  # nothing under the final name
    assert leftovers and all(name.startswith(".sf-") for name in leftovers), leftovers
    assert (src / "big.bin").read_bytes() == big

    state = transfer(definition=parse_definition(spec), return_state=True)
    assert state.name == "Delivered", state.message
    assert os.listdir(dst) == ["big.bin"]  # exactly once, the temp file replaced
    assert (dst / "big.bin").read_bytes() == big
    assert os.listdir(src) == []
