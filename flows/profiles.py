"""Profile flows: profile-create, profile-delete, and profile-tier (what the schedule runs)."""

from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.states import Completed, Failed, State

from storeflow.blocks.config import resolve_config
from storeflow.flows.common import ConfigName, CurrentEtag, lifecycle_flow
from storeflow.flows.scheduled import artifact_key, load_active, record_run
from storeflow.models.errors import Refused
from storeflow.models.names import ResourceName
from storeflow.models.replicas import ProfileSpec, ProfileUpdate
from storeflow.tasks import profiles
from storeflow.tasks.lifecycle import run_operation
from storeflow.tasks.profiles import ProfileBuilder, ProfileDeleter, ProfileUpdater


@lifecycle_flow("profile-create", "profile-create/{spec.name}")
def profile_create(spec: ProfileSpec, config: ConfigName = None) -> State[Any]:
    """Declare a tiering profile: create its pools and its schedule."""
    return run_operation(ProfileBuilder(resolve_config(config), spec))


@lifecycle_flow("profile-update", "profile-update/{name}")
def profile_update(
    name: ResourceName, changes: ProfileUpdate, etag: CurrentEtag = None, config: ConfigName = None
) -> State[Any]:
    """Change a profile's pools, rules or schedule (pools left out keep their files)."""
    return run_operation(ProfileUpdater(resolve_config(config), name, etag, changes))


@lifecycle_flow("profile-delete", "profile-delete/{name}")
def profile_delete(
    name: ResourceName, etag: CurrentEtag = None, config: ConfigName = None
) -> State[Any]:
    """Delete a profile and its schedule (pools and their files stay)."""
    return run_operation(ProfileDeleter(resolve_config(config), name, etag))


@task(name="perform", cache_policy=NO_CACHE, task_run_name="profile/{spec.name}: perform")
def tier_once(spec: ProfileSpec) -> list[dict[str, Any]]:
    return profiles.tier(spec)


@flow(name=profiles.FLOW, flow_run_name="profile-tier/{name}", validate_parameters=True)
def profile_tier(name: ResourceName, config: ConfigName = None) -> State[Any]:
    """Move the files each rule selects one pool down (at most one pool per run).

    Args:
        name: The tiering profile to apply.
        config: The saved StoreflowConfig block this run works with. Empty: the worker's
            environment (STOREFLOW_* variables).
    """
    cfg = resolve_config(config)
    try:
        resource = load_active(cfg, profiles.KIND, name)
    except Refused as exc:
        return Failed(name="Refused", message=str(exc))
    spec = ProfileSpec.model_validate(resource.spec)
    try:
        steps = tier_once(spec)
    except Exception as exc:
        get_run_logger().error("profile %s: %s", name, exc)
        return Failed(name="Errored", message=f"profile-tier/{name}: {exc}")
    record_run(cfg, profiles.KIND, name, resource.id, {"steps": steps})
    rows = [
        {"from": s["from"], "to": s["to"], "files": len(s["files"]), "bytes": s["bytes"]}
        for s in steps
    ]
    create_table_artifact(table=rows, key=artifact_key("profile", name))
    moved = sum(r["files"] for r in rows)
    return Completed(name="Tiered", message=f"profile-tier/{name}: {moved} files moved", data=steps)
