"""Replica flows: replica-create, replica-delete, and replica-sync (what the schedule runs)."""

from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.states import Completed, Failed, State

from storeflow.blocks.config import StoreflowConfig, resolve_config
from storeflow.flows.common import ConfigName, CurrentEtag, lifecycle_flow
from storeflow.flows.scheduled import artifact_key, load_active, record_run
from storeflow.models.db import session_scope
from storeflow.models.errors import Refused
from storeflow.models.names import ResourceName
from storeflow.models.replicas import ReplicaSpec
from storeflow.tasks import providers, replicas
from storeflow.tasks.lifecycle import run_operation
from storeflow.tasks.replicas import ReplicaBuilder, ReplicaDeleter


@lifecycle_flow("replica-create", "replica-create/{spec.name}")
def replica_create(spec: ReplicaSpec, config: ConfigName = None) -> State[Any]:
    """Declare a replica and create its schedule; refused if it conflicts with another."""
    return run_operation(ReplicaBuilder(resolve_config(config), spec))


@lifecycle_flow("replica-delete", "replica-delete/{name}")
def replica_delete(
    name: ResourceName, etag: CurrentEtag = None, config: ConfigName = None
) -> State[Any]:
    """Delete a replica and its schedule (the data on both sides stays)."""
    return run_operation(ReplicaDeleter(resolve_config(config), name, etag))


@task(name="perform", cache_policy=NO_CACHE, task_run_name="replica/{spec.name}: perform")
def sync_once(config: StoreflowConfig, spec: ReplicaSpec) -> dict[str, Any]:
    with session_scope(config.database_url) as session:
        _, provider = providers.find(session, spec.provider)
    return replicas.sync(config, spec, provider)


@flow(name=replicas.FLOW, flow_run_name="replica-sync/{name}", validate_parameters=True)
def replica_sync(name: ResourceName, config: ConfigName = None) -> State[Any]:
    """Sync one replica now: copy what is missing or different; never delete."""
    cfg = resolve_config(config)
    try:
        resource = load_active(cfg, replicas.KIND, name)
    except Refused as exc:
        return Failed(name="Refused", message=str(exc))
    spec = ReplicaSpec.model_validate(resource.spec)
    try:
        moved = sync_once(cfg, spec)
    except Exception as exc:
        get_run_logger().error("replica %s: %s", name, exc)
        return Failed(name="Errored", message=f"replica-sync/{name}: {exc}")
    record_run(cfg, replicas.KIND, name, resource.id, moved)
    rows = [
        {"direction": way, "files": len(report["files"]), "bytes": report["bytes"]}
        for way, report in moved.items()
    ]
    create_table_artifact(table=rows, key=artifact_key("replica", name))
    summary = ", ".join(f"{r['direction']} {r['files']} files" for r in rows)
    return Completed(name="Synced", message=f"replica-sync/{name}: {summary}", data=moved)
