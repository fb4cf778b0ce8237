"""AuditHook: appends every operation to a JSON-lines log.

Options (read from the hook configuration):
- `audit_log_path`: the log file (default: $STOREFLOW_HOME/audit.jsonl).
"""

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from storeflow.models.settings import storeflow_home
from storeflow.tasks.hook_base import ActionResults, HookBase, HookContext


class AuditHook(HookBase):
    @property
    def log_path(self) -> Path:
        configured = self.get_config_option("audit_log_path")
        return Path(configured) if configured else storeflow_home() / "audit.jsonl"

    def _append(self, record: dict[str, Any]) -> None:
        record = {"time": datetime.now(UTC).isoformat(), "host": self.host, **record}
        line = json.dumps(record, default=str, sort_keys=True) + "\n"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        # One write() of a line opened O_APPEND: concurrent runs never interleave lines.
        fd = os.open(self.log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        try:
            os.write(fd, line.encode())
        finally:
            os.close(fd)

    @staticmethod
    def _describe(context: HookContext | None) -> dict[str, Any]:
        if context is None:
            return {}
        return {
            "kind": context.kind,
            "action": context.action,
            "resource": context.resource_name,
            "resource_id": context.resource_id,
            "flow_run_id": context.flow_run_id,
        }

    def _execute_pre_hook(
        self, context: HookContext | None, func_name: str | None, **kwargs: Any
    ) -> Any:
        started = datetime.now(UTC).isoformat()
        self._append({"event": "pre", "func_name": func_name, **self._describe(context)})
        return {"started": started}

    def _execute_post_hook(
        self,
        context: HookContext | None,
        func_name: str | None,
        pre_hook_data: Any,
        driver_action_results: ActionResults | None,
        **kwargs: Any,
    ) -> Any:
        results = driver_action_results
        self._append(
            {
                "event": "post",
                "func_name": func_name,
                "started": (pre_hook_data or {}).get("started")
                if isinstance(pre_hook_data, dict)
                else None,
                "status": results.status if results else None,
                "error": results.error if results else None,
                **self._describe(context),
            }
        )
        return None

    def _execute_periodic_hook(
        self, context: HookContext | None, periodic_hook_data: Any, **kwargs: Any
    ) -> Any:
        self._append({"event": "periodic", "data": periodic_hook_data})
        return None
