"""`storeflow callback run`: one callback, one file, one JSON answer.

Prints exactly one JSON object `{"status", "result", "error"}` on stdout and
exits 0 (ok, truthy result), 1 (ok, falsy result) or 2 (any error). The
callback's own output never reaches this process's stdout.
"""

import json
from pathlib import Path
from typing import Any

import typer

from storeflow.sandbox.definitions import CallbackDefinition, CallbackError, load_source
from storeflow.sandbox.models import Language, NodeInfo, Stage
from storeflow.sandbox.settings import SandboxSettings
from storeflow.sandbox.stages import CallbackSet

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


def run_once(
    lang: Language,
    file: Path,
    path: Path,
    metadata: list[str],
    timeout: float | None,
    stage: Stage = Stage.FILTER,
    settings: SandboxSettings | None = None,
) -> tuple[dict[str, Any], int]:
    """The JSON answer and exit code for one callback run; never raises."""
    settings = settings or SandboxSettings()
    try:
        if timeout is not None:
            if timeout <= 0:
                raise ValueError("--timeout must be positive")
            settings = settings.model_copy(update={"call_timeout_s": timeout})
        node = NodeInfo.from_path(path, _parse_metadata(metadata))
        source = file.read_text(encoding="utf-8")
        definition = CallbackDefinition(name=file.name, language=lang, stage=stage, source=source)
        load_source(definition, settings)  # size check before starting a worker
        with CallbackSet([definition], task_id="cli", policy=settings) as callbacks:
            outcome = callbacks.run_stage(stage, node=node)
    except (OSError, UnicodeDecodeError, ValueError, CallbackError, RuntimeError) as exc:
        return {"status": "error", "result": None, "error": str(exc)}, EXIT_ERROR
    if outcome.error is not None:
        return {"status": "error", "result": None, "error": str(outcome.error)}, EXIT_ERROR
    call = outcome.calls[0].outcome if outcome.calls else None
    if call is None:
        message = f"{lang.value} callbacks are disabled by the sandbox policy"
        return {"status": "error", "result": None, "error": message}, EXIT_ERROR
    code = EXIT_TRUTHY if call.truthy else EXIT_FALSY
    return {"status": "ok", "result": call.result, "error": None}, code


@callback_app.command("run")
def run_command(
    lang: Language = typer.Option(..., "--lang", help="python or javascript"),
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
