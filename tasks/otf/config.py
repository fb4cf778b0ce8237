"""OTF config directories: find a task by id, merge the variables, render with Jinja2.

This is what ``task-run -t TASK_ID -c CONFIG_DIR`` does before it runs anything:

- the task file is ``TASK_ID.json`` or ``TASK_ID.json.j2`` anywhere under the directory
  (exactly one of them);
- the variables are every ``variables.json.j2`` then every ``variables.json`` under it
  (or the comma-separated files of ``OTF_VARIABLES_FILE``), merged in that order, then a
  ``.json`` task's own ``variables`` on top; an environment variable with a variable's
  exact name overrides it (an integer stays an integer), as OTF does;
- variables that use other variables are rendered again until they stop changing (at
  most five rounds, OTF's limit);
- the task file is rendered with them and ``lookup(PLUGIN, **kwargs)``: ``env``
  (``name``, optional ``default``), ``file`` (``path``: its first line, stripped, as
  OTF's), and any installed addon's ``opentaskpy.plugins.lookup.<PLUGIN>`` module.

Differences on purpose: a placeholder that does not render is an error naming it
(OTF's Jinja2 renders it as an empty string); rendering runs in Jinja2's sandbox; no
Python file is imported from the config directory itself (OTF loads
``plugins/lookup/*.py`` and ``filters/*.py`` from there): install such code instead.
"""

from __future__ import annotations

import importlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from jinja2 import StrictUndefined, TemplateError, UndefinedError
from jinja2.sandbox import SandboxedEnvironment

from storeflow.models.bounds import MAX_DOCUMENT_BYTES, BoundError, parse_document
from storeflow.models.transfer import DefinitionError

#: OTF's limit on rounds of rendering variables that use variables.
MAX_DEPTH = 5
ADDON_LOOKUPS = "opentaskpy.plugins.lookup"


def _read(path: Path, what: str) -> str:
    try:
        with path.open("rb") as file:
            raw = file.read(MAX_DOCUMENT_BYTES + 1)
    except OSError as exc:
        raise DefinitionError(str(path), [(what, exc.strerror or str(exc))]) from None
    if len(raw) > MAX_DOCUMENT_BYTES:
        raise DefinitionError(str(path), [(what, f"larger than {MAX_DOCUMENT_BYTES} bytes")])
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise DefinitionError(str(path), [(what, "not UTF-8")]) from None


def _json(text: str, source: str, what: str) -> Any:
    try:
        return parse_document(text.encode("utf-8"), "json")
    except BoundError as exc:
        raise DefinitionError(source, [(exc.field or what, exc.reason)]) from None


def find_task(config_dir: Path, task_id: str) -> Path:
    """The one ``TASK_ID.json`` or ``TASK_ID.json.j2`` under ``config_dir``."""
    if not config_dir.is_dir():
        raise DefinitionError(str(config_dir), [("(config directory)", "not a directory")])
    if not task_id or "/" in task_id or task_id.startswith("."):
        raise DefinitionError(task_id, [("task id", "must be a plain file name stem")])
    found = sorted(
        p
        for pattern in (f"{task_id}.json", f"{task_id}.json.j2")
        for p in config_dir.rglob(pattern)
        if p.is_file()
    )
    if not found:
        raise DefinitionError(
            task_id, [("task id", f"no {task_id}.json or {task_id}.json.j2 under {config_dir}")]
        )
    if len(found) > 1:
        listed = ", ".join(str(p.relative_to(config_dir)) for p in found)
        raise DefinitionError(task_id, [("task id", f"more than one task file: {listed}")])
    return found[0]


def variable_files(config_dir: Path, environ: Mapping[str, str]) -> list[Path]:
    """The variables files OTF reads, in OTF's order."""
    named = environ.get("OTF_VARIABLES_FILE")
    if named:
        files = [Path(f) for f in named.split(",") if f]
        for file in files:
            if not file.is_file():
                raise DefinitionError(str(file), [("OTF_VARIABLES_FILE", "no such file")])
        return files
    return [
        *sorted(config_dir.rglob("variables.json.j2")),
        *sorted(config_dir.rglob("variables.json")),
    ]


def _override_from_env(variables: dict[str, Any], environ: Mapping[str, str]) -> None:
    for key, value in list(variables.items()):
        if key in environ:
            override = environ[key]
            if isinstance(value, int) and not isinstance(value, bool):
                try:
                    variables[key] = int(override)
                except ValueError:
                    raise DefinitionError(key, [(f"environment {key}", "not an integer")]) from None
            else:
                variables[key] = override


class Renderer:
    """Jinja2 (sandboxed, strict) with OTF's ``lookup`` and the merged variables."""

    def __init__(self, variables: dict[str, Any], environ: Mapping[str, str]) -> None:
        self.variables = variables
        self.environ = environ
        self.env = SandboxedEnvironment(undefined=StrictUndefined, autoescape=False)
        self.env.globals["lookup"] = self.lookup

    def lookup(self, plugin: str, **kwargs: Any) -> str:
        if plugin == "env":
            name = kwargs.get("name")
            if not isinstance(name, str) or not name:
                raise DefinitionError(plugin, [("lookup('env')", "needs name='VARIABLE'")])
            if name in self.environ:
                return self.environ[name]
            if "default" in kwargs:
                return str(kwargs["default"])
            raise DefinitionError(
                plugin, [("lookup('env')", f"environment variable {name} is not set")]
            )
        if plugin == "file":
            path = kwargs.get("path")
            if not isinstance(path, str) or not path:
                raise DefinitionError(plugin, [("lookup('file')", "needs path='FILE'")])
            text = _read(Path(path), "lookup('file')")
            return text.splitlines()[0].strip() if text else ""
        try:
            module = importlib.import_module(f"{ADDON_LOOKUPS}.{plugin}")
        except ImportError:
            raise DefinitionError(
                plugin,
                [("lookup", f"no lookup plugin {plugin!r} (env, file, or an installed addon's)")],
            ) from None
        return str(module.run(globals=dict(self.variables), **kwargs))

    def render(self, text: str, source: str) -> str:
        try:
            return self.env.from_string(text).render(self.variables)
        except UndefinedError as exc:
            raise DefinitionError(
                source, [("(template)", f"placeholder does not render: {exc.message}")]
            ) from None
        except TemplateError as exc:
            raise DefinitionError(source, [("(template)", exc.message or str(exc))]) from None

    def resolve_nested(self, source: str) -> None:
        """Render the variables with themselves until they stop changing."""
        previous = json.dumps(self.variables)
        for _ in range(MAX_DEPTH):
            rendered = self.render(previous, source)
            if rendered == previous:
                return
            self.variables = _json(rendered, source, "(variables)")
            previous = rendered
        raise DefinitionError(
            source, [("(variables)", f"still changing after {MAX_DEPTH} rounds (a cycle?)")]
        )


def load_variables(config_dir: Path, environ: Mapping[str, str]) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for file in variable_files(config_dir, environ):
        data = _json(_read(file, "(variables)"), str(file), "(variables)")
        if not isinstance(data, dict):
            raise DefinitionError(str(file), [("(variables)", "expected a JSON object")])
        merged |= data
    return merged


def render_task_file(
    path: Path,
    variables: dict[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Any:
    """The JSON of one task file rendered as OTF renders it (not yet validated)."""
    environ = os.environ if environ is None else environ
    variables = dict(variables or {})
    text = _read(path, "(file)")
    if not path.name.endswith(".j2"):
        own = _json(text, str(path), "(file)")
        if isinstance(own, dict) and isinstance(own.get("variables"), dict):
            variables |= own["variables"]
    _override_from_env(variables, environ)
    renderer = Renderer(variables, environ)
    if any("{{" in json.dumps(v) or "{%" in json.dumps(v) for v in variables.values()):
        renderer.resolve_nested(str(path))
    return _json(renderer.render(text, str(path)), str(path), "(file)")


def load_task(
    config_dir: str | Path, task_id: str, environ: Mapping[str, str] | None = None
) -> Any:
    """``task-run -t TASK_ID -c CONFIG_DIR``'s task definition, rendered (not validated)."""
    environ = os.environ if environ is None else environ
    root = Path(config_dir)
    path = find_task(root, task_id)
    return render_task_file(path, load_variables(root, environ), environ)
