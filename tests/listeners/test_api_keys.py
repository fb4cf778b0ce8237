"""The HTTP API's keys: each grants exactly what it should, and nothing else is served
or changed (expired keys, another submission's key, user keys without rights)."""

from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from storeflow.blocks.config import StoreflowConfig
from storeflow.models import api_keys
from storeflow.models import catalog_repository as catalog
from storeflow.models import listener_repository as listeners
from storeflow.models import submission_repository as submissions
from storeflow.models.catalog_repository import FileView
from storeflow.models.db import session_scope
from storeflow.models.submissions import Origin, SubmissionStatus
from storeflow.services.api import create_app
from storeflow.tasks.catalog import register
from storeflow.tasks.submissions import dataset_id, expire
from tests.listeners.conftest import make_listener


def catalogued(tmp_path: Path, folder: str, text: str) -> FileView:
    path = tmp_path / folder / "f.txt"
    path.parent.mkdir()
    path.write_text(text)
    return register(StoreflowConfig(), path, checksum=False)[0]


def submission_key(
    file: FileView, listener_id: int, submission_id: str, lifetime: float = 600
) -> str:
    with session_scope(StoreflowConfig().database_url) as session:
        submissions.create(
            session,
            submission_id,
            listener_id=listener_id,
            resource_type="file",
            resource_id=str(file.id),
            origin=Origin.API,
            parameters={},
            timeout_seconds=600,
        )
        return api_keys.mint_submission_key(
            session,
            submission_id,
            file_id=file.id,
            dataset=file.dataset,
            lifetime=timedelta(seconds=lifetime),
        )


@pytest.fixture
def api(storeflow_home: Path) -> TestClient:
    return TestClient(create_app(StoreflowConfig()))


def metadata_count(file: FileView) -> int:
    with session_scope(StoreflowConfig().database_url) as session:
        return len(catalog.metadata_of(session, file.id))


def test_a_submission_key_grants_its_file_and_dataset_only(api: TestClient, tmp_path: Path) -> None:
    listener = make_listener()
    mine = catalogued(tmp_path, "a", "mine\n")
    theirs = catalogued(tmp_path, "b", "theirs\n")
    key = submission_key(mine, listener.id, "00000000-0000-0000-0000-00000000000a")
    other = submission_key(theirs, listener.id, "00000000-0000-0000-0000-00000000000b")
    expired = submission_key(mine, listener.id, "00000000-0000-0000-0000-00000000000c", -1)
    h = {"X-API-KEY": key}

    got = api.get(f"/api/v2/files/{mine.id}", headers=h)
    assert got.status_code == 200 and got.content == b"mine\n"
    assert api.get(f"/api/v2/files/{mine.id}/metadata", headers=h).json() == []
    posted = api.post(f"/api/v2/files/{mine.id}/metadata", headers=h, json={"content": {"n": 1}})
    assert posted.status_code == 200 and metadata_count(mine) == 1

    # Another submission's key, an expired key, no key: refused, nothing served or changed.
    for headers, code in (({"X-API-KEY": other}, 403), ({"X-API-KEY": expired}, 401), ({}, 401)):
        assert api.get(f"/api/v2/files/{mine.id}", headers=headers).status_code == code
        refused = api.post(
            f"/api/v2/files/{mine.id}/metadata", headers=headers, json={"content": {"n": 2}}
        )
        assert refused.status_code == code and "mine" not in refused.text
    assert metadata_count(mine) == 1
    assert api.get(f"/api/v2/files/{theirs.id}", headers=h).status_code == 403

    # Uploads only into its own dataset.
    upload = {"file": ("new.txt", b"made by the listener\n", "text/plain")}
    wrong = api.post(
        f"/api/v2/datasets/{dataset_id(theirs.dataset)}/files", headers=h, files=upload
    )
    assert wrong.status_code == 403 and not (Path(theirs.dataset) / "new.txt").exists()
    right = api.post(f"/api/v2/datasets/{dataset_id(mine.dataset)}/files", headers=h, files=upload)
    assert right.status_code == 200
    with session_scope(StoreflowConfig().database_url) as session:
        assert catalog.get(session, int(right.json()["id"])).name == "new.txt"
    assert sorted(p.name for p in Path(mine.dataset).iterdir()) == ["f.txt", "new.txt"]

    # Any other route: 401 without a key, 403 with one.
    assert api.get("/api/v2/datasets", headers=h).status_code == 403
    assert api.get("/api/v2/datasets").status_code == 401
    assert api.get("/api/listeners", headers=h).status_code == 403

    # Once the submission ends, its key is revoked.
    with session_scope(StoreflowConfig().database_url) as session:
        assert expire(session, "00000000-0000-0000-0000-00000000000a") is not None
        assert submissions.get(session, "00000000-0000-0000-0000-00000000000a").status is (
            SubmissionStatus.FAILURE
        )
    assert api.get(f"/api/v2/files/{mine.id}", headers=h).status_code == 401


def test_user_keys_read_listeners_and_only_admins_delete(api: TestClient, tmp_path: Path) -> None:
    listener = make_listener()
    mine = catalogued(tmp_path, "a", "mine\n")
    with session_scope(StoreflowConfig().database_url) as session:
        alice = api_keys.mint_user_key(session, "alice")
        admin = api_keys.mint_user_key(session, "root", admin=True)
    listed = api.get("/api/listeners", headers={"X-API-KEY": alice}, params={"name": listener.name})
    assert listed.status_code == 200 and [v["name"] for v in listed.json()] == [listener.name]
    paged = api.get("/api/listeners", headers={"X-API-KEY": alice}, params={"skip": 1})
    assert paged.json() == []

    # A user key without rights: no files, no delete.
    assert api.get(f"/api/v2/files/{mine.id}", headers={"X-API-KEY": alice}).status_code == 403
    denied = api.delete(f"/api/listeners/{listener.id}", headers={"X-API-KEY": alice})
    assert denied.status_code == 403
    with session_scope(StoreflowConfig().database_url) as session:
        assert listeners.find(session, listener.name).active

    deleted = api.delete(f"/api/listeners/{listener.id}", headers={"X-API-KEY": admin})
    assert deleted.status_code == 200 and deleted.json()["active"] is False
    assert api.get("/api/listeners", headers={"X-API-KEY": alice}).json() == []
    assert api.delete("/api/listeners/999", headers={"X-API-KEY": admin}).status_code == 404
