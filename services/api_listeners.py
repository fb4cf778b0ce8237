"""The seed's listener API, for user keys: listeners (list, deactivate) and feeds
(create, list, delete, subscribe a listener, execute, counts; docs/listeners.md
"Feeds")."""

from typing import Any

from fastapi import APIRouter, HTTPException

from storeflow.models import listener_repository as listeners
from storeflow.models.db import session_scope
from storeflow.models.errors import InvalidInput, NotFound
from storeflow.services.api_access import Config, Granted, admin, user

# Pages of listeners and feeds are at most this long, whatever `limit` asks.
MAX_PAGE = 1000

router = APIRouter(prefix="/api")


def feed_steps() -> Any:
    from storeflow.tasks import feeds as steps  # imports Prefect's clients

    return steps


def _page(limit: int) -> int:
    return max(0, min(limit, MAX_PAGE))


# -- listeners ----------------------------------------------------------------------


@router.get("/listeners")
def list_listeners(
    found: Granted,
    config: Config,
    id: int | None = None,
    name: str | None = None,
    skip: int = 0,
    limit: int = 100,
) -> list[dict[str, Any]]:
    user(found)
    with session_scope(config.database_url) as session:
        views = listeners.list_listeners(
            session,
            listener_id=id,
            name=name,
            skip=max(0, skip),
            limit=_page(limit),
            include_inactive=found.admin,
        )
    return [v.model_dump(mode="json") for v in views]


@router.delete("/listeners/{listener_id}")
def delete_listener(listener_id: int, found: Granted, config: Config) -> dict[str, Any]:
    admin(found, "deleting a listener")
    with session_scope(config.database_url) as session:
        try:
            return listeners.deactivate(session, str(listener_id)).model_dump(mode="json")
        except NotFound as exc:
            raise HTTPException(404, str(exc)) from None


# -- feeds --------------------------------------------------------------------------


@router.post("/feeds")
def create_feed(body: dict[str, Any], found: Granted, config: Config) -> dict[str, Any]:
    from storeflow.models import feed_repository as feeds
    from storeflow.models.feed_criteria import parse_query

    user(found)
    name = body.get("name")
    if not isinstance(name, str):
        raise InvalidInput("name", "required (a string)")
    criteria = body.get("criteria", {})
    if "query" in body:
        if not isinstance(body["query"], str):
            raise InvalidInput("query", "must be a string")
        criteria = {**(criteria or {}), **parse_query(body["query"])}
    with session_scope(config.database_url) as session:
        return feeds.create(
            session,
            name,
            criteria,
            kind=str(body.get("kind", "file")),
            parameters=body.get("parameters") or {},
            approval=bool(body.get("approval", False)),
        ).model_dump(mode="json")


@router.get("/feeds")
def list_feeds(
    found: Granted,
    config: Config,
    name: str | None = None,
    listener: int | None = None,
    skip: int = 0,
    limit: int = 100,
) -> list[dict[str, Any]]:
    from storeflow.models import feed_repository as feeds

    user(found)
    with session_scope(config.database_url) as session:
        views = feeds.list_feeds(
            session, name=name, listener_id=listener, skip=max(0, skip), limit=_page(limit)
        )
    return [v.model_dump(mode="json") for v in views]


@router.delete("/feeds/{feed_id}")
def delete_feed(feed_id: int, found: Granted, config: Config) -> dict[str, Any]:
    user(found)
    try:
        deleted: Any = feed_steps().delete_feed(config, str(feed_id))
    except NotFound as exc:
        raise HTTPException(404, str(exc)) from None
    return {"deleted": deleted.model_dump(mode="json")}


@router.post("/feeds/{feed_id}/subscribe/{listener_id}")
def subscribe(
    feed_id: int,
    listener_id: int,
    found: Granted,
    config: Config,
    body: dict[str, Any] | None = None,
) -> dict[str, Any]:
    user(found)
    body = body or {}
    steps = feed_steps()
    try:
        done = steps.subscribe(
            config, str(feed_id), str(listener_id), auto=bool(body.get("auto", True))
        )
        sent = (
            steps.backfill(config, str(feed_id), str(listener_id))
            if body.get("backfill", False)
            else 0
        )
    except NotFound as exc:
        raise HTTPException(404, str(exc)) from None
    return {**done.subscription.model_dump(mode="json"), "created": done.created, "sent": sent}


@router.post("/feeds/{feed_id}/execute/{listener_id}")
def execute(
    feed_id: int,
    listener_id: int,
    found: Granted,
    config: Config,
    force_all: bool = False,
    skip: int = 0,
    limit: int | None = None,
) -> dict[str, int]:
    user(found)
    try:
        sent = feed_steps().execute(
            config, str(feed_id), str(listener_id), force_all=force_all, skip=skip, limit=limit
        )
    except NotFound as exc:
        raise HTTPException(404, str(exc)) from None
    return {"sent": sent}


@router.get("/feeds/{feed_id}/counts/{listener_id}")
def counts(feed_id: int, listener_id: int, found: Granted, config: Config) -> dict[str, int]:
    user(found)
    try:
        tally: Any = feed_steps().counts(config, str(feed_id), str(listener_id))
    except NotFound as exc:
        raise HTTPException(404, str(exc)) from None
    return dict(tally.model_dump())
