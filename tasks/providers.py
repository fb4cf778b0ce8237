"""Providers: remote endpoints (local path, SMB share, NFS export, any registered
protocol) that replicas sync with.

Like the seed's BoxProviderBuilder, creating one only records it, after checking that the
endpoint answers and its directory exists; replicas start the data movement.  A
provider that replicas use cannot be deleted.
"""

import posixpath
from typing import Any

from sqlalchemy.orm import Session

from storeflow.blocks.config import StoreflowConfig
from storeflow.models import repository
from storeflow.models.errors import Refused
from storeflow.models.replicas import ProviderSpec, ProviderUpdate, updated
from storeflow.models.schemas import ResourceView
from storeflow.models.status import Action, Status
from storeflow.tasks.lifecycle import ResourceOperation
from storeflow.tasks.reconcile import Change, settle_interrupted
from storeflow.tasks.transfer import TransferHandler
from storeflow.tasks.tree_sync import Endpoint, open_endpoint

KIND = "provider"


def protocol(spec: ProviderSpec) -> dict[str, Any]:
    """The OTF `protocol` object for this provider, as its protocol's handler builds it
    (credentials by block name)."""
    return spec.protocol_block()


def location(spec: ProviderSpec, relative: str = "") -> str:
    return posixpath.join(spec.directory, relative) if relative else spec.directory


def endpoint(spec: ProviderSpec, relative: str = "") -> Endpoint:
    """A directory on this provider, as a transfer source or destination."""
    return Endpoint(location(spec, relative), protocol(spec))


def open_provider(spec: ProviderSpec) -> TransferHandler:
    return open_endpoint(endpoint(spec))


def check_reachable(spec: ProviderSpec) -> None:
    try:
        handler = open_provider(spec)
        try:
            found = handler.is_dir(spec.directory)
        finally:
            handler.tidy()
    except Refused:
        raise
    except Exception as exc:  # connection refused, bad credentials, missing block...
        raise Refused(
            f"provider {spec.name!r}: cannot reach {spec.protocol} endpoint: {exc}"
        ) from exc
    if not found:
        raise Refused(
            f"provider {spec.name!r}: directory {spec.directory!r} does not exist on the "
            f"{spec.protocol} endpoint"
        )


def find(session: Session, name: str) -> tuple[ResourceView, ProviderSpec]:
    provider = repository.find(session, KIND, name)
    if provider.status is not Status.ACTIVE:
        raise Refused(f"provider {name!r} is {provider.status.value}, not usable now")
    return provider, ProviderSpec.model_validate(provider.spec)


class ProviderBuilder(ResourceOperation):
    kind = KIND
    action = Action.CREATE

    def __init__(self, config: StoreflowConfig, spec: ProviderSpec) -> None:
        super().__init__(config, spec.name)
        self.spec = spec

    def parameters(self) -> dict[str, Any]:
        return self.spec.model_dump(mode="json")

    def check(self, session: Session, resource: ResourceView | None) -> None:
        check_reachable(self.spec)

    def create_row(self, session: Session) -> ResourceView:
        return repository.insert(session, KIND, self.spec.name, self.spec.model_dump(mode="json"))

    def perform(self, resource: ResourceView) -> Status:
        self.new_state = {"endpoint": endpoint(self.spec).at("")}
        return Status.ACTIVE


class ProviderDeleter(ResourceOperation):
    """The seed's rule: a provider that replicates spaces cannot be deleted."""

    kind = KIND
    action = Action.DELETE

    def check(self, session: Session, resource: ResourceView | None) -> None:
        assert resource is not None
        users = [
            r.name
            for r in repository.list_kind(session, "replica")
            if r.spec.get("provider") == resource.name and not r.deleted
        ]
        if users:
            raise Refused(
                f"provider {resource.name!r} is used by replicas ({', '.join(users)}); "
                "delete them first"
            )

    def perform(self, resource: ResourceView) -> Status:
        return Status.ACTIVE


class ProviderUpdater(ResourceOperation):
    """Change a provider's protocol, directory or block; the new endpoint must answer.
    Replicas using it sync with the new endpoint from their next run."""

    kind = KIND
    action = Action.UPDATE

    def __init__(
        self, config: StoreflowConfig, name: str, etag: int | None, changes: ProviderUpdate
    ) -> None:
        super().__init__(config, name, etag)
        self.changes = changes
        self.spec: ProviderSpec | None = None

    def parameters(self) -> dict[str, Any]:
        return {"name": self.name, "etag": self.etag, **self.changes.model_dump(mode="json")}

    def check(self, session: Session, resource: ResourceView | None) -> None:
        assert resource is not None
        try:
            self.spec = updated(resource.spec, self.changes, ProviderSpec)
        except ValueError as exc:  # pydantic's ValidationError: the merged spec is wrong
            raise Refused(f"provider {self.name!r}: {one_line(exc)}") from None
        check_reachable(self.spec)

    def perform(self, resource: ResourceView) -> Status:
        assert self.spec is not None
        self.new_spec = self.spec.model_dump(mode="json")
        self.new_state = {**resource.state, "endpoint": endpoint(self.spec).at("")}
        return Status.ACTIVE


def one_line(error: Exception) -> str:
    """A validation error as one line: `field: reason; ...`."""
    errors = getattr(error, "errors", None)
    if callable(errors):
        return "; ".join(f"{'.'.join(map(str, e['loc'])) or 'spec'}: {e['msg']}" for e in errors())
    return " ".join(str(error).split())


def reconcile_providers(config: StoreflowConfig) -> list[Change]:
    """Providers whose run was killed: a provider is only a record, so an interrupted
    create is removed (the name is free again) and anything else released ERRORED."""
    return settle_interrupted(config, KIND)


def get_periodic_hook_data(providers: list[ResourceView]) -> list[dict[str, Any]]:
    return [
        {
            "id": p.id,
            "name": p.name,
            "status": p.status.value,
            "protocol": p.spec.get("protocol"),
            "directory": p.spec.get("directory"),
        }
        for p in providers
    ]
