"""A third callback language, added the way any language is: this one
module, plus `languages.register(Expr())` (done by the tests that use it).

Its worker (expr_worker.py) is unjailed: it exists to prove the registry,
not to run untrusted code, so it asks for no isolation layers.
"""

import sys
from pathlib import Path

from pydantic import Field

from storeflow.sandbox.languages import CallbackLanguage
from storeflow.sandbox.process import LaunchSpec
from storeflow.sandbox.settings import LanguageSettings, SandboxSettings

WORKER = Path(__file__).resolve().parent / "expr_worker.py"


class ExprSettings(LanguageSettings):
    max_chars: int = Field(200, ge=1, description="The longest expression the worker loads.")


class Expr(CallbackLanguage[ExprSettings]):
    name = "expr"
    title = "expression"
    suffixes = (".expr",)
    settings_model = ExprSettings

    def worker_spec(self, settings: SandboxSettings) -> LaunchSpec:
        return LaunchSpec(
            argv=[sys.executable, "-I", "-S", str(WORKER)],
            env={},
            separate_channel=False,
            config={"max_chars": self.section(settings).max_chars},
        )
