"""Callback languages: one module per language, one registry.

Everything that differs between languages (suffixes, how a worker is jailed
and started, which layers it needs, its section of the policy) is in its
module; definitions, stages, workers, the policy and the CLI ask the
registry. Adding a language is one module with a CallbackLanguage subclass
and one `register(...)` call, here or from the code that ships it.
"""

from storeflow.sandbox.languages.base import CallbackLanguage
from storeflow.sandbox.languages.javascript import JavaScript
from storeflow.sandbox.languages.python import Python
from storeflow.sandbox.languages.registry import (
    UnknownLanguage,
    for_suffix,
    get,
    names,
    register,
    registered,
    unregister,
)

__all__ = [
    "CallbackLanguage",
    "UnknownLanguage",
    "for_suffix",
    "get",
    "names",
    "register",
    "registered",
    "unregister",
]

# Discovery order within a stage: Python hooks first, then JavaScript.
register(Python())
register(JavaScript())
