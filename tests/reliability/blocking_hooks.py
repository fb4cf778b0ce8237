"""A hook driver that holds the run in its post hook until the test says go: the test
stops the Prefect server there, after the work was done and recorded."""

import os
import time
from pathlib import Path
from typing import Any

from storeflow.tasks.hook_base import ActionResults, HookBase, HookContext


class HoldAfterWork(HookBase):
    def _execute_pre_hook(
        self, context: HookContext | None, func_name: str | None, **kwargs: Any
    ) -> Any:
        return None

    def _execute_post_hook(
        self,
        context: HookContext | None,
        func_name: str | None,
        pre_hook_data: Any,
        driver_action_results: ActionResults | None,
        **kwargs: Any,
    ) -> Any:
        here, go = Path(os.environ["HOLD_HERE"]), Path(os.environ["HOLD_GO"])
        here.write_text("holding")
        deadline = time.monotonic() + 120
        while not go.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        return None

    def _execute_periodic_hook(
        self, context: HookContext | None, periodic_hook_data: Any, **kwargs: Any
    ) -> Any:
        return None
