"""Scheduled deployments for resources that run on their own (replicas, profiles).

Each such resource gets a deployment of its own, `<flow>/<resource name>`, with one
schedule and its parameters fixed: it shows in the UI under its own name, can be paused
or run by hand there, and `prefect deploy --all` (which rewrites the schedules of the
deployments prefect.yaml declares) never touches it.  Where it runs is copied from the
base deployment `<flow>/<flow>` declared in prefect.yaml (work pool, queue, pull steps);
without one, the deployment has no work pool and only a `serve` process would run it,
which is said in the logs.
"""

from collections.abc import Callable
from contextlib import suppress
from datetime import timedelta
from typing import Any, ClassVar
from uuid import UUID

from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import DeploymentScheduleCreate, DeploymentUpdate
from prefect.client.schemas.responses import DeploymentResponse
from prefect.client.schemas.schedules import CronSchedule, IntervalSchedule
from prefect.exceptions import ObjectNotFound
from prefect.logging import get_logger
from prefect.settings import PREFECT_API_URL, get_current_settings

from storeflow.blocks.config import config_reference
from storeflow.models.errors import Refused
from storeflow.models.replicas import ScheduleSpec
from storeflow.models.schemas import ResourceView
from storeflow.models.status import Status
from storeflow.tasks.lifecycle import ResourceOperation

LOG = get_logger("storeflow.schedules")


class NoPrefectServer(Refused):
    """Schedules live on a Prefect server, and none is configured."""


def require_server(what: str) -> None:
    """Refuse clearly when there is no Prefect API to hold the schedule."""
    if PREFECT_API_URL.value():
        return
    if get_current_settings().server.ephemeral.enabled:
        LOG.warning(
            "%s: no PREFECT_API_URL; the schedule is stored by the ephemeral server's "
            "database and runs only when a Prefect server with its scheduler uses it",
            what,
        )
        return
    raise NoPrefectServer(
        f"{what} needs a Prefect server to hold its schedule, and none is configured: "
        "set PREFECT_API_URL (e.g. http://127.0.0.1:4200/api) to a running `prefect server start`"
    )


def _schedule(spec: ScheduleSpec) -> IntervalSchedule | CronSchedule:
    if spec.interval is not None:
        return IntervalSchedule(interval=timedelta(seconds=spec.interval))
    assert spec.cron is not None
    return CronSchedule(cron=spec.cron, timezone="UTC")


def read(full_name: str) -> DeploymentResponse | None:
    with get_client(sync_client=True) as client:
        try:
            return client.read_deployment_by_name(full_name)
        except ObjectNotFound:
            return None


def create(
    flow_name: str,
    name: str,
    *,
    entrypoint: str,
    parameters: dict[str, Any],
    schedule: ScheduleSpec,
    description: str,
    tags: list[str],
) -> UUID:
    """Create (or replace) the deployment `<flow_name>/<name>` running on `schedule`."""
    base = read(f"{flow_name}/{flow_name}")
    if base is None:
        LOG.warning(
            "no base deployment %s/%s (prefect.yaml): %s/%s has no work pool",
            flow_name,
            flow_name,
            flow_name,
            name,
        )
    with get_client(sync_client=True) as client:
        flow_id = client.create_flow_from_name(flow_name)
        return client.create_deployment(
            flow_id=flow_id,
            name=name,
            description=description,
            tags=tags,
            parameters=parameters,
            schedules=[DeploymentScheduleCreate(schedule=_schedule(schedule), active=True)],
            entrypoint=base.entrypoint if base and base.entrypoint else entrypoint,
            path=base.path if base else None,
            pull_steps=base.pull_steps if base else None,
            work_pool_name=base.work_pool_name if base else None,
            work_queue_name=base.work_queue_name if base else None,
            job_variables=dict(base.job_variables or {}) if base else None,
            paused=False,
        )


def pause(deployment_id: UUID) -> None:
    with get_client(sync_client=True) as client:
        client.pause_deployment(deployment_id)


def resume(deployment_id: UUID) -> None:
    with get_client(sync_client=True) as client:
        client.resume_deployment(deployment_id)


def delete(deployment_id: UUID) -> None:
    """Delete the deployment (and so its schedule); gone already is fine."""
    with get_client(sync_client=True) as client, suppress(ObjectNotFound):
        client.delete_deployment(deployment_id)


def forget(flow_name: str, name: str) -> None:
    """Delete the scheduled deployment `<flow_name>/<name>` if there is one (never the base
    deployment `<flow_name>/<flow_name>` that prefect.yaml declares)."""
    if name == flow_name:
        return
    found = read(f"{flow_name}/{name}")
    if found is not None:
        delete(found.id)


def unpause(flow_name: str, name: str) -> None:
    """Resume `<flow_name>/<name>` if a delete that never committed left it paused."""
    found = read(f"{flow_name}/{name}")
    if found is not None and found.paused and name != flow_name:
        resume(found.id)


def restore(
    flow_name: str,
    name: str,
    entrypoint: str,
    schedule: ScheduleSpec,
    description: str,
    tags: list[str],
) -> None:
    """Make `<flow_name>/<name>` run on `schedule` again (an update killed after it
    replaced the deployment, before the record took the new spec), its parameters kept."""
    if name == flow_name:
        return
    found = read(f"{flow_name}/{name}")
    create(
        flow_name,
        name,
        entrypoint=entrypoint,
        parameters=dict(found.parameters) if found else {"name": name},
        schedule=schedule,
        description=description,
        tags=tags,
    )


def undo_interrupted(
    flow_name: str,
    row: ResourceView,
    entrypoint: str,
    recorded: Callable[[dict[str, Any]], tuple[ScheduleSpec, str, list[str]]],
) -> None:
    """What a run killed mid-perform left on the server, put back: an interrupted create's
    deployment is deleted, an interrupted delete's paused schedule resumes (the delete
    never committed), an interrupted update's deployment runs on the schedule of the
    spec the record kept (`recorded(spec)`: the kind's schedule, description, tags)."""
    if row.last_action == "create":
        forget(flow_name, row.name)
    elif row.last_action == "delete":
        unpause(flow_name, row.name)
    elif row.last_action == "update":
        restore(flow_name, row.name, entrypoint, *recorded(row.spec))


class ScheduleBuilder(ResourceOperation):
    """Create a resource that owns the scheduled deployment `<flow>/<name>`: perform
    calls `create_schedule`; a rollback deletes the deployment again."""

    flow: ClassVar[str]
    entrypoint: ClassVar[str]
    _deployment: UUID | None = None

    def schedule_parameters(self) -> dict[str, Any]:
        """Everything a scheduled run needs: the resource and the config this one was
        created with (a block reference; none: the worker's environment, as here)."""
        parameters: dict[str, Any] = {"name": self.name}
        reference = config_reference(self.config)
        if reference is not None:
            parameters["config"] = reference
        return parameters

    def create_schedule(self, schedule: ScheduleSpec, description: str, tags: list[str]) -> None:
        self._deployment = create(
            self.flow,
            self.name,
            entrypoint=self.entrypoint,
            parameters=self.schedule_parameters(),
            schedule=schedule,
            description=description,
            tags=tags,
        )
        self.new_state = {
            "deployment": f"{self.flow}/{self.name}",
            "deployment_id": str(self._deployment),
        }

    def rollback(self, resource: ResourceView) -> None:
        if self._deployment is not None:
            delete(self._deployment)
            self._deployment = None


class ScheduleDeleter(ResourceOperation):
    """Delete a resource that owns the scheduled deployment `<flow>/<name>`.

    perform only pauses the schedule (reversible: a rollback resumes it); the
    deployment is deleted once the whole delete has committed.
    """

    flow: ClassVar[str]
    _paused: UUID | None = None

    def perform(self, resource: ResourceView) -> Status:
        found = read(f"{self.flow}/{resource.name}")
        if found is not None:
            pause(found.id)
            self._paused = found.id
        return Status.ACTIVE

    def rollback(self, resource: ResourceView) -> None:
        if self._paused is not None:
            resume(self._paused)
            self._paused = None

    def commit(self, resource: ResourceView) -> None:
        if self._paused is not None:
            delete(self._paused)


class ScheduleUpdater(ResourceOperation):
    """Update a resource that owns the scheduled deployment `<flow>/<name>`: perform
    replaces the deployment (its schedule and description) from the new spec; a
    rollback puts the old one back."""

    flow: ClassVar[str]
    entrypoint: ClassVar[str]
    _previous: DeploymentResponse | None = None

    def replace_schedule(self, schedule: ScheduleSpec, description: str, tags: list[str]) -> None:
        self._previous = read(f"{self.flow}/{self.name}")
        parameters = dict(self._previous.parameters) if self._previous else {"name": self.name}
        create(
            self.flow,
            self.name,
            entrypoint=self.entrypoint,
            parameters=parameters,
            schedule=schedule,
            description=description,
            tags=tags,
        )

    def rollback(self, resource: ResourceView) -> None:
        previous = self._previous
        if previous is None:
            return
        with get_client(sync_client=True) as client:
            client.update_deployment(
                previous.id,
                DeploymentUpdate(description=previous.description),
            )
            for found in client.read_deployment_schedules(previous.id):
                client.delete_deployment_schedule(previous.id, found.id)
            client.create_deployment_schedules(
                previous.id, [(s.schedule, s.active) for s in previous.schedules]
            )
