"""The Prefect server down when a command starts: one line, exit 2, nothing run."""

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.e2e.server import free_port

STOREFLOW = str(Path(sys.executable).with_name("storeflow"))


def test_a_server_that_is_down_is_one_line_and_exit_2(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}/api"  # nothing listens there
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "STOREFLOW_"))},
        "PREFECT_API_URL": url,
        "PREFECT_HOME": str(tmp_path / "prefect"),
        "STOREFLOW_HOME": str(tmp_path / "home"),
        "STOREFLOW_WARM": "off",
    }
    result = subprocess.run(
        [STOREFLOW, "space", "create", "q1"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines() == [
        f"error: the Prefect server at {url} cannot be reached ([Errno 111] Connection "
        "refused); nothing was run"
    ]
    listed = subprocess.run(
        [STOREFLOW, "space", "list", "--json"], env=env, capture_output=True, text=True, timeout=120
    )
    assert listed.returncode == 0 and json.loads(listed.stdout) == []  # nothing recorded
