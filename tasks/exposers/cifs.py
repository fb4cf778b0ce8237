"""CIFS exposers: a Samba share of a space (the seed's CIFSExposerBuilder/Updater/Deleter)."""

from typing import Any

from storeflow.blocks.config import StoreflowConfig
from storeflow.models.exposers import CifsAccessRule, CifsExposerSpec
from storeflow.models.schemas import ResourceView
from storeflow.tasks.exposers.backend import Backend
from storeflow.tasks.exposers.operations import (
    AccessRuleChange,
    ExposerBuilder,
    ExposerDeleter,
    ExposerOperation,
    ExposerUpdater,
    Spec,
)
from storeflow.tasks.exposers.samba import KIND, SambaBackend


class CifsExposer(ExposerOperation):
    kind = KIND
    spec_model = CifsExposerSpec

    @classmethod
    def make_backend(cls, config: StoreflowConfig) -> Backend:
        return SambaBackend(config.samba)


class CifsExposerBuilder(CifsExposer, ExposerBuilder):
    """Add a share section for a space."""


class CifsExposerUpdater(CifsExposer, ExposerUpdater):
    """Change a share's parameters or name."""


class CifsExposerDeleter(CifsExposer, ExposerDeleter):
    """Remove a share; its open sessions are closed."""


def _without(rules: list[dict[str, Any]], who: str) -> list[dict[str, Any]]:
    return [r for r in rules if r["to"].lower() != who.lower()]


class CifsAccessAllow(CifsExposer, AccessRuleChange):
    """Allow a user or @group, ro or rw: 'valid users' (+ 'read list'/'write list')."""

    verb = "allow"

    def __init__(
        self, config: StoreflowConfig, name: str, etag: int | None, rule: CifsAccessRule
    ) -> None:
        super().__init__(config, name, etag, rule.to)
        self.rule = rule.model_dump(mode="json")

    def parameters(self) -> dict[str, Any]:
        return {**super().parameters(), "access_level": self.rule["level"]}

    def desired(self, current: Spec | None) -> Spec | None:
        assert current is not None
        denied = [d for d in current.get("denied", []) if d.lower() != self.to.lower()]
        access = [*_without(current.get("access", []), self.to), self.rule]
        return {**current, "access": access, "denied": denied}


class CifsAccessDeny(CifsExposer, AccessRuleChange):
    """Deny a user or @group: out of every list, into 'invalid users'."""

    verb = "deny"

    def desired(self, current: Spec | None) -> Spec | None:
        assert current is not None
        denied = [d for d in current.get("denied", []) if d.lower() != self.to.lower()]
        access = _without(current.get("access", []), self.to)
        return {**current, "access": access, "denied": [*denied, self.to]}


def get_periodic_hook_data(exposers: list[ResourceView]) -> list[dict[str, Any]]:
    """What periodic hooks learn of each share: Manila's shares with their access rules."""
    return [
        {
            "id": e.id,
            "name": e.name,
            "space_id": e.parent_id,
            "status": e.status.value,
            "managed": bool(e.state.get("managed", True)),
            "path": e.state.get("path"),
            "read_only": e.spec.get("read_only"),
            "access_rules": [
                *(
                    {"access_to": r["to"], "access_level": r["level"]}
                    for r in e.spec.get("access", [])
                ),
                *({"access_to": d, "access_level": "deny"} for d in e.spec.get("denied", [])),
            ],
        }
        for e in exposers
    ]
