"""Profiles: an ordered list of pools (directories) and the rules that tier files down.

The seed's ProfileBuilder chains placement rules, `(placement) -> pool_1 ->
(management_1) -> pool_2 -> ...`: here rule N moves the files of pool N that match it
(name pattern, older than, larger than) to the same relative place in pool N+1, with the
transfer engine (delivered under a temporary name, then the source deleted).  The
Builder creates the pools and the profile's schedule (a `profile-tier/<name>`
deployment); the Deleter removes the schedule and leaves the pools and their data.
"""

from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from storeflow.blocks.config import StoreflowConfig
from storeflow.models import repository
from storeflow.models.errors import Refused
from storeflow.models.replicas import ProfileSpec, ProfileUpdate, ScheduleSpec, TierRule, updated
from storeflow.models.schemas import ResourceView
from storeflow.models.status import Action, Status
from storeflow.tasks import fstools, schedules
from storeflow.tasks.reconcile import Change, settle_interrupted
from storeflow.tasks.tree_sync import Endpoint, move_tree, open_endpoint

KIND = "profile"
FLOW = "profile-tier"
ENTRYPOINT = "flows/profiles.py:profile_tier"
LOCAL = {"name": "local"}


def conditionals(rule: TierRule) -> dict[str, Any] | None:
    """The rule as OTF conditionals (exclusive bounds: `gt`)."""
    found: dict[str, Any] = {}
    if rule.older_than is not None:
        found["age"] = {"gt": rule.older_than}
    if rule.larger_than is not None:
        found["size"] = {"gt": rule.larger_than}
    return found or None


def check_pools_free(session: Session, spec: ProfileSpec) -> None:
    """A directory belongs to one profile: two would move the same files both ways."""
    mine = [p.path for p in spec.pools]
    for other in repository.list_kind(session, KIND):
        if other.deleted or other.name == spec.name:
            continue
        for pool in other.spec.get("pools", []):
            theirs = Path(pool["path"])
            for path in mine:
                if path == theirs or path.is_relative_to(theirs) or theirs.is_relative_to(path):
                    raise Refused(f"pool {path} overlaps pool {theirs} of profile {other.name!r}")


def scheduled(spec: ProfileSpec) -> tuple[ScheduleSpec, str, list[str]]:
    """The profile's deployment: its schedule, description and tags."""
    pools = " -> ".join(p.name for p in spec.pools)
    return (
        spec.schedule,
        f"Tier files down the pools of profile {spec.name}: {pools}",
        [
            "storeflow",
            "profile",
        ],
    )


class ProfileBuilder(schedules.ScheduleBuilder):
    kind = KIND
    action = Action.CREATE
    flow = FLOW
    entrypoint = ENTRYPOINT

    def __init__(self, config: StoreflowConfig, spec: ProfileSpec) -> None:
        super().__init__(config, spec.name)
        self.spec = spec
        self._made: list[Path] = []

    def parameters(self) -> dict[str, Any]:
        return self.spec.model_dump(mode="json")

    def check(self, session: Session, resource: ResourceView | None) -> None:
        check_pools_free(session, self.spec)
        for pool in self.spec.pools:
            if pool.path.exists() and not pool.path.is_dir():
                raise Refused(f"pool {pool.name!r}: {pool.path} exists and is not a directory")
        schedules.require_server(f"profile {self.spec.name!r}")

    def create_row(self, session: Session) -> ResourceView:
        return repository.insert(session, KIND, self.spec.name, self.spec.model_dump(mode="json"))

    def perform(self, resource: ResourceView) -> Status:
        for pool in self.spec.pools:
            if not pool.path.exists():
                pool.path.mkdir(parents=True)
                self._made.append(pool.path)
        self.create_schedule(*scheduled(self.spec))
        return Status.ACTIVE

    def rollback(self, resource: ResourceView) -> None:
        super().rollback(resource)
        for path in reversed(self._made):
            if fstools.is_empty(path):
                path.rmdir()
        self._made = []


class ProfileUpdater(schedules.ScheduleUpdater):
    """Change a profile's pools, rules or schedule; new pools are made, pools left out
    keep their files; the deployment is replaced to match."""

    kind = KIND
    action = Action.UPDATE
    flow = FLOW
    entrypoint = ENTRYPOINT

    def __init__(
        self, config: StoreflowConfig, name: str, etag: int | None, changes: ProfileUpdate
    ) -> None:
        super().__init__(config, name, etag)
        self.changes = changes
        self.spec: ProfileSpec | None = None
        self._made: list[Path] = []

    def parameters(self) -> dict[str, Any]:
        return {"name": self.name, "etag": self.etag, **self.changes.model_dump(mode="json")}

    def check(self, session: Session, resource: ResourceView | None) -> None:
        from storeflow.tasks.providers import one_line

        assert resource is not None
        try:
            self.spec = updated(resource.spec, self.changes, ProfileSpec)
        except ValueError as exc:
            raise Refused(f"profile {self.name!r}: {one_line(exc)}") from None
        check_pools_free(session, self.spec)
        for pool in self.spec.pools:
            if pool.path.exists() and not pool.path.is_dir():
                raise Refused(f"pool {pool.name!r}: {pool.path} exists and is not a directory")
        schedules.require_server(f"profile {self.name!r}")

    def perform(self, resource: ResourceView) -> Status:
        spec = self.spec
        assert spec is not None
        for pool in spec.pools:
            if not pool.path.exists():
                pool.path.mkdir(parents=True)
                self._made.append(pool.path)
        self.replace_schedule(*scheduled(spec))
        self.new_spec = spec.model_dump(mode="json")
        return Status.ACTIVE

    def rollback(self, resource: ResourceView) -> None:
        super().rollback(resource)
        for path in reversed(self._made):
            if fstools.is_empty(path):
                path.rmdir()


class ProfileDeleter(schedules.ScheduleDeleter):
    """Pause the schedule in perform (reversible); delete it once the delete commits."""

    kind = KIND
    action = Action.DELETE
    flow = FLOW


def undo_interrupted(config: StoreflowConfig, row: ResourceView) -> None:
    schedules.undo_interrupted(
        FLOW, row, ENTRYPOINT, lambda spec: scheduled(ProfileSpec.model_validate(spec))
    )


def reconcile_profiles(config: StoreflowConfig) -> list[Change]:
    """Profiles whose run was killed: a create's deployment and record go (pool
    directories it made stay: they may hold files by now, and an empty one is harmless;
    a new create reuses them), a delete's paused schedule resumes, an update's deployment
    is put back to the recorded spec; the profile stays (ERRORED) after anything but a
    create."""
    return settle_interrupted(
        config, KIND, undo_create=undo_interrupted, undo_change=undo_interrupted
    )


def tier(spec: ProfileSpec) -> list[dict[str, Any]]:
    """Run every rule once, the last step first, so a file moves at most one pool per run."""
    steps = []
    for index in reversed(range(len(spec.rules))):
        rule = spec.rules[index]
        upper, lower = spec.pools[index], spec.pools[index + 1]
        source = Endpoint(str(upper.path), LOCAL)
        handler = open_endpoint(source)
        try:
            report = move_tree(
                source,
                Endpoint(str(lower.path), LOCAL),
                handler,
                file_regex=rule.name_pattern,
                conditionals=conditionals(rule),
            )
        finally:
            handler.tidy()
        steps.append(
            {
                "from": upper.name,
                "to": lower.name,
                "files": report.files,
                "bytes": report.bytes,
            }
        )
    return list(reversed(steps))


def get_periodic_hook_data(profiles: list[ResourceView]) -> list[dict[str, Any]]:
    data = []
    for profile in profiles:
        pools = []
        for pool in profile.spec.get("pools", []):
            path = Path(pool["path"])
            used = fstools.usage(path) if path.is_dir() else None
            pools.append(
                {
                    "name": pool["name"],
                    "path": str(path),
                    "usage_bytes": used.bytes if used else None,
                    "files": used.files if used else None,
                }
            )
        data.append(
            {"id": profile.id, "name": profile.name, "status": profile.status.value, "pools": pools}
        )
    return data
