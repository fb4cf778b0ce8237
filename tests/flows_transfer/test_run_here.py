"""run_here's per-run work: settings, one API client, the run name, the pre-fork warm-up."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
from prefect import flow
from prefect.client.orchestration import SyncPrefectClient
from prefect.settings import (
    PREFECT_FLOWS_HEARTBEAT_FREQUENCY,
    PREFECT_SERVER_ANALYTICS_ENABLED,
    get_current_settings,
    temporary_settings,
)

from storeflow.blocks.config import StoreflowConfig
from storeflow.cli import runner
from storeflow.cli.runner import (
    IN_PROCESS_MAX_RETRIES,
    in_process_runtime,
    in_process_settings,
    run_here,
    warm_up,
)
from storeflow.flows import common as flows_common
from storeflow.flows.common import note_run_name
from storeflow.flows.spaces import space_create
from storeflow.flows.transfers import transfer
from storeflow.models import db
from storeflow.models.schemas import SpaceSpec
from storeflow.models.transfer import parse_definition
from tests.flows_transfer.conftest import local_def, make_files

LEAVES = {
    "flows": {"heartbeat_frequency"},
    "server": {"analytics_enabled"},
    "client": {"max_retries"},
}


@pytest.fixture
def heartbeat_on() -> Any:
    with temporary_settings(
        {PREFECT_FLOWS_HEARTBEAT_FREQUENCY: 60, PREFECT_SERVER_ANALYTICS_ENABLED: True}
    ) as settings:
        yield settings


def test_in_process_settings_change_the_heartbeat_and_analytics_only(heartbeat_on: Any) -> None:
    derived = in_process_settings(heartbeat_on)

    assert derived.flows.heartbeat_frequency is None
    assert derived.server.analytics_enabled is False
    assert derived.client.max_retries == IN_PROCESS_MAX_RETRIES < heartbeat_on.client.max_retries
    assert derived.model_dump(exclude=LEAVES) == heartbeat_on.model_dump(exclude=LEAVES)
    assert heartbeat_on.flows.heartbeat_frequency == 60  # the caller's settings are untouched
    assert in_process_settings(heartbeat_on) is derived  # built once, not every run
    assert in_process_settings(derived) is derived  # nothing to change


def test_in_process_runtime_applies_them_inside_only(heartbeat_on: Any) -> None:
    with in_process_runtime():
        inside = get_current_settings()
        assert inside.flows.heartbeat_frequency is None
        assert inside.server.analytics_enabled is False
        assert inside.api.url == heartbeat_on.api.url
    assert get_current_settings().flows.heartbeat_frequency == 60


def test_run_here_reports_the_name_without_reading_the_run_back(
    config: StoreflowConfig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = make_files(tmp_path / "src", {"a.txt": b"a"})
    (tmp_path / "dest").mkdir()

    def no_read(*_: Any, **__: Any) -> Any:
        raise AssertionError("the run name was read back from the API")

    monkeypatch.setattr(runner, "get_client", no_read)
    outcome = run_here(
        transfer, definition=parse_definition(local_def(src, tmp_path / "dest")), name="named"
    )

    assert outcome.state_name == "Delivered", outcome.message
    assert outcome.flow_run_name == "transfer/named"


def test_lifecycle_runs_report_their_name_without_reading_it_back(
    storeflow_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_read(*_: Any, **__: Any) -> Any:
        raise AssertionError("the run name was read back from the API")

    monkeypatch.setattr(runner, "get_client", no_read)
    outcome = run_here(space_create, spec=SpaceSpec(name="alpha"))

    assert outcome.state_type == "COMPLETED", outcome.message
    assert outcome.flow_run_name == "space-create/alpha"
    # The wrapper that notes the name keeps the flow's typed parameters.
    assert set(space_create.parameters.properties) == {"spec", "config"}


@flow(name="plain", flow_run_name="plain-{x}")
def plain(x: int) -> int:
    return x


@flow(name="noting", flow_run_name="noting-{x}")
def noting(x: int) -> int:
    note_run_name()
    return x


def test_a_flow_that_does_not_note_its_name_still_reports_it() -> None:
    assert run_here(plain, x=1).flow_run_name == "plain-1"
    assert run_here(noting, x=2).flow_run_name == "noting-2"


def test_note_run_name_outside_run_here_records_nothing() -> None:
    state = noting(x=3, return_state=True)
    assert state.is_completed()
    assert flows_common.noted_run_names.get() is None


def test_one_api_client_serves_the_whole_run(
    config: StoreflowConfig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The flow engine, the tasks, the artifacts (from the copy thread too) and Prefect's
    result-storage lookups share one client: each new one loads the CA bundle and asks
    the server for a CSRF token."""
    src = make_files(tmp_path / "src", {f"f{i}": b"x" * i for i in range(5)})
    (tmp_path / "dest").mkdir()
    built: list[SyncPrefectClient] = []
    original = SyncPrefectClient.__init__

    def counting(self: SyncPrefectClient, *args: Any, **kwargs: Any) -> None:
        built.append(self)
        original(self, *args, **kwargs)

    monkeypatch.setattr(SyncPrefectClient, "__init__", counting)
    outcome = run_here(transfer, definition=parse_definition(local_def(src, tmp_path / "dest")))

    assert outcome.state_name == "Delivered", outcome.message
    assert len(built) == 1


def test_warm_up_opens_nothing_and_starts_no_thread() -> None:
    threads = threading.active_count()
    engines = db._engine_for.cache_info().currsize

    warm_up()

    assert threading.active_count() == threads
    assert db._engine_for.cache_info().currsize == engines
