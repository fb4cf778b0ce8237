"""Callback definitions: inline code or a file in the language's hook directory."""

from pydantic import BaseModel, field_validator, model_validator

from storeflow.sandbox import languages
from storeflow.sandbox.models import Stage
from storeflow.sandbox.settings import SandboxSettings


class CallbackError(ValueError):
    """A callback definition that cannot be loaded (missing file, bad name, too big)."""


class CallbackDefinition(BaseModel):
    name: str
    language: str
    stage: Stage
    source: str | None = None
    file: str | None = None

    @field_validator("language", mode="before")
    @classmethod
    def _registered(cls, value: object) -> str:
        """A registered language's name (`Language.PYTHON` and plain "python" alike)."""
        if not isinstance(value, str):
            raise ValueError("a callback's language is its name, e.g. 'python'")
        return languages.get(value).name

    @model_validator(mode="after")
    def _one_origin(self) -> "CallbackDefinition":
        if (self.source is None) == (self.file is None):
            raise ValueError("a callback has either inline `source` or a `file`, not both")
        return self


def load_source(definition: CallbackDefinition, settings: SandboxSettings) -> tuple[str, str]:
    """(source, filename) of a callback; files must stay inside their hook dir."""
    if definition.source is not None:
        source, filename = definition.source, f"<{definition.name}>"
    else:
        assert definition.file is not None
        root = settings.hooks_dir(definition.language).resolve()
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
    """Callbacks laid out as `<hooks dir>/<stage in lower case>/<name><suffix>`.

    Within a stage, languages come in registration order (Python, then
    JavaScript, then any added later), each in file name order (prefix names
    with 10-, 20-, ... to order them). A file counts for a language only when
    its suffix is that language's, so languages may share one directory.
    """
    found: list[CallbackDefinition] = []
    for stage in Stage:
        for language in languages.registered():
            folder = settings.hooks_dir(language.name) / stage.value.lower()
            if not folder.is_dir():
                continue
            for path in sorted(folder.iterdir()):
                if path.is_file() and languages.for_suffix(path.suffix) is language:
                    relative = f"{stage.value.lower()}/{path.name}"
                    found.append(
                        CallbackDefinition(
                            name=relative, language=language.name, stage=stage, file=relative
                        )
                    )
    return found
