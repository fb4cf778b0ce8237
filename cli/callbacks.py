"""`storeflow callback run`: one callback, one file, one JSON answer.

Prints exactly one JSON object `{"status", "result", "error"}` on stdout and
exits 0 (ok, truthy result), 1 (ok, falsy result) or 2 (any error). The
callback's own output never reaches this process's stdout.
"""

import json
from pathlib import Path
from typing import Any

import typer

from storeflow.sandbox import languages
from storeflow.sandbox.definitions import CallbackDefinition, CallbackError, load_source
from storeflow.sandbox.models import CallbackRequest, NodeInfo, Stage, TaskInfo
from storeflow.sandbox.settings import SandboxSettings
from storeflow.sandbox.worker import run_once as run_in_one_shot_worker

EXIT_TRUTHY, EXIT_FALSY, EXIT_ERROR = 0, 1, 2

callback_app = typer.Typer(
    help="Run Nodeum-style user callbacks in the sandbox.", no_args_is_help=True
)


@callback_app.callback()
def _group() -> None:
    """Run Nodeum-style user callbacks in the sandbox."""


def _parse_metadata(pairs: list[str]) -> dict[str, str]:
    metadata: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"--metadata expects KEY=VALUE, got {pair!r}")
        metadata[key] = value
    return metadata


MAX_TIMEOUT = 86400.0  # a day: a callback call longer than that is a hang


def run_once(
    lang: str,
    file: Path,
    path: Path,
    metadata: list[str],
    timeout: float | None,
    stage: Stage = Stage.FILTER,
    settings: SandboxSettings | None = None,
) -> tuple[dict[str, Any], int]:
    """The JSON answer and exit code for one callback run; never raises.

    `lang` is any registered language (sandbox/languages/); the callback runs in
    that language's one-shot worker, stopped when it has answered.
    """
    settings = settings or SandboxSettings()
    try:
        language = languages.get(lang)
        if timeout is not None:
            if not 0 < timeout <= MAX_TIMEOUT:  # nan, inf and 1e309 included
                raise ValueError(f"--timeout: {timeout} is not between 0 and {MAX_TIMEOUT} s")
            settings = settings.with_language(language.name, call_timeout_s=timeout)
        node = NodeInfo.from_path(path, _parse_metadata(metadata))
        source = file.read_text(encoding="utf-8")
        if not settings.enabled(language.name):
            message = f"{language.name} callbacks are disabled by the sandbox policy"
            return {"status": "error", "result": None, "error": message}, EXIT_ERROR
        definition = CallbackDefinition(
            name=file.name, language=language.name, stage=stage, source=source
        )
        source, filename = load_source(definition, settings)  # size check first
        language.require_isolation(settings.for_language(language.name))
        request = CallbackRequest(stage=stage, task=TaskInfo(id="cli"), node=node)
        call = run_in_one_shot_worker(language, source, filename, request, settings)
    except (OSError, UnicodeDecodeError, ValueError, CallbackError, RuntimeError) as exc:
        return {"status": "error", "result": None, "error": str(exc)}, EXIT_ERROR
    if call.error is not None:
        return {"status": "error", "result": None, "error": str(call.error)}, EXIT_ERROR
    code = EXIT_TRUTHY if call.truthy else EXIT_FALSY
    return {"status": "ok", "result": call.result, "error": None}, code


@callback_app.command("run")
def run_command(
    lang: str = typer.Option(
        ..., "--lang", help="The callback's language: python, javascript, or another registered."
    ),
    file: Path = typer.Option(..., "--file", help="The callback's source file."),
    path: Path = typer.Option(..., "--path", help="The file the callback inspects."),
    metadata: list[str] = typer.Option([], "--metadata", help="KEY=VALUE, repeatable."),
    timeout: float | None = typer.Option(None, "--timeout", help="Seconds per call."),
    stage: Stage = typer.Option(Stage.FILTER, "--stage", help="Stage the request claims."),
) -> None:
    """Run one callback against one file and print one JSON object."""
    payload, code = run_once(lang, file, path, metadata, timeout, stage)
    typer.echo(json.dumps(payload, default=repr))
    raise typer.Exit(code)


if __name__ == "__main__":
    callback_app()
