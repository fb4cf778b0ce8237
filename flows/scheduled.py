"""What the scheduled data-movement flows (replica-sync, profile-tier) share.

They are not lifecycle operations (nothing about the resource changes), so they take no
lock; they refuse to run for a resource that is not ACTIVE (being created or deleted,
or ERRORED), and record when they last ran and what moved in the resource's state.
"""

import re
from datetime import UTC, datetime
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from storeflow.blocks.config import StoreflowConfig
from storeflow.models import repository
from storeflow.models.db import session_scope
from storeflow.models.errors import Refused
from storeflow.models.schemas import ResourceView
from storeflow.models.status import Status


@task(name="pre", cache_policy=NO_CACHE, task_run_name="{kind}/{name}: pre")
def load_active(config: StoreflowConfig, kind: str, name: str) -> ResourceView:
    with session_scope(config.database_url) as session:
        resource = repository.find(session, kind, name)
    if resource.status is not Status.ACTIVE or resource.lock_owner:
        raise Refused(f"{kind} {name!r} is {resource.status.value}; it runs only when ACTIVE")
    return resource


@task(name="post", cache_policy=NO_CACHE, task_run_name="{kind}/{name}: post")
def record_run(
    config: StoreflowConfig, kind: str, name: str, resource_id: int, outcome: dict[str, Any]
) -> None:
    with session_scope(config.database_url) as session:
        current = repository.get(session, resource_id)
        state = {**current.state, "last_run": datetime.now(UTC).isoformat(), "last": outcome}
        repository.update_observed(session, resource_id, state=state)


def artifact_key(kind: str, name: str) -> str:
    """Artifact keys allow lowercase letters, digits and dashes only."""
    return f"{kind}-" + re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
