"""The seed's Progress flags: defined once for Python (the jailed runtime's
definition, which the host reuses) and once in the JavaScript runtime, which
cannot import Python. The two must never drift apart."""

import re
from pathlib import Path

from storeflow.sandbox import models
from storeflow.sandbox.pyworker import api

JS_WORKER = Path(__file__).parents[2] / "sandbox" / "jsworker"


def python_flags() -> dict[str, int]:
    # __members__, not iteration: iterating a Flag skips the zero member.
    return {name: flag.value for name, flag in api.Progress.__members__.items()}


def test_the_host_uses_the_python_runtime_definition() -> None:
    assert models.Progress is api.Progress
    assert models.TaskExecution(progress=5).progress == (
        api.Progress.PROGRESS_INIT_STARTED | api.Progress.PROGRESS_PROCESS_STARTED
    )


def test_javascript_runtime_progress_matches_python() -> None:
    source = "\n".join(p.read_text() for p in sorted(JS_WORKER.glob("*.js")))
    found = {
        name: int(value) for name, value in re.findall(r"(PROGRESS_[A-Z_]+)\s*:\s*(\d+)", source)
    }
    assert found == python_flags()
