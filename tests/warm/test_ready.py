"""What a ready child prepares, checked in this process against the test's Prefect."""

import asyncio
from collections.abc import Iterator
from typing import Any
from uuid import UUID

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import Flow
from prefect.events.related import RESOURCE_CACHE, _get_and_cache_related_object

from storeflow.cli.runner import client_context
from storeflow.cli.warm import ready
from storeflow.flows.transfers import transfer


@pytest.fixture
def empty_cache() -> Iterator[None]:
    saved = dict(RESOURCE_CACHE)
    RESOURCE_CACHE.clear()
    yield
    RESOURCE_CACHE.clear()
    RESOURCE_CACHE.update(saved)


def test_the_transfer_flow_is_remembered_where_the_events_worker_reads_it(
    empty_cache: None,
) -> None:
    with get_client(sync_client=True) as client:
        flow_id = client.create_flow(transfer)  # as a run does; the same id every time

    with client_context():
        ready.remember_flows(("transfer", "no-such-flow"))  # an unknown flow is skipped

    async def must_not_read(obj_id: UUID | str) -> Any:
        raise AssertionError(f"the events worker read flow {obj_id} from the server")

    # What the events worker does for each event of a run of the flow (prefect.events.related).
    found = asyncio.run(
        _get_and_cache_related_object(
            kind="flow",
            role="flow",
            client_method=must_not_read,
            obj_id=flow_id,
            cache=RESOURCE_CACHE,
        )
    )
    flow = found["object"]
    assert isinstance(flow, Flow) and flow.id == flow_id and flow.name == "transfer"
    assert len(RESOURCE_CACHE) == 1
