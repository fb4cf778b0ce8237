"""Feeds as Prefect sees them: a subscription's automation, the matched events, and
deleting a feed with everything that hangs on it."""

from storeflow.blocks.config import StoreflowConfig
from storeflow.models import feed_repository as feeds
from storeflow.models.db import session_scope
from storeflow.models.feed_repository import FeedView


def delete_feed(config: StoreflowConfig, ref: str) -> FeedView:
    """Delete a feed, its subscriptions and deliveries."""
    with session_scope(config.database_url) as session:
        return feeds.delete_feed(session, ref)
