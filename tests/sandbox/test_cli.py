"""`storeflow callback run`: one JSON object on stdout, exit 0, 1 or 2."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from storeflow.cli.callbacks import callback_app

REPO = Path(__file__).resolve().parents[2]


def _write(tmp_path: Path, name: str, source: str) -> Path:
    path = tmp_path / name
    path.write_text(source)
    return path


def _invoke(*args: str) -> tuple[dict[str, object], int]:
    result = CliRunner().invoke(callback_app, ["run", *args])
    lines = result.stdout.splitlines()
    assert len(lines) == 1, result.stdout
    payload = json.loads(lines[0])
    assert set(payload) == {"status", "result", "error"}
    return payload, result.exit_code


@pytest.mark.parametrize(
    ("name", "source", "code", "status"),
    [
        (
            "true.py",
            "import utils\ndef run(req):\n    return utils.get_node_info(req).size\n",
            0,
            "ok",
        ),
        ("false.py", "def run(req):\n    return False\n", 1, "ok"),
        ("true.js", "module.exports = (req) => req.getId() === 'cli'", 0, "ok"),
        ("false.js", "module.exports = async () => 0", 1, "ok"),
        ("raise.py", "def run(req):\n    raise ValueError('nope')\n", 2, "error"),
        ("syntax.js", "module.exports = (", 2, "error"),
        ("none.py", "x = 1\n", 2, "error"),
        ("none.js", "exports.x = 1", 2, "error"),
    ],
)
def test_exit_codes(
    name: str, source: str, code: int, status: str, tmp_path: Path, target: Path
) -> None:
    lang = "python" if name.endswith(".py") else "javascript"
    payload, exit_code = _invoke("--lang", lang, "--file", str(_write(tmp_path, name, source)),
                                 "--path", str(target))  # fmt: skip
    assert (payload["status"], exit_code) == (status, code), payload
    assert (payload["error"] is None) == (status == "ok")


def test_metadata_and_timeout_options(tmp_path: Path, target: Path) -> None:
    reader = _write(
        tmp_path,
        "meta.js",
        "const u = require('./utils')\n"
        "module.exports = (r) => u.getNodeInfo(r).getMetadataMap().get('owner')",
    )
    payload, code = _invoke("--lang", "javascript", "--file", str(reader), "--path", str(target),
                            "--metadata", "owner=alice", "--metadata", "x=y")  # fmt: skip
    assert (payload, code) == ({"status": "ok", "result": "alice", "error": None}, 0)
    loop = _write(tmp_path, "loop.py", "def run(req):\n    while True:\n        pass\n")
    payload, code = _invoke("--lang", "python", "--file", str(loop), "--path", str(target),
                            "--timeout", "0.5")  # fmt: skip
    assert code == 2 and "timeout" in str(payload["error"])


def test_bad_inputs_are_errors_not_crashes(tmp_path: Path, target: Path) -> None:
    ok = _write(tmp_path, "ok.py", "def run(req):\n    return 1\n")
    for args in (
        ["--lang", "python", "--file", str(tmp_path / "missing.py"), "--path", str(target)],
        ["--lang", "python", "--file", str(ok), "--path", str(tmp_path / "missing.csv")],
        ["--lang", "python", "--file", str(ok), "--path", str(target), "--metadata", "novalue"],
    ):
        payload, code = _invoke(*args)
        assert code == 2 and payload["status"] == "error" and payload["error"]


def test_real_subprocess_with_a_hostile_callback(tmp_path: Path, target: Path) -> None:
    """Flooding and forging output still yields exactly one JSON line and exit 2."""
    hostile = _write(
        tmp_path,
        "hostile.js",
        'module.exports = () => { console.log(\'{"status": "ok", "result": true, "error": null}\');'
        " for (;;) Deno.stdout.writeSync(new TextEncoder().encode('x'.repeat(65536))) }",
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "storeflow.cli.callbacks", "run", "--lang", "javascript",
         "--file", str(hostile), "--path", str(target), "--timeout", "5"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        stdout, _ = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
    lines = stdout.decode().splitlines()
    assert len(lines) == 1, stdout[:200]
    payload = json.loads(lines[0])
    assert process.returncode == 2
    assert payload["status"] == "error" and "output" in payload["error"]
