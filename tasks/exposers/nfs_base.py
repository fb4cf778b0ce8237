"""What the two NFS backends (kernel exportfs, nfs-ganesha) share: the block's policy on
clients and squashing, clash rules, and names for exports found in the admin's files."""

import re
from pathlib import Path
from typing import Any

from storeflow.blocks.nfs import NfsBlock
from storeflow.models.errors import InvalidInput, Refused
from storeflow.models.exposers import EVERYONE, MigrationMode
from storeflow.tasks.exposers.backend import Backend, ConfigRejected

KIND = "nfs-exposer"
SQUASH_OPTIONS = ("root_squash", "no_root_squash", "all_squash")


class NfsBackend(Backend):
    kind = KIND

    def __init__(self, block: NfsBlock) -> None:
        self.block = block

    @property
    def migration_mode(self) -> MigrationMode:
        return self.block.migration_mode

    def check_rule_policy(self, spec: dict[str, Any]) -> None:
        for index, rule in enumerate(spec.get("clients", [])):
            field = f"nfs-exposer.clients.{index}"
            if rule["client"] == EVERYONE and not self.block.allow_everyone:
                raise InvalidInput(f"{field}.client", "'*' (every host) is not allowed here")
            if rule["squash"] == "no_root_squash" and not self.block.allow_no_root_squash:
                raise InvalidInput(f"{field}.squash", "no_root_squash is not allowed here")

    def check_client_policy(self, client: str, squash: str, where: str) -> None:
        """The same policy, applied by the validators to what is about to be written."""
        if client == EVERYONE and not self.block.allow_everyone:
            raise ConfigRejected(f"{where}: client '*' is not allowed")
        if squash.lower() == "no_root_squash" and not self.block.allow_no_root_squash:
            raise ConfigRejected(f"{where}: no_root_squash is not allowed")

    def clashes(self, name: str, spec: dict[str, Any], others: dict[str, dict[str, Any]]) -> None:
        key = self.clash_key(name, spec)
        for other, other_spec in others.items():
            if self.clash_key(other, other_spec) == key:
                raise Refused(f"{key} is already exported by {other!r}")

    def clash_key(self, name: str, spec: dict[str, Any]) -> str:
        """What two exports may not share (kernel: the directory; ganesha: the pseudo path)."""
        return str(spec.get("path", ""))


def foreign_name(path: Path | str, taken: set[str]) -> str:
    """A resource name for an export found in the admin's files: its last path component."""
    base = re.sub(r"[^A-Za-z0-9._-]+", "-", Path(path).name).strip(".-_") or "export"
    base = base[:55]
    name, number = base, 2
    while name in taken:
        name, number = f"{base}-{number}", number + 1
    taken.add(name)
    return name
