"""Issue 14: a real OTF addon, unmodified: otf-addons-aws's S3 handler
(``opentaskpy.addons.aws.remotehandlers.s3.S3Transfer``) in the ``transfer`` flow,
against an S3 endpoint on 127.0.0.1 served by moto's server mode, both ways.

Everything is installed at test time from the package registry into scratch
directories (pip --target, pinned), never into .venv: the addon with opentaskpy and
boto3 (with its dependencies) on sys.path; moto[server] (with its dependencies) in a
directory of its own, only on the server subprocess's PYTHONPATH.  The addon finds the
endpoint as otf-addons-aws documents it (``AWS_ENDPOINT_URL``, read by its
``creds.get_aws_client``), its credentials and region from the environment (dummies).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
from prefect.logging.handlers import APILogHandler
from prefect.states import State

from storeflow.flows.transfers import transfer
from tests.otf.opentaskpy_release import VERSION

ADDON_VERSION = "26.18.0"
BOTO3_VERSION = "1.44.5"
JSONPATH_NG_VERSION = "1.16.0"  # otf-addons-aws's own dependency besides boto3
MOTO_VERSION = "5.2.5"
S3 = "opentaskpy.addons.aws.remotehandlers.s3.S3Transfer"
HOST = "127.0.0.1"
START_DEADLINE = 90.0


def pip_target(target: Path, *args: str) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--target", str(target), *args],
        check=True, capture_output=True, timeout=600,
    )  # fmt: skip


def install_addon(target: Path) -> None:
    # The venv has opentaskpy's dependencies (storeflow[otf]); boto3 brings its own.
    pip_target(
        target, "--no-deps", f"opentaskpy=={VERSION}", f"otf-addons-aws=={ADDON_VERSION}",
        f"jsonpath-ng=={JSONPATH_NG_VERSION}",
    )  # fmt: skip
    pip_target(target, f"boto3=={BOTO3_VERSION}", f"botocore=={BOTO3_VERSION}")


@dataclass
class Scratch:
    addon: Path
    moto: Path


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Scratch:
    addon = tmp_path_factory.mktemp("aws-addon-installed")
    moto = tmp_path_factory.mktemp("moto-server-installed")
    with ThreadPoolExecutor(2) as pool:
        jobs = [
            pool.submit(install_addon, addon),
            pool.submit(pip_target, moto, f"moto[server]=={MOTO_VERSION}"),
        ]
        for job in jobs:
            job.result()
    return Scratch(addon=addon, moto=moto)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def stop(proc: subprocess.Popen[bytes]) -> None:
    """The server's process group, by its PID: TERM, then KILL."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        except ProcessLookupError:
            pass


@pytest.fixture(scope="module")
def endpoint(scratch: Scratch, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """moto's server on 127.0.0.1, in its own process group, stopped at the end."""
    log = tmp_path_factory.mktemp("moto-server") / "server.log"
    port = free_port()
    url = f"http://{HOST}:{port}"
    env = {**os.environ, "PYTHONPATH": str(scratch.moto)}
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(scratch.moto / "bin" / "moto_server"), "-H", HOST, "-p", str(port)],
            env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + START_DEADLINE
        while True:
            if proc.poll() is not None:
                pytest.fail(f"moto_server exited {proc.returncode}: {log.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{url}/moto-api/", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(
                    f"moto_server not up after {START_DEADLINE}s: {log.read_text()[-2000:]}"
                )
            time.sleep(0.2)
        yield url
    finally:
        stop(proc)


@pytest.fixture(autouse=True)
def aws(scratch: Scratch, endpoint: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(scratch.addon))
    monkeypatch.setenv("OTF_NO_LOG", "1")
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ROLE_ARN", "AWS_CONFIG_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)


def s3_client(endpoint: str) -> Any:
    import boto3  # type: ignore[import-not-found]  # from the scratch directory

    return boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")


def bucket(endpoint: str, name: str, objects: dict[str, bytes] | None = None) -> Any:
    client = s3_client(endpoint)
    client.create_bucket(Bucket=name)
    for key, body in (objects or {}).items():
        client.put_object(Bucket=name, Key=key, Body=body)
    return client


def keys(client: Any, name: str) -> list[str]:
    listing = client.list_objects_v2(Bucket=name)
    return sorted(obj["Key"] for obj in listing.get("Contents", []))


def run_logs(state: State[Any]) -> list[str]:
    APILogHandler().flush()
    with get_client(sync_client=True) as client:
        logs = client.read_logs(
            log_filter=LogFilter(
                flow_run_id=LogFilterFlowRunId(any_=[state.state_details.flow_run_id])
            )
        )
    return [log.message for log in logs]


def test_local_to_s3(tmp_path: Path, endpoint: str) -> None:
    client = bucket(endpoint, "storeflow-up")
    source = tmp_path / "src"
    source.mkdir()
    (source / "a.csv").write_text("1,2\n")
    (source / "b.csv").write_bytes(b"\x00" * 100_000)
    (source / "skip.txt").write_text("no")
    definition = {
        "type": "transfer",
        "source": {
            "directory": str(source),
            "fileRegex": r".*\.csv",
            "protocol": {"name": "local"},
        },
        "destination": [{"bucket": "storeflow-up", "directory": "out", "protocol": {"name": S3}}],
    }
    state = transfer(otf_definition=definition, name="to-s3", return_state=True)
    assert state.is_completed() and state.name == "Delivered", state.message
    assert keys(client, "storeflow-up") == ["out/a.csv", "out/b.csv"]
    assert client.get_object(Bucket="storeflow-up", Key="out/a.csv")["Body"].read() == b"1,2\n"
    body = client.get_object(Bucket="storeflow-up", Key="out/b.csv")["Body"].read()
    assert body == b"\x00" * 100_000
    assert sorted(p.name for p in source.iterdir()) == ["a.csv", "b.csv", "skip.txt"]
    logs = run_logs(state)
    assert any(m.startswith("Transferring file: ") and "s3://storeflow-up/out/a.csv" in m
               for m in logs), logs  # fmt: skip


def test_s3_to_local(tmp_path: Path, endpoint: str) -> None:
    objects = {"in/a.csv": b"1,2\n", "in/b.csv": b"3,4\n", "in/skip.txt": b"no"}
    client = bucket(endpoint, "storeflow-down", objects)
    dest = tmp_path / "dest"
    dest.mkdir()
    definition = {
        "type": "transfer",
        "source": {
            "bucket": "storeflow-down", "directory": "in", "fileRegex": r".*\.csv",
            "protocol": {"name": S3}, "postCopyAction": {"action": "delete"},
        },
        "destination": [{"directory": str(dest), "protocol": {"name": "local"}}],
    }  # fmt: skip
    state = transfer(otf_definition=definition, name="from-s3", return_state=True)
    assert state.is_completed() and state.name == "Delivered", state.message
    # storeflow's delivery: only the final names, no temporary file left behind.
    assert sorted(p.name for p in dest.iterdir()) == ["a.csv", "b.csv"]
    assert (dest / "a.csv").read_bytes() == b"1,2\n"
    assert (dest / "b.csv").read_bytes() == b"3,4\n"
    # The addon's post-copy action, after delivery: the unmatched object is left.
    assert keys(client, "storeflow-down") == ["in/skip.txt"]
    logs = run_logs(state)
    assert "Downloading file: in/a.csv" in logs, logs
