"""`submission list --pending` and the refusals of approve/reject."""

import json
import uuid
from pathlib import Path

from typer.testing import CliRunner

from storeflow.blocks.config import StoreflowConfig
from storeflow.cli.app import app
from storeflow.models import submission_repository as submissions
from storeflow.models.db import session_scope
from storeflow.models.submissions import Origin, SubmissionStatus
from storeflow.tasks.catalog import register
from tests.listeners.conftest import make_listener

runner = CliRunner()


def test_pending_list_and_refusals(tmp_path: Path) -> None:
    listener = make_listener(f"approve-{uuid.uuid4().hex[:6]}")
    path = tmp_path / "f.txt"
    path.write_text("x")
    file = register(StoreflowConfig(), path, checksum=False)[0]
    made = {}
    with session_scope(StoreflowConfig().database_url) as session:
        for status in (SubmissionStatus.PENDING_APPROVAL, SubmissionStatus.SUBMITTED):
            made[status], _ = submissions.create(
                session,
                str(uuid.uuid4()),
                listener_id=listener.id,
                resource_type="file",
                resource_id=str(file.id),
                origin=Origin.FEED,
                parameters={},
                timeout_seconds=60,
                status=status,
            )
    result = runner.invoke(app, ["submission", "list", "--pending", "--json"])
    assert result.exit_code == 0
    assert [s["id"] for s in json.loads(result.stdout)] == [
        made[SubmissionStatus.PENDING_APPROVAL].id
    ]
    sent = made[SubmissionStatus.SUBMITTED].id
    result = runner.invoke(app, ["submission", "approve", sent])
    assert result.exit_code == 2 and "not PENDING APPROVAL" in result.stderr
    result = runner.invoke(app, ["submission", "reject", "no-such-id"])
    assert result.exit_code == 2
    result = runner.invoke(app, ["submission", "list", "--pending", "--status", "SUCCESS"])
    assert result.exit_code == 2 and "status:" in result.stderr
