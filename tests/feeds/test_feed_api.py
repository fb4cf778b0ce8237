"""The seed's feed routes: create (criteria or Clowder's query), list, delete; bad
input is 422 naming the field, nothing created."""

from pathlib import Path

from fastapi.testclient import TestClient

from storeflow.blocks.config import StoreflowConfig
from storeflow.models import api_keys
from storeflow.models.db import session_scope
from storeflow.services.api import create_app
from tests.listeners.conftest import make_listener


def test_feed_routes(storeflow_home: Path) -> None:
    api = TestClient(create_app(StoreflowConfig()))
    with session_scope(StoreflowConfig().database_url) as session:
        key = {"X-API-KEY": api_keys.mint_user_key(session, "alice")}
    assert api.get("/api/feeds").status_code == 401
    bad = api.post("/api/feeds", headers=key, json={"name": "x", "criteria": {"name": "a("}})
    assert bad.status_code == 422 and bad.json()["detail"].startswith("criteria.name:")
    bad = api.post("/api/feeds", headers=key, json={"name": "x", "query": "mime:imgae/png"})
    assert bad.status_code == 422 and bad.json()["detail"].startswith("criteria.mime:")
    bad = api.post(
        "/api/feeds",
        headers=key,
        json={"name": "x", "criteria": {"metadata": [{"path": "a", "op": "near"}]}},
    )
    assert bad.status_code == 422 and "criteria.metadata.0.op" in bad.json()["detail"]
    assert api.get("/api/feeds", headers=key).json() == []
    made = api.post("/api/feeds", headers=key, json={"name": "sheets", "query": "name:*.xlsx"})
    assert made.status_code == 200, made.text
    again = api.post("/api/feeds", headers=key, json={"name": "sheets"})
    assert again.status_code == 422 and again.json()["detail"].startswith("name:")
    listed = api.get("/api/feeds", headers=key, params={"name": "sheets"}).json()
    assert [f["id"] for f in listed] == [made.json()["id"]]
    listener = make_listener()
    counts = api.get(f"/api/feeds/{made.json()['id']}/counts/{listener.id}", headers=key)
    assert counts.json() == {
        "total": 0,
        "success": 0,
        "failure": 0,
        "submitted": 0,
        "not_submitted": 0,
        "pending_approval": 0,
    }
    gone = api.delete(f"/api/feeds/{made.json()['id']}", headers=key)
    assert gone.status_code == 200
    assert api.delete(f"/api/feeds/{made.json()['id']}", headers=key).status_code == 404
