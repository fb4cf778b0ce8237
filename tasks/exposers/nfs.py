"""NFS exposers: an export of a space, through kernel NFS or nfs-ganesha (the seed's
NFSExposerBuilder/Updater/Deleter)."""

from typing import Any

from storeflow.blocks.config import StoreflowConfig
from storeflow.blocks.nfs import NfsBackend as NfsBackendKind
from storeflow.models.errors import Refused
from storeflow.models.exposers import NfsClientRule, NfsExposerSpec
from storeflow.models.schemas import ResourceView
from storeflow.tasks.exposers.backend import Backend
from storeflow.tasks.exposers.ganesha import GaneshaBackend
from storeflow.tasks.exposers.kernel_nfs import KernelNfsBackend
from storeflow.tasks.exposers.nfs_base import KIND
from storeflow.tasks.exposers.operations import (
    AccessRuleChange,
    ExposerBuilder,
    ExposerDeleter,
    ExposerOperation,
    ExposerUpdater,
    Spec,
)


def nfs_backend(config: StoreflowConfig) -> Backend:
    if config.nfs.backend is NfsBackendKind.GANESHA:
        return GaneshaBackend(config.nfs)
    return KernelNfsBackend(config.nfs)


class NfsExposer(ExposerOperation):
    kind = KIND
    spec_model = NfsExposerSpec

    @classmethod
    def make_backend(cls, config: StoreflowConfig) -> Backend:
        return nfs_backend(config)


class NfsExposerBuilder(NfsExposer, ExposerBuilder):
    """Add an export of a space."""


class NfsExposerUpdater(NfsExposer, ExposerUpdater):
    """Change an export's clients, pseudo path or name."""


class NfsExposerDeleter(NfsExposer, ExposerDeleter):
    """Remove an export."""


class NfsAccessAllow(NfsExposer, AccessRuleChange):
    """Allow a client (ro or rw, with its options); replaces that client's rule."""

    verb = "allow"

    def __init__(
        self, config: StoreflowConfig, name: str, etag: int | None, rule: NfsClientRule
    ) -> None:
        super().__init__(config, name, etag, rule.client)
        self.rule = rule.model_dump(mode="json")

    def parameters(self) -> dict[str, Any]:
        return {**super().parameters(), "access_level": self.rule["access"]}

    def desired(self, current: Spec | None) -> Spec | None:
        assert current is not None
        clients = [c for c in current.get("clients", []) if c["client"] != self.rule["client"]]
        return {**current, "clients": [*clients, self.rule]}


class NfsAccessDeny(NfsExposer, AccessRuleChange):
    """Remove a client's rule (Manila's deny_access)."""

    verb = "deny"

    def desired(self, current: Spec | None) -> Spec | None:
        assert current is not None
        clients = [c for c in current.get("clients", []) if c["client"] != self.to]
        if len(clients) == len(current.get("clients", [])):
            raise Refused(f"{self.kind} {self.name!r} has no rule for client {self.to!r}")
        return {**current, "clients": clients}


def get_periodic_hook_data(exposers: list[ResourceView]) -> list[dict[str, Any]]:
    return [
        {
            "id": e.id,
            "name": e.name,
            "space_id": e.parent_id,
            "status": e.status.value,
            "managed": bool(e.state.get("managed", True)),
            "path": e.state.get("path"),
            "access_rules": [
                {"access_to": c["client"], "access_level": c["access"], "squash": c["squash"]}
                for c in e.spec.get("clients", [])
            ],
        }
        for e in exposers
    ]
