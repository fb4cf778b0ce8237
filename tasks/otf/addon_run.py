"""A transfer with OTF addon ends, around storeflow's own steps: the addon's files
staged through the worker (tasks/otf/addons.py), or the addon's own direct transfer."""

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from prefect import get_run_logger
from prefect.states import Completed, Failed, State

from storeflow.models.errors import StoreflowError
from storeflow.models.transfer import TransferDefinition, parse_definition
from storeflow.tasks.otf import addons
from storeflow.tasks.transfer.steps import by_ref


def run_with_addons(
    data: dict[str, Any],
    task_id: str,
    run: Callable[[TransferDefinition, str], State[Any]],
) -> State[Any]:
    """Run `data` (an OTF definition naming addons): `run` is storeflow's transfer of
    what the addons staged; a refusal or an addon's failure is the run's final state."""
    label = f"transfer/{task_id}"
    try:
        addons.check(data, label)
    except StoreflowError as exc:
        return Failed(name="Refused", message=f"{label}: {exc}")
    with (
        tempfile.TemporaryDirectory(prefix="storeflow-otf-") as staging,
        addons.addon_logs_to(get_run_logger()),
    ):
        try:
            addon = addons.AddonTransfer.open(data, task_id, Path(staging))
        except StoreflowError as exc:
            return Failed(name="Refused", message=f"{label}: {exc}")
        try:
            if addon.direct:
                addons.addon_direct(by_ref(addon))
                return Completed(
                    name="Delivered", message=f"{label}: {len(addon.pulled)} files, direct"
                )
            if addon.source is not None:
                addons.addon_pull(by_ref(addon))
            definition = parse_definition(addon.storeflow_definition(), task_id)
            state = run(definition, task_id)
            if not state.is_completed():
                return state
            delivered = state.data.get("files", []) if isinstance(state.data, dict) else []
            addons.addon_push(by_ref(addon), list(delivered))
            return state
        except StoreflowError as exc:
            return Failed(name="Errored", message=f"{label}: {exc}")
        finally:
            addon.tidy()
