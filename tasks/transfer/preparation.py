"""What a transfer flow works out before its steps: the task's identity, its definition
from an OTF config directory, and its callbacks with their sandbox settings."""

from pathlib import Path
from typing import Any

from storeflow.blocks.sandbox import SandboxPolicy
from storeflow.models.transfer import DefinitionError, TransferDefinition
from storeflow.sandbox.definitions import CallbackDefinition, discover
from storeflow.sandbox.settings import SandboxSettings, as_settings
from storeflow.sandbox.stages import CallbackSet


def task_id_of(definition: Any, name: str | None) -> str:
    """The transfer task's identity: its name, else its source directory."""
    if name:
        return name
    if isinstance(definition, TransferDefinition):
        return definition.source.directory
    if isinstance(definition, dict):
        return str(definition.get("source", {}).get("directory", "transfer"))
    return "transfer"


def load_raw(config_dir: str, name: str | None) -> Any:
    """The task `name` of an OTF config directory, rendered (not validated)."""
    from storeflow.tasks.otf.config import load_task

    if not name:
        raise DefinitionError("(parameters)", [("name", "config_dir needs the task id as name")])
    return load_task(config_dir, name)


def sandbox_settings(policy: str | None, callbacks_dir: str | None) -> SandboxSettings:
    """The policy block's settings (defaults without one); `callbacks_dir` replaces its
    hook directories for this run."""
    settings = as_settings(SandboxPolicy.load(policy) if policy else None)
    if callbacks_dir:
        root = Path(callbacks_dir).absolute()
        settings = settings.model_copy(
            update={"python_hooks_dir": root, "javascript_hooks_dir": root}
        )
    return settings


def callback_set(
    task_id: str,
    callbacks: list[CallbackDefinition] | None,
    callbacks_dir: str | None,
    sandbox_policy: str | None,
) -> CallbackSet:
    """A transfer's callbacks: those found by the policy's (or `callbacks_dir`'s) hook
    directories, then the inline ones.  Raises when a jail is incomplete."""
    settings = sandbox_settings(sandbox_policy, callbacks_dir)
    found = discover(settings) if (sandbox_policy or callbacks_dir) else []
    return CallbackSet([*found, *(callbacks or [])], task_id=task_id, policy=settings)
