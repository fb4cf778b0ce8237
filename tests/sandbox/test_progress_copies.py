"""The seed's Progress flags exist three times on purpose: the host's enum, and
one in each jailed runtime (which cannot import the host's packages). They
must never drift apart."""

import re
from pathlib import Path

from storeflow.sandbox.models import Progress
from storeflow.sandbox.pyworker import api

JS_WORKER = Path(__file__).parents[2] / "sandbox" / "jsworker"


def host_flags() -> dict[str, int]:
    # __members__, not iteration: iterating a Flag skips the zero member.
    return {name: flag.value for name, flag in Progress.__members__.items()}


def test_python_runtime_progress_matches_the_host() -> None:
    assert {name: flag.value for name, flag in api.Progress.__members__.items()} == host_flags()


def test_javascript_runtime_progress_matches_the_host() -> None:
    source = "\n".join(p.read_text() for p in sorted(JS_WORKER.glob("*.js")))
    found = {
        name: int(value) for name, value in re.findall(r"(PROGRESS_[A-Z_]+)\s*:\s*(\d+)", source)
    }
    assert found == host_flags()
