"""Callback definitions: inline code or a file in the language's hook directory."""

from pathlib import Path

from pydantic import BaseModel, model_validator

from storeflow.sandbox.models import Language, Stage
from storeflow.sandbox.settings import SandboxSettings

_SUFFIXES = {".py": Language.PYTHON, ".js": Language.JAVASCRIPT}


class CallbackError(ValueError):
    """A callback definition that cannot be loaded (missing file, bad name, too big)."""


class CallbackDefinition(BaseModel):
    name: str
    language: Language
    stage: Stage
    source: str | None = None
    file: str | None = None

    @model_validator(mode="after")
    def _one_origin(self) -> "CallbackDefinition":
        if (self.source is None) == (self.file is None):
            raise ValueError("a callback has either inline `source` or a `file`, not both")
        return self


def hooks_dir(settings: SandboxSettings, language: Language) -> Path:
    if language is Language.PYTHON:
        return settings.python_hooks_dir
    return settings.javascript_hooks_dir


def load_source(definition: CallbackDefinition, settings: SandboxSettings) -> tuple[str, str]:
    """(source, filename) of a callback; files must stay inside their hook dir."""
    if definition.source is not None:
        source, filename = definition.source, f"<{definition.name}>"
    else:
        assert definition.file is not None
        root = hooks_dir(settings, definition.language).resolve()
        path = (root / definition.file).resolve()
        if not path.is_relative_to(root):
            raise CallbackError(f"callback file {definition.file!r} is outside {root}")
        try:
            source = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise CallbackError(f"cannot read callback {path}: {exc}") from exc
        filename = path.name
    if len(source.encode("utf-8")) > settings.max_source_bytes:
        raise CallbackError(
            f"callback {definition.name!r} exceeds {settings.max_source_bytes} bytes"
        )
    return source, filename


def discover(settings: SandboxSettings) -> list[CallbackDefinition]:
    """Callbacks laid out as `<hooks dir>/<stage in lower case>/<name>.py|.js`.

    Within a stage, Python hooks come first, then JavaScript, each in file
    name order (prefix names with 10-, 20-, ... to order them).
    """
    found: list[CallbackDefinition] = []
    for stage in Stage:
        for language in Language:
            folder = hooks_dir(settings, language) / stage.value.lower()
            if not folder.is_dir():
                continue
            for path in sorted(folder.iterdir()):
                if path.is_file() and _SUFFIXES.get(path.suffix) is language:
                    found.append(
                        CallbackDefinition(
                            name=f"{stage.value.lower()}/{path.name}",
                            language=language,
                            stage=stage,
                            file=f"{stage.value.lower()}/{path.name}",
                        )
                    )
    return found


def language_of(path: Path) -> Language:
    try:
        return _SUFFIXES[path.suffix]
    except KeyError:
        raise CallbackError(f"{path.name}: callbacks end in .py or .js") from None
