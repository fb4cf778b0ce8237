"""Dataset submissions: `storeflow listener submit LISTENER DATASET` reaches a stock
pyclowder extractor written for datasets, which reads the dataset's info and file
list and downloads its files (a zip) with the job's key, all through the Clowder v2
routes pyclowder calls, posts metadata on the files, uploads a summary into the
dataset, and the run ends Success.  The key grants that dataset and nothing else."""

import io
import json
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import pika
import pytest
from prefect.client.orchestration import get_client
from typer.testing import CliRunner

from storeflow.blocks.config import StoreflowConfig
from storeflow.cli.app import app
from storeflow.flows.submissions import submit
from storeflow.models import catalog_repository as catalog
from storeflow.models import submission_repository as submissions
from storeflow.models.catalog_repository import FileView
from storeflow.models.db import session_scope
from storeflow.services.serve import Services
from storeflow.tasks.catalog import register
from storeflow.tasks.submissions import dataset_id
from tests.listeners.broker import URL, delete_queues, unique, wait_for
from tests.listeners.conftest import listener_of, make_listener, serving
from tests.listeners.extractor import ExtractorProcess

PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082"
)


@pytest.fixture
def services(storeflow_home: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Services]:
    with serving(monkeypatch) as started:
        yield started


@pytest.fixture
def dataset_extractor(tmp_path: Path) -> Iterator[ExtractorProcess]:
    name = unique("dataset-wordcount")
    process = ExtractorProcess(
        tmp_path / name,
        name,
        URL,
        script="dataset_wordcount.py",
        info_file="dataset_info.json",
        WORDCOUNT_LOG=str(tmp_path / "processed.txt"),
    ).start()
    yield process
    process.stop()
    delete_queues(name, f"error.{name}")


def survey(tmp_path: Path) -> tuple[Path, dict[str, FileView]]:
    folder = tmp_path / "survey"
    folder.mkdir()
    (folder / "site-a.txt").write_text("one two three\n")
    (folder / "site-b.txt").write_text("four five\n")
    (folder / "map.png").write_bytes(PNG)
    files = {p.name: register(StoreflowConfig(), p)[0] for p in sorted(folder.iterdir())}
    return folder, files


def final_state(run_id: str, timeout: float = 180) -> Any:
    def ended() -> Any:
        with get_client(sync_client=True) as client:
            current = client.read_flow_run(UUID(run_id)).state
        return current if current is not None and current.is_final() else None

    return wait_for(ended, timeout, "the submission's end")


def test_the_cli_submits_a_dataset_to_a_stock_dataset_extractor_which_ends_success(
    services: Services, dataset_extractor: ExtractorProcess, tmp_path: Path
) -> None:
    listener = listener_of(dataset_extractor)
    assert listener.extractor_info["process"] == {"dataset": ["file.added"]}
    folder, files = survey(tmp_path)

    result = CliRunner().invoke(app, ["listener", "submit", listener.name, str(folder), "--json"])
    assert result.exit_code == 0, result.output
    outcome = json.loads(result.stdout)
    assert outcome["state"] == "Submitted", outcome
    run_id = outcome["flow_run_id"]

    state = final_state(run_id)
    assert state.name == "Success", (state.message, dataset_extractor.output()[-3000:])
    with session_scope(StoreflowConfig().database_url) as session:
        done = submissions.get(session, run_id)
        counts = {
            name: [d.content["words"] for d in catalog.metadata_of(session, f.id)]
            for name, f in files.items()
        }
        in_dataset = {f.name: f for f in catalog.list_files(session, dataset=str(folder.resolve()))}
    assert done.resource_type == "dataset" and done.resource_id == str(folder.resolve())
    assert counts == {"site-a.txt": [3], "site-b.txt": [2], "map.png": []}
    messages = [e.message for e in done.events]
    assert "Downloading dataset." in messages and "2 files, 5 words" in messages
    summary = in_dataset["survey.summary.txt"]
    assert Path(summary.path).read_text() == "{'files': 2, 'words': 5}\n"
    processed = (tmp_path / "processed.txt").read_text().split()
    assert processed == [run_id]


def take_job(queue: str, timeout: float = 30) -> dict[str, Any]:
    """The job the submission sent (taken off its queue, so nobody else runs it)."""
    with pika.BlockingConnection(pika.URLParameters(URL)) as connection:
        channel = connection.channel()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            method, _, body = channel.basic_get(queue, auto_ack=True)
            if method is not None:
                job: dict[str, Any] = json.loads(body)
                return job
            time.sleep(0.05)
    raise AssertionError(f"no job on {queue}")


def test_a_dataset_key_grants_its_dataset_and_its_files_only(
    services: Services, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A listener that never runs: the submission stays Submitted while we call the API.
    idle = make_listener(process={"dataset": ["*"]})
    folder, files = survey(tmp_path)
    other = tmp_path / "other" / "secret.txt"
    other.parent.mkdir()
    other.write_text("not yours\n")
    stranger = register(StoreflowConfig(), other)[0]

    state = submit(
        listener=idle.name, resource=str(folder), resource_type="dataset", return_state=True
    )
    assert state.name == "Submitted", state.message
    job = take_job(idle.queue)
    assert job["resource_type"] == "dataset" and job["datasetName"] == "survey"
    assert job["id"] == job["datasetId"] == dataset_id(str(folder.resolve()))
    key = job["secretKey"]
    ours, theirs = dataset_id(str(folder.resolve())), dataset_id(str(other.parent.resolve()))
    base = str(services.api.config.host), services.api.config.port
    api = httpx.Client(base_url=f"http://{base[0]}:{base[1]}", headers={"X-API-KEY": key})
    try:
        info = api.get(f"/api/v2/datasets/{ours}").json()
        assert info["name"] == "survey" and info["files"] == 3
        listed = api.get(f"/api/v2/datasets/{ours}/files").json()["data"]
        assert sorted(f["filename"] for f in listed) == sorted(files)
        assert all("filepath" not in f for f in listed)  # the path stays private
        archive = zipfile.ZipFile(io.BytesIO(api.get(f"/api/v2/datasets/{ours}/download").content))
        assert sorted(archive.namelist()) == sorted(files)
        assert archive.read("site-a.txt") == b"one two three\n"
        assert api.get(f"/api/v2/files/{files['map.png'].id}").content == PNG

        for path in (
            f"/api/v2/datasets/{theirs}",
            f"/api/v2/datasets/{theirs}/files",
            f"/api/v2/datasets/{theirs}/download",
            f"/api/v2/files/{stranger.id}",
            f"/api/v2/files/{stranger.id}/metadata",
        ):
            assert api.get(path).status_code == 403, path
        refused = api.post(f"/api/v2/files/{stranger.id}/metadata", json={"content": {"x": 1}})
        assert refused.status_code == 403
        with session_scope(StoreflowConfig().database_url) as session:
            assert catalog.metadata_of(session, stranger.id) == []
    finally:
        api.close()
        delete_queues(idle.queue, f"error.{idle.queue}")


def test_a_listener_that_processes_only_files_is_refused_a_dataset(tmp_path: Path) -> None:
    files_only = make_listener(process={"file": ["text/*"]})
    folder, _ = survey(tmp_path)
    state = submit(
        listener=files_only.name, resource=str(folder), resource_type="dataset", return_state=True
    )
    assert state.name == "Refused"
    assert (state.message or "").startswith("resource_type: ")
    assert "does not process datasets" in (state.message or "")
