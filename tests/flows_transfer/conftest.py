"""Helpers for the transfer-flow tests: real files, flows run in-process, artifacts read back."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId
from prefect.states import State

from storeflow.blocks.config import StoreflowConfig, resolve_config
from storeflow.models import executions
from storeflow.models.db import session_scope
from storeflow.sandbox.definitions import CallbackDefinition
from storeflow.sandbox.models import Language, Stage
from tests.services.fixtures import nfs_service, smb_service
from tests.transfer.conftest import local_def

__all__ = ["local_def", "nfs_service", "smb_service"]


@pytest.fixture
def config(storeflow_home: Path) -> StoreflowConfig:
    return resolve_config()


def run(flow: Any, **params: Any) -> State[Any]:
    """Run a flow here and return its final state (never raises for a failed run)."""
    return flow(**params, return_state=True)


def callback(
    stage: Stage, source: str, language: Language = Language.PYTHON, name: str | None = None
) -> CallbackDefinition:
    return CallbackDefinition(
        name=name or f"{stage.value.lower()}-{language.value}",
        language=language,
        stage=stage,
        source=source,
    )


def last_execution(config: StoreflowConfig, task_id: str) -> executions.ExecutionView:
    with session_scope(config.database_url) as session:
        found = executions.latest(session, task_id)
    assert found is not None
    return found


def artifacts_of(state: State[Any]) -> dict[str, Any]:
    """The flow run's artifacts by type ('progress', 'table', ...)."""
    run_id = state.state_details.flow_run_id
    with get_client(sync_client=True) as client:
        found = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run_id]))
        )
    return {str(a.type): a for a in found}


def make_files(directory: Path, files: dict[str, bytes]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for i, (name, data) in enumerate(files.items()):
        (directory / name).write_bytes(data)
        os.utime(directory / name, (1_600_000_000 + i, 1_600_000_000 + i))
    return directory
