"""Runs touching one resource never interleave: the etag CAS decides."""

import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from prefect.client.orchestration import get_client
from prefect.states import Running

from storeflow.blocks.config import StoreflowConfig
from storeflow.flows.spaces import space_create, space_update
from storeflow.models import repository
from storeflow.models.db import session_scope
from storeflow.models.schemas import SpaceSpec, SpaceUpdate
from storeflow.models.status import Status
from tests.lifecycle.conftest import read, run


def test_twenty_concurrent_updates_with_one_etag_exactly_one_wins(config: StoreflowConfig) -> None:
    assert run(space_create, spec=SpaceSpec(name="hot")).name == "Active"
    etag = read(config, "space", "hot").etag

    def update(i: int) -> tuple[int, str, str | None]:
        state = run(space_update, name="hot", etag=etag, changes=SpaceUpdate(quota=(i + 1) * 1024))
        return i, state.name or "", state.message

    with ThreadPoolExecutor(max_workers=20) as pool:
        results = list(pool.map(update, range(20)))

    winners = [r for r in results if r[1] == "Active"]
    losers = [r for r in results if r[1] != "Active"]
    assert len(winners) == 1, results
    assert all(name == "Refused" and "etag" in (msg or "") for _, name, msg in losers), losers
    space = read(config, "space", "hot")
    assert space.status is Status.ACTIVE and space.lock_owner is None
    assert space.spec["quota"] == (winners[0][0] + 1) * 1024
    assert space.etag == etag + 2  # one INPROGRESS, one ACTIVE: nothing else wrote


def test_eight_concurrent_updates_without_an_etag_all_apply_and_the_last_wins(
    config: StoreflowConfig,
) -> None:
    """Without an etag a run waits for the resource and takes it as it finds it."""
    assert run(space_create, spec=SpaceSpec(name="warm")).name == "Active"
    etag = read(config, "space", "warm").etag

    def update(i: int) -> tuple[str, str | None]:
        state = run(space_update, name="warm", changes=SpaceUpdate(quota=(i + 1) * 1024))
        return state.name or "", state.message

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(update, range(8)))

    assert [name for name, _ in results] == ["Active"] * 8, results
    space = read(config, "space", "warm")
    assert space.status is Status.ACTIVE and space.lock_owner is None
    assert space.etag == etag + 2 * 8  # each took it once and released it once
    assert space.spec["quota"] in {(i + 1) * 1024 for i in range(8)}


def test_a_run_without_an_etag_gives_up_after_the_lock_wait(
    config: StoreflowConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert run(space_create, spec=SpaceSpec(name="held")).name == "Active"
    space = read(config, "space", "held")
    with get_client(sync_client=True) as client:  # a live holder: a running run, a long lease
        holder = client.create_flow_run(flow=space_update, state=Running())
    with session_scope(config.database_url) as session:
        repository.acquire(
            session,
            space.id,
            space.etag,
            str(holder.id),
            Status.INPROGRESS,
            action="update",
            lease=600,
            is_stale=None,
        )
    monkeypatch.setenv("STOREFLOW_LOCK_WAIT", "1")
    started = time.monotonic()
    state = run(space_update, name="held", changes=SpaceUpdate(quota=1024))
    assert state.name == "Refused" and "being changed by flow run" in (state.message or "")
    assert 1 <= time.monotonic() - started < 30
