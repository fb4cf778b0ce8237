"""Hook drivers, OpenStack Manila style.

A driver subclasses `HookBase` and implements `_execute_pre_hook`,
`_execute_post_hook` and `_execute_periodic_hook`; operators name drivers as
`hook_drivers=path.to:Class,path.to:Other` and they run in that order.

Where Manila let its users down, storeflow goes further:
- post hooks also run when the operation failed; `driver_action_results.error`
  says why;
- a post hook may replace the result by returning an `ActionResults`;
- a pre hook may veto the operation by raising `HookVeto` (never suppressed).
"""

import abc
import importlib
import logging
import socket
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from storeflow.models.errors import InvalidInput, Refused
from storeflow.models.status import Status

LOG = logging.getLogger(__name__)


class HookVeto(Refused):
    """Raised by a pre hook to refuse the operation; the reason is shown to the user."""


class HookConfiguration(Protocol):
    def safe_get(self, key: str) -> Any: ...


@dataclass(frozen=True)
class HookContext:
    """What a hook knows about the operation it wraps (Manila's `context`)."""

    kind: str
    action: str
    resource_name: str
    resource_id: int | None = None
    flow_run_id: str | None = None
    flow_run_name: str | None = None
    parameters: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of_task(
        cls, kind: str, task_id: str, flow_run_id: str, label: str, definition: Any
    ) -> "HookContext":
        """A task run (a transfer, an execution): its id and definition as parameters."""
        return cls(
            kind=kind,
            action="run",
            resource_name=task_id,
            flow_run_id=flow_run_id,
            flow_run_name=label,
            parameters={"task_id": task_id, "definition": definition.model_dump(mode="json")},
        )


@dataclass(frozen=True)
class ActionResults:
    """The outcome of the wrapped operation, as post hooks see it.

    A post hook that returns a new `ActionResults` (e.g. `results.replace(
    status=Status.ERRORED, message="verification failed")`) replaces it.
    """

    status: Status | None
    resource: dict[str, Any] | None = None
    error: str | None = None
    message: str | None = None
    # True when the operation was refused before it touched anything
    # (etag conflict, busy, veto, bad input): `status` is then None.
    refused: bool = False

    @property
    def succeeded(self) -> bool:
        return self.error is None and self.status not in (None, Status.ERRORED)

    def replace(self, **changes: Any) -> "ActionResults":
        return replace(self, **changes)


_MANILA_DEFAULTS: dict[str, Any] = {
    "enable_pre_hooks": True,
    "enable_post_hooks": True,
    "enable_periodic_hooks": True,
    "suppress_pre_hooks_errors": False,
    "suppress_post_hooks_errors": False,
    "periodic_hooks_interval": 300.0,
}


class HookBase(abc.ABC):
    def __init__(self, configuration: HookConfiguration | None = None, host: str | None = None):
        self.host = host or socket.gethostname()
        self.configuration = configuration
        self.pre_hooks_enabled = bool(self.get_config_option("enable_pre_hooks"))
        self.post_hooks_enabled = bool(self.get_config_option("enable_post_hooks"))
        self.periodic_hooks_enabled = bool(self.get_config_option("enable_periodic_hooks"))
        self.suppress_pre_hooks_errors = bool(self.get_config_option("suppress_pre_hooks_errors"))
        self.suppress_post_hooks_errors = bool(self.get_config_option("suppress_post_hooks_errors"))

    def get_config_option(self, key: str) -> Any:
        value = self.configuration.safe_get(key) if self.configuration else None
        return _MANILA_DEFAULTS.get(key) if value is None else value

    def execute_pre_hook(
        self, context: HookContext | None = None, func_name: str | None = None, **kwargs: Any
    ) -> Any:
        """Hook called before the operation; its return value reaches the post hook."""
        if not self.pre_hooks_enabled:
            return None
        try:
            return self._execute_pre_hook(context=context, func_name=func_name, **kwargs)
        except HookVeto:
            raise
        except Exception as exc:
            if not self.suppress_pre_hooks_errors:
                raise
            LOG.warning("Suppressed exception in pre hook of %s: %s", type(self).__name__, exc)
            return exc

    def execute_post_hook(
        self,
        context: HookContext | None = None,
        func_name: str | None = None,
        pre_hook_data: Any = None,
        driver_action_results: ActionResults | None = None,
        **kwargs: Any,
    ) -> Any:
        """Hook called after the operation, whether it succeeded or failed."""
        if not self.post_hooks_enabled:
            return None
        try:
            return self._execute_post_hook(
                context=context,
                func_name=func_name,
                pre_hook_data=pre_hook_data,
                driver_action_results=driver_action_results,
                **kwargs,
            )
        except Exception as exc:
            if not self.suppress_post_hooks_errors:
                raise
            LOG.warning("Suppressed exception in post hook of %s: %s", type(self).__name__, exc)
            return exc

    def execute_periodic_hook(
        self, context: HookContext | None, periodic_hook_data: Any, **kwargs: Any
    ) -> Any:
        """Hook called on a schedule with every kind's `get_periodic_hook_data`."""
        if not self.periodic_hooks_enabled:
            return None
        return self._execute_periodic_hook(context, periodic_hook_data, **kwargs)

    @abc.abstractmethod
    def _execute_pre_hook(
        self, context: HookContext | None, func_name: str | None, **kwargs: Any
    ) -> Any:
        """Redefine this method for pre hook action."""

    @abc.abstractmethod
    def _execute_post_hook(
        self,
        context: HookContext | None,
        func_name: str | None,
        pre_hook_data: Any,
        driver_action_results: ActionResults | None,
        **kwargs: Any,
    ) -> Any:
        """Redefine this method for post hook action."""

    @abc.abstractmethod
    def _execute_periodic_hook(
        self, context: HookContext | None, periodic_hook_data: Any, **kwargs: Any
    ) -> Any:
        """Redefine this method for periodic hook action."""


# Shipped drivers were `tasks.hook_drivers.*` before everything moved under `storeflow`:
# configurations saved then keep working.
LEGACY_DRIVERS = "tasks.hook_drivers."


def load_driver_class(path: str) -> type[HookBase]:
    """Import 'module.path:ClassName' and check it is a hook driver."""
    module_name, sep, class_name = path.partition(":")
    if not sep or not module_name or not class_name:
        raise InvalidInput("hook_drivers", f"{path!r} is not of the form 'module.path:ClassName'")
    if module_name.startswith(LEGACY_DRIVERS):
        module_name = f"storeflow.{module_name}"  # named before storeflow had one namespace
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise InvalidInput("hook_drivers", f"cannot import {module_name!r}: {exc}") from None
    cls = getattr(module, class_name, None)
    if not (isinstance(cls, type) and issubclass(cls, HookBase)):
        raise InvalidInput("hook_drivers", f"{path!r} is not a HookBase subclass")
    return cls


def load_drivers(configuration: HookConfiguration, paths: list[str]) -> list[HookBase]:
    return [load_driver_class(path)(configuration) for path in paths]
