"""The `feed-counts` deployment: how a feed's files stand at one listener, as a table
artifact the Prefect UI shows under a stable key.

The counts are the seed's (`GET /api/feeds/{id}/counts/{listener_id}`): `total` files
the feed matches, of which `success`, `failure`, `submitted` (sent, no final word yet),
`pending_approval` and `not_submitted`, tallied by one SQL query over the deliveries
and their submissions (tasks/feeds.counts).  Run it from the UI, the API or a schedule
to keep the artifact current.
"""

import re
from typing import Any

from prefect import flow, task
from prefect.artifacts import create_table_artifact
from prefect.logging import get_run_logger
from prefect.states import Completed, Failed, State

from storeflow.blocks.config import resolve_config
from storeflow.flows.common import note_run_name
from storeflow.models.errors import StoreflowError
from storeflow.tasks import feeds as steps

COLUMNS = ("total", "success", "failure", "submitted", "not_submitted", "pending_approval")


def counts_key(feed: str, listener: str) -> str:
    """The artifact's key: lowercase letters, digits and dashes only (Prefect's rule)."""
    slug = re.sub(r"[^a-z0-9]+", "-", f"{feed}-{listener}".lower()).strip("-")[:100]
    return f"storeflow-feed-counts-{slug}"


@task(name="count")
def count(feed: str, listener: str, config: str | None) -> dict[str, int]:
    tally = steps.counts(resolve_config(config), feed, listener)
    return {column: int(getattr(tally, column)) for column in COLUMNS}


@flow(name="feed-counts", flow_run_name="feed-counts/{feed}/{listener}", persist_result=False)
def feed_counts(feed: str, listener: str, config: str | None = None) -> State[Any]:
    """Count the feed's files at the listener and write them as a table artifact.

    Args:
        feed: The feed: its name or id.
        listener: The listener: its name or id.
        config: A saved StoreflowConfig block's name. Empty: the worker's environment
            (STOREFLOW_* variables).
    """
    note_run_name()
    logger = get_run_logger()
    try:
        tally = count(feed, listener, config)
    except StoreflowError as exc:
        logger.error("%s", exc)
        return Failed(name="Refused", message=str(exc))
    create_table_artifact(
        [{"feed": feed, "listener": listener, **tally}],
        key=counts_key(feed, listener),
        description=f"Feed {feed} at listener {listener}: how its files stand.",
    )
    summary = ", ".join(f"{tally[c]} {c.replace('_', ' ')}" for c in COLUMNS)
    logger.info("feed %s at %s: %s", feed, listener, summary)
    return Completed(name="Counted", message=summary, data=tally)
