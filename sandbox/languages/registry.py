"""The callback languages this process knows, by name and by file suffix."""

import re
from typing import Any

from storeflow.sandbox.languages.base import CallbackLanguage

_NAME = re.compile(r"[a-z][a-z0-9_]{0,31}\Z")
# Insertion order is the order hook directories are discovered in.
_LANGUAGES: dict[str, CallbackLanguage[Any]] = {}


class UnknownLanguage(ValueError):
    """No registered language has this name or suffix."""


def register(language: CallbackLanguage[Any]) -> CallbackLanguage[Any]:
    """Make a language available everywhere (definitions, stages, policy, CLI)."""
    if not _NAME.match(language.name):
        raise ValueError(
            f"callback language name {language.name!r}: lower-case letters, digits and _"
        )
    if language.name in _LANGUAGES:
        raise ValueError(f"callback language {language.name!r} is already registered")
    for suffix in language.suffixes:
        if not suffix.startswith(".") or len(suffix) < 2:
            raise ValueError(f"{language.name}: suffix {suffix!r} must look like '.ext'")
        owner = for_suffix(suffix)
        if owner is not None:
            raise ValueError(f"{language.name}: suffix {suffix!r} already belongs to {owner.name}")
    _LANGUAGES[language.name] = language
    return language


def unregister(name: str) -> None:
    if _LANGUAGES.pop(name, None) is None:
        raise UnknownLanguage(f"callback language {name!r} is not registered")


def get(name: str) -> CallbackLanguage[Any]:
    try:
        return _LANGUAGES[name]
    except KeyError:
        known = ", ".join(_LANGUAGES) or "none"
        raise UnknownLanguage(f"unknown callback language {name!r} (registered: {known})") from None


def names() -> list[str]:
    return list(_LANGUAGES)


def registered() -> list[CallbackLanguage[Any]]:
    return list(_LANGUAGES.values())


def for_suffix(suffix: str) -> CallbackLanguage[Any] | None:
    for language in _LANGUAGES.values():
        if suffix in language.suffixes:
            return language
    return None
