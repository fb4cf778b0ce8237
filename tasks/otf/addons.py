"""OTF addons, unmodified: a transfer whose source or destination names an addon's
handler by its fully qualified class name (``opentaskpy.addons.x.remotehandlers.x.XTransfer``).

Needs ``opentaskpy`` (``pip install storeflow[otf]``) and the addon installed.

- The definition is validated by the addon's own JSON schemas, found as OTF finds them
  (schema discovery: ``<package>/schemas/transfer/<module>_source.json`` and
  ``_destination.json`` beside the handler's module), then by OTF's
  ``validate_transfer_json``; a refusal names the field.
- The addon's handler runs inside the transfer flow and is staged through the worker
  (OTF's proxy transfer, what every addon with ``supports_direct_transfer() == False``
  gets): an addon source's files are pulled into a private staging directory, which
  storeflow then delivers from; an addon destination gets storeflow's delivery into a
  staging directory, then ``push_files_from_worker`` (as in OTF, which calls
  ``move_files_to_final_location`` only for its own ssh handler: S3's raises
  NotImplementedError).  ``list_files`` gets the source's ``fileRegex`` as
  ``file_pattern``, as OTF gives it.  Wherever storeflow's own handler is the destination,
  delivery is storeflow's (atomic renames, mtimes, callbacks).  A source addon's
  ``postCopyAction`` is the addon's ``handle_post_copy_action``, after every destination
  has its files.  When the source and every destination are the same addon and it
  ``supports_direct_transfer()``, its ``transfer_files`` is used instead, as in OTF.
- A return code other than 0, or an exception, from any addon method is an error naming
  the addon, the method and what it returned.
- The addon's logger (``opentaskpy.otflogging``) goes to the run's log.  OTF's own log
  files are not written (``OTF_NO_LOG``), unless the environment says otherwise.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from storeflow.models.errors import StoreflowError
from storeflow.models.transfer import DefinitionError

SIDES = ("source", "destination")
#: Where OTF's schemas expect their ``$id``s to live; mapped onto the addon's files.
SCHEMA_BASE = "http://localhost/"


class AddonError(StoreflowError):
    """An addon could not be used, or one of its methods failed."""


def _registered(name: str) -> bool:
    from storeflow.models.protocols import registry

    return registry().find(name) is not None


def is_addon(name: Any) -> bool:
    """A protocol name that is a class path and not one of storeflow's own protocols."""
    return isinstance(name, str) and "." in name and not _registered(name)


def _specs(data: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(field path, spec) of the source and each destination."""
    found: list[tuple[str, dict[str, Any]]] = []
    if isinstance(data.get("source"), dict):
        found.append(("source", data["source"]))
    for i, dest in enumerate(data.get("destination") or []):
        if isinstance(dest, dict):
            found.append((f"destination.{i}", dest))
    return found


def _name(spec: dict[str, Any]) -> Any:
    protocol = spec.get("protocol")
    return protocol.get("name") if isinstance(protocol, dict) else None


def uses_addons(data: Any) -> bool:
    """Whether a transfer definition (as written) names an addon protocol."""
    return (
        isinstance(data, dict)
        and data.get("type") == "transfer"
        and any(is_addon(_name(spec)) for _, spec in _specs(data))
    )


def addon_class(name: str, where: str = "protocol.name") -> type[Any]:
    """The addon's handler class, imported as OTF imports it."""
    return _handler_class(name, where, "RemoteTransferHandler")


def execution_class(name: str) -> type[Any]:
    """An addon's ``RemoteExecutionHandler`` class, imported as OTF imports it."""
    return _handler_class(name, "protocol.name", "RemoteExecutionHandler")


def _handler_class(name: str, where: str, base_name: str) -> type[Any]:
    """`name` ('package.module.Class') imported, checked to subclass OTF's `base_name`."""
    try:
        from opentaskpy.remotehandlers import remotehandler  # type: ignore[import-not-found]
    except ImportError:
        raise DefinitionError(
            where, [(where, f"{name} is an OTF addon: install storeflow[otf] (opentaskpy)")]
        ) from None
    module_name, _, class_name = name.rpartition(".")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise DefinitionError(
            where, [(where, f"{name}: the addon is not installed ({exc})")]
        ) from None
    cls = getattr(module, class_name, None)
    if not (isinstance(cls, type) and issubclass(cls, getattr(remotehandler, base_name))):
        raise DefinitionError(where, [(where, f"{name} is not an OTF {base_name}")])
    return cls


def check_execution(data: dict[str, Any], source: str) -> type[Any]:
    """An addon execution validated by the addon's schema (OTF's discovery:
    ``schemas/execution/<module>/<module>.json``); returns its handler class."""
    from jsonschema import Draft202012Validator  # type: ignore[import-untyped]
    from jsonschema.exceptions import best_match  # type: ignore[import-untyped]
    from referencing import Registry, Resource

    name = str(data["protocol"]["name"])
    cls = execution_class(name)
    root = _schema_dir(name)
    short = name.split(".")[-2]
    path = root / "execution" / short / f"{short}.json"
    if not path.is_file():
        raise DefinitionError(source, [("protocol.name", f"{name} has no execution schema")])

    def retrieve(uri: str) -> Resource[Any]:
        relative = uri.removeprefix(SCHEMA_BASE)
        return Resource.from_contents(json.loads((root / relative).read_text("utf-8")))

    schema = json.loads(path.read_text("utf-8"))
    validator = Draft202012Validator(schema, registry=Registry(retrieve=retrieve))  # type: ignore[call-arg]
    error = best_match(validator.iter_errors(data))
    if error is not None:
        where = ".".join(str(p) for p in error.absolute_path) or "(definition)"
        raise DefinitionError(source, [(where, error.message)])
    return cls


def _schema_dir(name: str) -> Path:
    """OTF's schema discovery: the package above the handler's module, ``schemas/``."""
    package = ".".join(name.split(".")[:-2])
    return Path(str(files(package).joinpath("schemas")))


def schema_problems(data: dict[str, Any]) -> list[tuple[str, str]]:
    """Every problem the addons' schemas find, by field path; then OTF's own verdict."""
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import best_match
    from referencing import Registry, Resource

    problems: list[tuple[str, str]] = []
    for where, spec in _specs(data):
        name = _name(spec)
        if not is_addon(name):
            continue
        addon_class(str(name), f"{where}.protocol.name")
        side = "source" if where == "source" else "destination"
        root = _schema_dir(str(name))
        path = root / "transfer" / f"{str(name).split('.')[-2]}_{side}.json"
        if not path.is_file():
            problems.append((f"{where}.protocol.name", f"{name} has no {side} schema ({path})"))
            continue

        def retrieve(uri: str, root: Path = root) -> Resource[Any]:
            relative = uri.removeprefix(SCHEMA_BASE)
            return Resource.from_contents(json.loads((root / relative).read_text("utf-8")))

        schema = json.loads(path.read_text("utf-8"))
        validator = Draft202012Validator(schema, registry=Registry(retrieve=retrieve))  # type: ignore[call-arg]
        checked = {k: v for k, v in spec.items() if k != "task_id"}
        error = best_match(validator.iter_errors(checked))
        if error is not None:
            field_path = ".".join([where, *(str(p) for p in error.absolute_path)])
            problems.append((field_path, error.message))
    if not problems:
        from opentaskpy.config.schemas import (  # type: ignore[import-not-found]
            validate_transfer_json,
        )

        # OTF's validator fills in defaults: give it a copy.
        if not validate_transfer_json(json.loads(json.dumps(data))):
            problems.append(("(definition)", "refused by OTF's validate_transfer_json"))
    return problems


def check(data: dict[str, Any], source: str) -> None:
    problems = schema_problems(data)
    if problems:
        raise DefinitionError(source, problems)


# -- running ----------------------------------------------------------------------------


class _ToRunLog(logging.Handler):
    def __init__(self, target: logging.Logger | logging.LoggerAdapter[Any]) -> None:
        super().__init__()
        self.target = target

    def emit(self, record: logging.LogRecord) -> None:
        self.target.log(record.levelno, "%s", record.getMessage())


@contextmanager
def addon_logs_to(target: logging.Logger | logging.LoggerAdapter[Any]) -> Iterator[None]:
    """Every ``opentaskpy.*`` logger's records (addons log under it) to `target`."""
    os.environ.setdefault("OTF_NO_LOG", "1")  # no OTF log files in the working directory
    handler = _ToRunLog(target)
    otf = logging.getLogger("opentaskpy")
    otf.addHandler(handler)
    try:
        yield
    finally:
        otf.removeHandler(handler)


def call(handler: Any, method: str, *args: Any, **kwargs: Any) -> Any:
    """An addon method; a non-zero return code or an exception as an AddonError."""
    what = f"{type(handler).__module__}.{type(handler).__name__}.{method}"
    try:
        result = getattr(handler, method)(*args, **kwargs)
    except Exception as exc:
        raise AddonError(f"{what} raised {type(exc).__name__}: {exc}") from exc
    if isinstance(result, int) and not isinstance(result, bool) and result != 0:
        raise AddonError(f"{what} returned {result} (failure)")
    return result


def instantiate(cls: type[Any], spec: dict[str, Any], task_id: str) -> Any:
    try:
        handler = cls({**spec, "task_id": task_id})
    except Exception as exc:
        raise AddonError(f"{cls.__module__}.{cls.__name__}: {type(exc).__name__}: {exc}") from exc
    logger = getattr(handler, "logger", None)
    if isinstance(logger, logging.Logger) and logger.getEffectiveLevel() > logging.INFO:
        logger.setLevel(logging.INFO)  # OTF sets the root's level: the run log wants INFO
    return handler


@dataclass
class AddonTransfer:
    """One transfer with addon ends, staged through `staging`."""

    data: dict[str, Any]
    task_id: str
    staging: Path
    source: Any = None  # the source's addon handler, if it is one
    destinations: dict[int, Any] = field(default_factory=dict)  # index -> addon handler
    pulled: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def open(cls, data: dict[str, Any], task_id: str, staging: Path) -> AddonTransfer:
        run = cls(data=data, task_id=task_id, staging=staging)
        source = data["source"]
        if is_addon(_name(source)):
            for unsupported in ("fileWatch", "logWatch", "conditionals"):
                if unsupported in source:
                    raise DefinitionError(
                        task_id,
                        [(f"source.{unsupported}", "not supported with an OTF addon source")],
                    )
            run.source = instantiate(addon_class(_name(source)), source, task_id)
        for i, dest in enumerate(data.get("destination") or []):
            if is_addon(_name(dest)):
                run.destinations[i] = instantiate(addon_class(_name(dest)), dest, task_id)
        if run.destinations and run.source is None and source.get("postCopyAction"):
            # storeflow's post-copy action runs once its own delivery is done, which
            # here is the staging directory: the source would change before the addon
            # destination has the files.
            raise DefinitionError(
                task_id,
                [("source.postCopyAction", "not supported with an OTF addon destination")],
            )
        return run

    @property
    def direct(self) -> bool:
        """Source and every destination the same addon, which transfers directly."""
        dests = self.data.get("destination") or []
        return (
            self.source is not None
            and len(self.destinations) == len(dests) > 0
            and all(_name(d) == _name(self.data["source"]) for d in dests)
            and bool(call(self.source, "supports_direct_transfer"))
        )

    def handlers(self) -> list[Any]:
        return [h for h in (self.source, *self.destinations.values()) if h is not None]

    def pull(self) -> int:
        """The addon source's files into the staging directory; how many."""
        assert self.source is not None
        spec = self.data["source"]
        self.pulled = dict(
            call(self.source, "list_files", file_pattern=self.data["source"].get("fileRegex")) or {}
        )
        into = self.staging / "source"
        into.mkdir(parents=True, exist_ok=True)
        if self.pulled:
            call(self.source, "pull_files_to_worker", self.pulled, str(into))
        elif spec.get("error", True):
            raise AddonError(f"no files found matching {spec.get('fileRegex')!r}")
        return len(self.pulled)

    def storeflow_definition(self) -> dict[str, Any]:
        """The definition storeflow runs: staging directories where the addons are."""
        data = json.loads(json.dumps(self.data))
        if self.source is not None:
            data["source"] = {
                "directory": str(self.staging / "source"),
                "fileRegex": ".*",
                "protocol": {"name": "local"},
                "error": bool(self.data["source"].get("error", True)),
            }
        for i in self.destinations:
            (self.staging / f"destination-{i}").mkdir(parents=True, exist_ok=True)
            data["destination"][i] = {
                "directory": str(self.staging / f"destination-{i}"),
                "protocol": {"name": "local"},
            }
        return data

    def push(self, delivered: list[str]) -> None:
        """Each addon destination's files from its staging directory."""
        for i, handler in self.destinations.items():
            staged = self.staging / f"destination-{i}"
            staged.mkdir(parents=True, exist_ok=True)
            # As OTF: a non-local source's staging holds exactly the files; a local
            # source's list is given.
            listing: dict[str, Any] | None = None if self.source is not None else {
                str(staged / Path(name).name): {} for name in delivered
            }  # fmt: skip
            call(handler, "push_files_from_worker", str(staged), listing)

    def transfer_direct(self) -> None:
        self.pulled = dict(
            call(self.source, "list_files", file_pattern=self.data["source"].get("fileRegex")) or {}
        )
        if not self.pulled:
            if self.data["source"].get("error", True):
                raise AddonError(
                    f"no files found matching {self.data['source'].get('fileRegex')!r}"
                )
            return
        for i, handler in self.destinations.items():
            call(
                self.source, "transfer_files", list(self.pulled), self.data["destination"][i],
                handler,
            )  # fmt: skip

    def post_copy(self) -> None:
        if self.source is not None and self.data["source"].get("postCopyAction") and self.pulled:
            call(self.source, "handle_post_copy_action", list(self.pulled))

    def tidy(self) -> None:
        for handler in self.handlers():
            tidy = getattr(handler, "tidy", None)
            if callable(tidy):
                try:
                    tidy()
                except Exception as exc:  # the transfer's outcome stands
                    logging.getLogger("storeflow").warning("addon tidy failed: %s", exc)


# -- the flow's steps for addons, as Prefect tasks (the UI shows them) -------------------


@task(
    name="addon-pull", cache_policy=NO_CACHE, task_run_name="transfer/{addon.task_id}: addon-pull"
)
def addon_pull(addon: AddonTransfer) -> int:
    """The addon source's files into the worker's staging directory."""
    return addon.pull()


@task(
    name="addon-push", cache_policy=NO_CACHE, task_run_name="transfer/{addon.task_id}: addon-push"
)
def addon_push(addon: AddonTransfer, delivered: list[str]) -> None:
    """Each addon destination's files pushed from the worker, then the source's
    post-copy action."""
    addon.push(delivered)
    addon.post_copy()


@task(
    name="addon-direct",
    cache_policy=NO_CACHE,
    task_run_name="transfer/{addon.task_id}: addon-direct",
)
def addon_direct(addon: AddonTransfer) -> None:
    """Remote to remote by the addon itself (it supports direct transfers)."""
    addon.transfer_direct()
    addon.post_copy()
