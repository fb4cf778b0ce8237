"""Open Task Framework execution and batch definitions, and the loader of any OTF task.

An OTF task is one JSON object whose ``type`` says what it is: ``transfer`` (see
models/transfer.py), ``execution`` (a command run by a protocol's execution handler) or
``batch`` (other tasks by id, ordered by dependencies).  Field names are OTF's own: the
batch's are snake_case (``order_id``, ``continue_on_fail``) as OTF spells them.

Deliberate differences from OTF:

- A batch's ``order_id`` values must be unique, and every dependency must name one of
  them without a cycle: OTF accepts such a batch and then waits until the timeouts.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from storeflow.models.bounds import BoundError, check_document
from storeflow.models.transfer import (
    DefinitionError,
    TransferDefinition,
    _problems,
    parse_definition,
)

#: OTF's defaults for a batch task (opentaskpy.taskhandlers.batch).
BATCH_TASK_TIMEOUT = 300

NonEmpty = Annotated[str, Field(min_length=1)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LocalExecutionProtocol(_Strict):
    name: Literal["local", "opentaskpy.remotehandlers.local.LocalExecution"]


class ExecutionDefinition(_Strict):
    """``type: execution``: ``command`` run by ``/bin/sh`` in ``directory`` (OTF's local
    execution); the exit status decides the outcome."""

    type: Literal["execution"]
    directory: NonEmpty
    command: NonEmpty
    protocol: LocalExecutionProtocol
    variables: dict[str, Any] | None = None


class AddonProtocol(BaseModel):
    """An OTF addon's protocol object: its handler's fully qualified class name, and
    whatever the addon's own JSON schema accepts (checked when it runs)."""

    model_config = ConfigDict(extra="allow", frozen=True)

    name: str = Field(pattern=r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*){2,}$")


class AddonExecutionDefinition(BaseModel):
    """``type: execution`` run by an installed OTF addon's ``RemoteExecutionHandler``
    (``protocol.name`` its class); the addon's schemas judge the other fields."""

    model_config = ConfigDict(extra="allow", frozen=True)

    type: Literal["execution"]
    protocol: AddonProtocol


class BatchTask(_Strict):
    """One task of a batch, by its id (the name of its file in the config directory)."""

    order_id: int = Field(ge=1)
    task_id: NonEmpty
    timeout: int = Field(BATCH_TASK_TIMEOUT, ge=1, description="Seconds (OTF: 300)")
    continue_on_fail: bool = False
    retry_on_rerun: bool = False
    dependencies: list[Annotated[int, Field(ge=1)]] = Field(default_factory=list)


class BatchDefinition(_Strict):
    """``type: batch``: tasks run as soon as their dependencies have succeeded."""

    type: Literal["batch"]
    tasks: list[BatchTask] = Field(min_length=1)
    variables: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _graph(self) -> BatchDefinition:
        ids = [t.order_id for t in self.tasks]
        duplicate = sorted({i for i in ids if ids.count(i) > 1})
        if duplicate:
            raise ValueError(f"order_id {duplicate[0]} is used by more than one task")
        known = set(ids)
        for task in self.tasks:
            missing = [d for d in task.dependencies if d not in known]
            if missing:
                raise ValueError(
                    f"task {task.order_id} ({task.task_id}) depends on order_id {missing[0]}, "
                    "which is not in the batch"
                )
        after = {t.order_id: set(t.dependencies) for t in self.tasks}
        done: set[int] = set()
        while len(done) < len(after):
            ready = [i for i, deps in after.items() if i not in done and deps <= done]
            if not ready:
                cycle = sorted(set(after) - done)
                raise ValueError(f"dependencies form a cycle among order_id {cycle}")
            done.update(ready)
        return self


OTFTask = TransferDefinition | ExecutionDefinition | AddonExecutionDefinition | BatchDefinition

_LOCAL_EXECUTION = "opentaskpy.remotehandlers.local.LocalExecution"


def _addon_execution(data: dict[str, Any]) -> bool:
    protocol = data.get("protocol")
    name = protocol.get("name") if isinstance(protocol, dict) else None
    return isinstance(name, str) and "." in name and name != _LOCAL_EXECUTION


def parse_task(data: Any, source: str = "<definition>") -> OTFTask:
    """Any OTF task by its ``type``; raise DefinitionError naming every bad field."""
    if not isinstance(data, dict):
        raise DefinitionError(source, [("(definition)", "expected a JSON object")])
    kind = data.get("type")
    if kind == "transfer":
        return parse_definition(data, source)
    model: type[ExecutionDefinition] | type[AddonExecutionDefinition] | type[BatchDefinition]
    if kind == "execution" and _addon_execution(data):
        model = AddonExecutionDefinition
    elif kind == "execution":
        model = ExecutionDefinition
    elif kind == "batch":
        model = BatchDefinition
    else:
        raise DefinitionError(
            source, [("type", f"{kind!r} is not one of 'transfer', 'execution', 'batch'")]
        )
    try:
        check_document(data)
    except BoundError as exc:
        raise DefinitionError(source, [(exc.field or "(definition)", exc.reason)]) from None
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise DefinitionError(source, _problems(exc)) from None
