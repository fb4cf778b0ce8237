"""What a server backend (Samba, kernel NFS, nfs-ganesha) gives the exposer operations.

The operations (tasks/exposers/operations.py) and the reconciler are written
once against this interface; a backend knows its file format, its own
validator, how to make a file live, and where unmanaged shares hide.
"""

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import sh

from storeflow.models.errors import OperationFailed
from storeflow.models.exposers import MigrationMode
from storeflow.tasks.exposers.configfile import ConfigEdit, lock_path


class ConfigRejected(OperationFailed):
    """The server's own check (or storeflow's validator) rejected a configuration."""


class ActivationFailed(OperationFailed):
    """The configuration is valid but the server did not take it."""


@dataclass(frozen=True)
class Foreign:
    """A share or export storeflow did not create, as found in the admin's files."""

    name: str  # the resource name it is recorded under
    source: Path  # the file it is in
    path: Path | None  # the directory it shares
    options: dict[str, Any] = field(default_factory=dict)


class Backend(ABC):
    kind: ClassVar[str]  # the resource kind: cifs-exposer, nfs-exposer
    what: ClassVar[str]  # for messages and the managed file's header

    @property
    @abstractmethod
    def managed_path(self) -> Path:
        """The file storeflow owns."""

    @property
    @abstractmethod
    def migration_mode(self) -> MigrationMode: ...

    def lock(self) -> ConfigEdit:
        return ConfigEdit(lock_path(self.managed_path))

    @abstractmethod
    def in_use(self) -> bool:
        """Whether the server is set up to read the managed file (else reconcile skips it)."""

    @abstractmethod
    def preflight(self) -> None:
        """Refuse (Refused) when the server is not set up to read the managed file."""

    @abstractmethod
    def check_rule_policy(self, spec: dict[str, Any]) -> None:
        """Refuse what the block does not allow (`*`, no_root_squash, guests)."""

    def prepare(
        self, spec: dict[str, Any], blocks: dict[str, str], previous: str | None
    ) -> dict[str, Any]:
        """What the block needs beyond the spec (ganesha: an Export_Id, kept across
        updates from the `previous` block). Default: nothing."""
        return {}

    @abstractmethod
    def render(self, name: str, spec: dict[str, Any], path: Path, extra: dict[str, Any]) -> str:
        """The block for one exposer, from a checked spec."""

    @abstractmethod
    def validate(self, text: str) -> None:
        """storeflow's own check of a managed file's full text (ConfigRejected)."""

    @abstractmethod
    def check_config(self) -> None:
        """The server's own check of the live files, where it has one (ConfigRejected)."""

    @abstractmethod
    def activate(self, removed: list[str]) -> None:
        """Make the files live; `removed` exposers lose their open sessions too."""

    @abstractmethod
    def foreign(self) -> list[Foreign]:
        """Shares or exports in files storeflow does not own."""

    @abstractmethod
    def remove_foreign(self, edit: ConfigEdit, entry: Foreign) -> None:
        """Take an adopted share out of the admin's file, leaving every other byte."""

    @abstractmethod
    def adopt_spec(self, entry: Foreign, space: str) -> dict[str, Any]:
        """The spec of a foreign share (InvalidInput if storeflow cannot express it)."""

    def clashes(self, name: str, spec: dict[str, Any], others: dict[str, dict[str, Any]]) -> None:
        """Refuse a spec that collides with another exposer's (`others`: name -> spec)."""


def run_tool(argv: list[str], timeout: float, what: str) -> str:
    """Run a server tool through `sh`; its output, or an error naming the tool and what it
    said (ConfigRejected when it ran and refused, ActivationFailed when it could not run)."""
    try:
        command = sh.Command(argv[0])
        return str(command(*argv[1:], _timeout=timeout, _env=_TOOL_ENV))
    except sh.ErrorReturnCode as exc:
        output = (exc.stderr or exc.stdout or b"").decode(errors="replace").strip()
        said = " | ".join(output.splitlines()[-5:])
        raise ConfigRejected(f"{what}: {argv[0]} exited {exc.exit_code}: {said}") from None
    except sh.TimeoutException:
        raise ActivationFailed(f"{what}: {argv[0]} took longer than {timeout:g}s") from None
    except (sh.CommandNotFound, OSError) as exc:
        raise ActivationFailed(f"{what}: cannot run {argv[0]}: {exc}") from None


# Tools run with a fixed, minimal environment: their output is parsed and must not
# depend on the caller's locale.
_TOOL_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C"}
