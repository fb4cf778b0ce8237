"""The sandbox policy as a plain pydantic model (no Prefect needed).

Limits every language shares sit at the top level. Each language has a
section of its own under `languages` (its switch, hook directory, limit
overrides and any options of its own), typed by the language's module in
sandbox/languages/. The field names from before the registry
(`python_enabled`, `javascript_hooks_dir`, ...) are still accepted, on input
and in `model_copy(update=...)`, and land in their language's section, so
saved SandboxPolicy blocks keep loading.

blocks/sandbox.py's SandboxPolicy Block has the same fields; `as_settings`
accepts either, or any object carrying these attributes.
"""

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializeAsAny,
    ValidationError,
    field_validator,
    model_validator,
)


class LanguageSettings(BaseModel):
    """One language's section of the policy; a language's module may extend it."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(True, description="The seed's hooks plugin switch for this language.")
    hooks_dir: Path | None = Field(None, description="Default: `<language>-hooks`.")
    call_timeout_s: float | None = Field(
        None, gt=0, description="This language's per-call timeout; default: the sandbox's."
    )
    memory_limit_mb: int | None = Field(
        None, ge=32, description="This language's memory cap; default: the sandbox's."
    )


# The per-language fields of the policy before the registry: old name -> (language, field).
LEGACY_FIELDS: dict[str, tuple[str, str]] = {
    "python_enabled": ("python", "enabled"),
    "javascript_enabled": ("javascript", "enabled"),
    "python_hooks_dir": ("python", "hooks_dir"),
    "javascript_hooks_dir": ("javascript", "hooks_dir"),
}
# Top-level limits a language's section may override.
_OVERRIDABLE = ("call_timeout_s", "memory_limit_mb")


def _one_line(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(part) for part in error['loc']) or 'value'}: {error['msg']}"
        for error in exc.errors()
    )


def _section_data(section: Any) -> dict[str, Any]:
    if isinstance(section, LanguageSettings):
        return section.model_dump(exclude_unset=True)
    if isinstance(section, Mapping):
        return dict(section)
    raise ValueError(f"a language's settings are a mapping, got {type(section).__name__}")


def _validated_section(name: str, data: Mapping[str, Any]) -> LanguageSettings:
    # Imported here: the language modules import this one.
    from storeflow.sandbox import languages

    try:
        return languages.get(name).settings_model.model_validate(data)
    except ValidationError as exc:
        raise ValueError(f"languages.{name}: {_one_line(exc)}") from None


class SandboxSettings(BaseModel):
    call_timeout_s: float = Field(5.0, gt=0, description="Per call; the worker is replaced.")
    start_timeout_s: float = Field(15.0, gt=0, description="Starting a worker and loading code.")
    memory_limit_mb: int = Field(256, ge=32)
    output_limit_bytes: int = Field(64 * 1024, ge=1024, description="Captured stdout+stderr.")
    result_limit_bytes: int = Field(1024 * 1024, ge=1024, description="One answer frame.")
    scratch_size_mb: int = Field(16, ge=1, description="Private /tmp of a jailed worker.")
    file_size_limit_mb: int = Field(8, ge=1)
    max_source_bytes: int = Field(1024 * 1024, ge=1)
    allow_weak_isolation: bool = Field(
        False,
        description="Run callbacks even when a jail layer their language requires is missing.",
    )
    sandbox_uid: int = 65534
    sandbox_gid: int = 65534
    bwrap_path: str | None = Field(None, description="Default: bwrap on PATH.")
    languages: dict[str, SerializeAsAny[LanguageSettings]] = Field(
        default_factory=dict,
        description="Per-language sections by language name (python, javascript, ...);"
        " a language without one uses its defaults.",
    )

    @model_validator(mode="before")
    @classmethod
    def _legacy_fields(cls, data: Any) -> Any:
        """Move the pre-registry per-language fields into their sections."""
        if not isinstance(data, Mapping) or not any(key in data for key in LEGACY_FIELDS):
            return data
        data = dict(data)
        raw = data.get("languages") or {}
        if not isinstance(raw, Mapping):
            return data  # the field validator reports it
        sections = {name: _section_data(section) for name, section in raw.items()}
        for old, (language, key) in LEGACY_FIELDS.items():
            if old in data:
                value = data.pop(old)
                # An explicit new-style value wins over the old field.
                sections.setdefault(language, {}).setdefault(key, value)
        data["languages"] = sections
        return data

    @field_validator("languages", mode="before")
    @classmethod
    def _typed_sections(cls, value: Any) -> dict[str, LanguageSettings]:
        """Each section validated by its language's own settings model."""
        from storeflow.sandbox import languages

        if not isinstance(value, Mapping):
            raise ValueError("expected a mapping of language name to its settings")
        typed: dict[str, LanguageSettings] = {}
        for name, section in value.items():
            if isinstance(section, languages.get(str(name)).settings_model):
                typed[str(name)] = section
            else:
                typed[str(name)] = _validated_section(str(name), _section_data(section))
        return typed

    def model_copy(self, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> Self:
        """As pydantic's, and old per-language field names still update their section."""
        if update and any(key in LEGACY_FIELDS for key in update):
            update = dict(update)
            sections = dict(update.get("languages", self.languages))
            for old, (language, key) in LEGACY_FIELDS.items():
                if old in update:
                    current = sections.get(language) or self.language_settings(language)
                    sections[language] = _validated_section(
                        language, {**_section_data(current), key: update.pop(old)}
                    )
            update["languages"] = sections
        return super().model_copy(update=update, deep=deep)

    def language_settings(self, name: str) -> LanguageSettings:
        """The language's section, or its defaults when the policy has none."""
        section = self.languages.get(name)
        if section is not None:
            return section
        from storeflow.sandbox import languages

        return languages.get(name).settings_model()

    def enabled(self, name: str) -> bool:
        return self.language_settings(name).enabled

    def hooks_dir(self, name: str) -> Path:
        return self.language_settings(name).hooks_dir or Path(f"{name}-hooks")

    def with_language(self, name: str, **changes: Any) -> Self:
        """A copy whose `name` section has `changes` (validated)."""
        current = _section_data(self.language_settings(name))
        section = _validated_section(name, {**current, **changes})
        return self.model_copy(update={"languages": {**self.languages, name: section}})

    def for_language(self, name: str) -> Self:
        """These settings with the language's limit overrides applied at the top level."""
        section = self.language_settings(name)
        overrides = {
            key: getattr(section, key) for key in _OVERRIDABLE if getattr(section, key) is not None
        }
        return self.model_copy(update=overrides) if overrides else self


def as_settings(policy: Any = None) -> SandboxSettings:
    """SandboxSettings from None, itself, a SandboxPolicy Block, or a mapping."""
    if policy is None:
        return SandboxSettings()
    if type(policy) is SandboxSettings:
        return policy
    if isinstance(policy, dict):
        return SandboxSettings.model_validate(policy)
    fields = {
        name: getattr(policy, name)
        for name in SandboxSettings.model_fields
        if hasattr(policy, name)
    }
    return SandboxSettings.model_validate(fields)
