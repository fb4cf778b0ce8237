"""Runs touching one resource never interleave: the etag CAS decides."""

from concurrent.futures import ThreadPoolExecutor

from storeflow.blocks.config import StoreflowConfig
from storeflow.flows.spaces import space_create, space_update
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
