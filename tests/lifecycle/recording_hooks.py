"""Hook drivers for the tests: they record what they see in a JSON-lines file."""

import json
import os
from pathlib import Path
from typing import Any

from storeflow.models.status import Status
from storeflow.tasks.hook_base import ActionResults, HookBase, HookContext, HookVeto


def record(kind: str, **fields: Any) -> None:
    path = Path(os.environ["STOREFLOW_HOME"]) / "hook-calls.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as log:
        log.write(json.dumps({"driver": kind, **fields}, default=str) + "\n")


def calls() -> list[dict[str, Any]]:
    path = Path(os.environ["STOREFLOW_HOME"]) / "hook-calls.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


class Recorder(HookBase):
    name = "first"

    def _execute_pre_hook(
        self, context: HookContext | None, func_name: str | None, **kwargs: Any
    ) -> Any:
        record(
            self.name,
            hook="pre",
            func_name=func_name,
            resource=context.resource_name if context else None,
        )
        return f"{self.name}-pre-data"

    def _execute_post_hook(
        self,
        context: HookContext | None,
        func_name: str | None,
        pre_hook_data: Any,
        driver_action_results: ActionResults | None,
        **kwargs: Any,
    ) -> Any:
        assert driver_action_results is not None
        record(
            self.name,
            hook="post",
            func_name=func_name,
            pre_hook_data=pre_hook_data,
            status=driver_action_results.status,
            error=driver_action_results.error,
        )
        return None

    def _execute_periodic_hook(
        self, context: HookContext | None, periodic_hook_data: Any, **kwargs: Any
    ) -> Any:
        record(self.name, hook="periodic", data=periodic_hook_data)
        return None


class SecondRecorder(Recorder):
    name = "second"


class FailingPre(Recorder):
    name = "failing"

    def _execute_pre_hook(
        self, context: HookContext | None, func_name: str | None, **kwargs: Any
    ) -> Any:
        raise RuntimeError("pre hook exploded")


class Vetoing(Recorder):
    name = "veto"

    def _execute_pre_hook(
        self, context: HookContext | None, func_name: str | None, **kwargs: Any
    ) -> Any:
        if context and context.resource_name.startswith("forbidden"):
            raise HookVeto("names starting with 'forbidden' are reserved")
        return None


class Verifier(Recorder):
    """A post hook that replaces a success with ERRORED (e.g. an external check failed)."""

    name = "verifier"

    def _execute_post_hook(
        self,
        context: HookContext | None,
        func_name: str | None,
        pre_hook_data: Any,
        driver_action_results: ActionResults | None,
        **kwargs: Any,
    ) -> Any:
        assert driver_action_results is not None
        if driver_action_results.succeeded and context and context.resource_name == "unverified":
            return driver_action_results.replace(
                status=Status.ERRORED, message="verification failed"
            )
        return None


class FailingPost(Recorder):
    name = "failing-post"

    def _execute_post_hook(
        self,
        context: HookContext | None,
        func_name: str | None,
        pre_hook_data: Any,
        driver_action_results: ActionResults | None,
        **kwargs: Any,
    ) -> Any:
        raise RuntimeError("post hook exploded")


class OptionReader(Recorder):
    """Records the options it reads the Manila way (`get_config_option`)."""

    name = "options"

    def _execute_pre_hook(
        self, context: HookContext | None, func_name: str | None, **kwargs: Any
    ) -> Any:
        record(
            self.name,
            hook="pre",
            endpoint=self.get_config_option("endpoint"),
            interval=self.get_config_option("periodic_hooks_interval"),
            missing=self.get_config_option("not-set"),
        )
        return None
