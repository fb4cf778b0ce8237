"""The check that matters most: a stock pyclowder extractor works with storeflow unmodified.

pyclowder from PyPI (pinned in the dev extras), a word-count extractor written for
Clowder, CLOWDER_VERSION=2, pointed at storeflow's broker and API: it heartbeats and
becomes a listener, gets a submission, downloads the file with the temporary key,
posts its metadata, and the run ends Success with the extractor's events.
"""

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from prefect.client.orchestration import get_client
from typer.testing import CliRunner

from storeflow.blocks.config import StoreflowConfig
from storeflow.cli.files import file_app
from storeflow.flows.submissions import submit
from storeflow.models import catalog_repository as catalog
from storeflow.models import submission_repository as submissions
from storeflow.models.catalog_repository import FileView
from storeflow.models.db import session_scope
from storeflow.models.listener_repository import ListenerView
from storeflow.models.submission_repository import SubmissionView
from storeflow.services.serve import Services
from storeflow.tasks.catalog import register
from tests.listeners.broker import URL, delete_queues, unique, wait_for
from tests.listeners.conftest import listener_of, serving
from tests.listeners.extractor import ExtractorProcess


@pytest.fixture
def services(storeflow_home: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Services]:
    with serving(monkeypatch, watch=True) as started:
        yield started


@pytest.fixture
def extractor(tmp_path: Path) -> Iterator[Callable[..., ExtractorProcess]]:
    started: list[ExtractorProcess] = []

    def start(**env: str) -> ExtractorProcess:
        name = unique("wordcount")
        process = ExtractorProcess(tmp_path / name, name, URL, **env).start()
        started.append(process)
        return process

    yield start
    for process in started:
        process.stop()
        delete_queues(process.name, f"error.{process.name}")


def text_file(tmp_path: Path) -> FileView:
    path = tmp_path / "data" / "poem.txt"
    path.parent.mkdir(exist_ok=True)
    path.write_text("the quick brown fox\njumps over the lazy dog\n")
    return register(StoreflowConfig(), path)[0]


def run_to_the_end(listener: ListenerView, file: FileView, timeout: float = 120) -> Any:
    state = submit(listener=listener.name, resource=str(file.id), return_state=True)
    assert state.name == "Submitted", state.message
    run_id = UUID(str(state.state_details.flow_run_id))

    def ended() -> Any:
        with get_client(sync_client=True) as client:
            current = client.read_flow_run(run_id).state
        return current if current is not None and current.is_final() else None

    return run_id, wait_for(ended, timeout, "the submission's end")


def submission(run_id: UUID) -> SubmissionView:
    with session_scope(StoreflowConfig().database_url) as session:
        return submissions.get(session, str(run_id))


def test_a_stock_extractor_heartbeats_counts_words_and_ends_success(
    services: Services, extractor: Callable[..., ExtractorProcess], tmp_path: Path
) -> None:
    process = extractor()
    listener = listener_of(process)
    assert listener.version == "1.0" and listener.queue == process.name and listener.alive
    assert listener.extractor_info["process"] == {"file": ["text/*"]}
    file = text_file(tmp_path)

    run_id, state = run_to_the_end(listener, file)
    assert state.name == "Success", (state.message, process.output())
    done = submission(run_id)
    kinds = [e.kind for e in done.events]
    assert kinds[0] == "storeflow.submitted" and kinds[-1] == "StatusMessage.done"
    assert "StatusMessage.start" in kinds
    messages = [e.message for e in done.events]
    assert "Downloading file." in messages and "counted 9 words" in messages

    shown = CliRunner().invoke(file_app, ["show", str(file.id), "--json"])
    assert shown.exit_code == 0
    documents = json.loads(shown.stdout)["metadata"]
    assert [d["content"] for d in documents] == [{"lines": 2, "words": 9, "characters": 44}]
    assert documents[0]["agent_type"] == "listener" and documents[0]["agent"] == process.name


def test_an_extractor_that_raises_is_retried_ten_times_then_failure(
    services: Services, extractor: Callable[..., ExtractorProcess], tmp_path: Path
) -> None:
    process = extractor(WORDCOUNT_MODE="raise")
    listener = listener_of(process)
    run_id, state = run_to_the_end(listener, text_file(tmp_path), timeout=240)
    assert state.name == "Failure", process.output()
    assert state.message == "this extractor always fails"
    retries = [e for e in submission(run_id).events if e.kind == "StatusMessage.retry"]
    assert [e.message for e in retries] == [
        f"(#{n}) this extractor always fails" for n in range(1, 11)
    ]


def test_an_extractor_uploads_a_file_into_the_dataset(
    services: Services, extractor: Callable[..., ExtractorProcess], tmp_path: Path
) -> None:
    process = extractor(WORDCOUNT_MODE="upload")
    listener = listener_of(process)
    file = text_file(tmp_path)
    _, state = run_to_the_end(listener, file)
    assert state.name == "Success", process.output()
    with session_scope(StoreflowConfig().database_url) as session:
        in_dataset = catalog.list_files(session, dataset=file.dataset)
    uploaded = [f for f in in_dataset if f.name == "poem.txt.counts.txt"]
    assert uploaded and uploaded[0].mime_type == "text/plain"
    assert Path(uploaded[0].path).read_text().startswith("{'lines': 2")
