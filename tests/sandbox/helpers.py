"""Small helpers the sandbox tests share."""

from pathlib import Path

from storeflow.sandbox.definitions import CallbackDefinition
from storeflow.sandbox.models import CallOutcome, NodeInfo, Stage
from storeflow.sandbox.settings import SandboxSettings
from storeflow.sandbox.stages import CallbackSet


def node_for(path: Path, **metadata: str) -> NodeInfo:
    return NodeInfo.from_path(path, metadata)


def nodes(tmp_path: Path, count: int, own_metadata_every: int = 0) -> list[NodeInfo]:
    """`count` one-byte files f-0, f-1, ...; with `own_metadata_every` = n, every n-th
    (from f-0) arrives with metadata of its own (`own`: its number)."""
    found = []
    for i in range(count):
        path = tmp_path / f"f-{i}"
        path.write_text("x")
        own = own_metadata_every and i % own_metadata_every == 0
        found.append(node_for(path, **({"own": str(i)} if own else {})))
    return found


def one_callback(
    language: str, source: str, stage: Stage = Stage.FILTER, name: str = "cb"
) -> CallbackDefinition:
    return CallbackDefinition(name=name, language=language, stage=stage, source=source)


def run_one(
    settings: SandboxSettings,
    language: str,
    source: str,
    node: NodeInfo,
    stage: Stage = Stage.FILTER,
) -> CallOutcome:
    """Run one callback once in a fresh CallbackSet; returns the call outcome."""
    with CallbackSet([one_callback(language, source, stage)], task_id="t", policy=settings) as cbs:
        outcome = cbs.run_stage(stage, node=node)
    assert outcome.calls, outcome
    return outcome.calls[0].outcome
