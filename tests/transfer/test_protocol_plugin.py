"""A transfer protocol installed from another package works with no change to storeflow.

tests/plugins/mirror is a tiny package registering a ``mirror`` handler in the
``storeflow.protocols`` entry point group; its options differ from ``local``'s (a
``root`` in the protocol object, paths inside it).  It is installed into a scratch
directory (never into .venv) and the installed ``storeflow`` command runs in new
processes with that directory on PYTHONPATH, against this session's Prefect server.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

PLUGIN = Path(__file__).parents[1] / "plugins" / "mirror"
STOREFLOW = str(Path(sys.executable).with_name("storeflow"))


@pytest.fixture(scope="module")
def plugin_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory holding the installed plugin (its code and its entry point metadata)."""
    # Build from a copy: setuptools writes build/ and *.egg-info next to the sources.
    source = tmp_path_factory.mktemp("mirror-src") / "mirror"
    shutil.copytree(PLUGIN, source)
    target = tmp_path_factory.mktemp("mirror-installed")
    pip = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index"]
    subprocess.run(
        [*pip, "--no-build-isolation", "--target", str(target), str(source)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    return target


@pytest.fixture
def prefect_api() -> Iterator[str]:
    """This session's ephemeral Prefect server, for the child processes to use."""
    from prefect.server.api.server import SubprocessASGIServer

    server = SubprocessASGIServer()
    server.start()
    yield server.api_url


def environment(plugin: Path | None, api_url: str) -> dict[str, str]:
    env = {**os.environ, "PREFECT_API_URL": api_url}  # STOREFLOW_HOME: this test's
    if plugin is not None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(plugin), env.get("PYTHONPATH")]))
    return env


def storeflow(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [STOREFLOW, *args], env=env, capture_output=True, text=True, timeout=180, check=False
    )


def mirror(root: Path, directory: str, **extra: Any) -> dict[str, Any]:
    return {"directory": directory, "protocol": {"name": "mirror", "root": str(root)}, **extra}


def write(path: Path, definition: dict[str, Any]) -> Path:
    path.write_text(json.dumps(definition))
    return path


def test_plugin_protocol_lists_and_transfers(
    plugin_path: Path, prefect_api: str, tmp_path: Path
) -> None:
    site_a, site_b, local = tmp_path / "a", tmp_path / "b", tmp_path / "local"
    (site_a / "in").mkdir(parents=True)
    local.mkdir()
    for name, data in (("x.csv", b"xx"), ("y.csv", b"yyy"), ("z.log", b"z")):
        (site_a / "in" / name).write_bytes(data)
        os.utime(site_a / "in" / name, (1_600_000_000, 1_600_000_000))
    definition = {
        "type": "transfer",
        "source": mirror(site_a, "/in", fileRegex=r".*\.csv"),
        "destination": [
            mirror(site_b, "/out", createDirectoryIfNotExists=True),
            {"directory": str(local), "protocol": {"name": "local"}},
        ],
    }
    path = write(tmp_path / "mirrored.json", definition)

    done = storeflow(environment(plugin_path, prefect_api), "transfer", "run", str(path), "--json")

    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert answer["state"] == "Delivered"
    assert answer["result"]["files"] == ["x.csv", "y.csv"]  # listed and matched by mirror
    for directory in (site_b / "out", local):
        assert sorted(os.listdir(directory)) == ["x.csv", "y.csv"]
        assert (directory / "y.csv").read_bytes() == b"yyy"
        assert (directory / "x.csv").stat().st_mtime == 1_600_000_000


def test_plugin_options_are_validated_by_its_models(
    plugin_path: Path, prefect_api: str, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    src.mkdir()
    bad = {
        "type": "transfer",
        "source": {"directory": str(src), "fileRegex": ".*", "protocol": {"name": "local"}},
        "destination": [
            {"directory": "/out", "protocol": {"name": "mirror", "rooot": str(tmp_path)}},
            mirror(tmp_path, "/out", mode="0644"),  # mirror destinations take no mode
        ],
    }
    path = write(tmp_path / "typo.json", bad)

    done = storeflow(environment(plugin_path, prefect_api), "transfer", "run", str(path))

    assert done.returncode == 2
    assert done.stderr.count("\n") == 1
    assert "destination[0].protocol.rooot: unknown field" in done.stderr
    assert "destination[0].protocol.root: Field required" in done.stderr
    assert "destination[1].mode: unknown field" in done.stderr
    assert list(src.iterdir()) == [] and not (tmp_path / "out").exists()

    bad["destination"] = [{"directory": "/out", "protocol": {"name": "ftp"}}]
    env = environment(plugin_path, prefect_api)
    done = storeflow(env, "transfer", "run", str(write(path, bad)))
    assert done.returncode == 2
    assert "protocol.name must be one of:" in done.stderr and "mirror" in done.stderr


def test_without_the_plugin_mirror_is_unknown(prefect_api: str, tmp_path: Path) -> None:
    definition = {
        "type": "transfer",
        "source": mirror(tmp_path, "/in"),
        "destination": [mirror(tmp_path, "/out")],
    }
    path = write(tmp_path / "m.json", definition)

    done = storeflow(environment(None, prefect_api), "transfer", "run", str(path))

    assert done.returncode == 2
    assert "source: protocol.name must be one of: local," in done.stderr
    assert "mirror" not in done.stderr.replace(str(tmp_path), "")


def test_plugin_protocol_is_in_the_json_schemas(plugin_path: Path, prefect_api: str) -> None:
    env = environment(plugin_path, prefect_api)
    done = storeflow(env, "schema", "provider")
    assert done.returncode == 0, done.stderr
    assert "mirror" in json.loads(done.stdout)["properties"]["protocol"]["enum"]

    show = "import json; from storeflow.models.transfer import definition_json_schema as s; "
    show += "print(json.dumps(s()))"
    done = subprocess.run(
        [sys.executable, "-c", show], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    schema = json.loads(done.stdout)
    assert "root" in schema["$defs"]["MirrorProtocol"]["properties"]
    sources = [ref["$ref"] for ref in schema["properties"]["source"]["oneOf"]]
    assert "#/$defs/MirrorSource" in sources and "#/$defs/LocalSource" in sources
    # The union's discriminator (protocol.name -> branch) names the plugin's too.
    mapping = schema["properties"]["source"]["discriminator"]["mapping"]
    assert mapping["mirror"] == "#/$defs/MirrorSource" and mapping["local"] == "#/$defs/LocalSource"


def test_provider_on_the_plugin_protocol(
    plugin_path: Path, prefect_api: str, tmp_path: Path
) -> None:
    env = environment(plugin_path, prefect_api)
    (tmp_path / "site").mkdir()

    done = storeflow(
        env, "provider", "create", "mirror-site", "--protocol", "mirror",
        "--directory", str(tmp_path / "site"), "--json",
    )  # fmt: skip

    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["state"] == "Active"

    done = storeflow(
        env, "provider", "create", "blocked", "--protocol", "mirror",
        "--directory", str(tmp_path / "site"), "--block", "creds",
    )  # fmt: skip
    assert done.returncode != 0
    assert "a mirror provider takes no 'block'" in done.stderr
