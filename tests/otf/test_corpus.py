"""Every transfer, execution and batch definition written in opentaskpy's own tests (its
pinned sdist from PyPI) loads in storeflow, or is refused for a reason listed here."""

from __future__ import annotations

from typing import Any

import pytest

from storeflow.models.errors import StoreflowError
from storeflow.models.otf import parse_task
from tests.otf.opentaskpy_release import CorpusEntry, corpus

#: Protocols OTF ships (or its tests make up) that storeflow does not provide: a
#: definition naming one is refused with a message naming ``protocol.name``.
NOT_PROVIDED = {"ssh", "sftp", "email", "dummy", "nonexistent", "rubbish"}

#: Definitions OTF itself refuses too (each test of opentaskpy says so), or that the
#: corpus cannot hold literally; place -> why, and the words storeflow's error carries.
REFUSED: dict[str, tuple[str, str]] = {
    "tests/test_batch_validator.py:36": (
        "a dependency on an order_id not in the batch (OTF's batch validator refuses it)",
        "depends on order_id 3, which is not in the batch",
    ),
    "tests/test_config_loader.py:1116": (
        "unknown attributes in the local protocol (OTF's schema forbids them; the test "
        "only checks variable overrides)",
        "protocol.some_attribute: unknown field",
    ),
    "tests/test_memory_large_file_transfer.py:189": (
        "its task list is built by code, not written: the corpus holds a placeholder",
        "tasks: Input should be a valid list",
    ),
    "tests/test_ssh_execution_schema_validate.py:28": (
        "an execution without directory, command or protocol (OTF's test of its schema "
        "refusing it)",
        "protocol: Field required",
    ),
    **{
        place: (
            "its protocol or whole source is assembled by code in the test (the corpus "
            "holds a placeholder there): opentaskpy's schema tests of ssh, email and dummy",
            "protocol.name must be one of",
        )
        for place in (
            "tests/test_dummy_transfer_schema_validate.py:16",
            "tests/test_email_transfer_schema_validate.py:36",
            "tests/test_schema_validate.py:55",
            "tests/test_ssh_dest_schema_validate.py:95",
            "tests/test_ssh_source_schema_validate.py:46",
            "tests/test_ssh_source_schema_validate.py:69",
            "tests/test_ssh_source_schema_validate.py:98",
            "tests/test_ssh_source_schema_validate.py:131",
            "tests/test_ssh_source_schema_validate.py:143",
            "tests/test_ssh_source_schema_validate.py:169",
        )
    },
    "tests/test_taskhandler_batch.py:612": (
        "a fragment inside a batch task's runtime record, without a protocol (OTF's "
        "execution schema requires one)",
        "protocol: Field required",
    ),
}


def _protocols(definition: dict[str, Any]) -> set[str]:
    """Every protocol name a definition uses."""
    found: set[str] = set()
    parts: list[Any] = [definition, definition.get("source")]
    destinations = definition.get("destination")
    if isinstance(destinations, list):
        parts.extend(destinations)
    for part in parts:
        if isinstance(part, dict) and isinstance(part.get("protocol"), dict):
            found.add(str(part["protocol"].get("name")))
    return found


ENTRIES = corpus()


def test_the_corpus_is_the_whole_test_configuration() -> None:
    kinds = {e.type for e in ENTRIES}
    assert kinds == {"transfer", "execution", "batch"}
    assert len(ENTRIES) >= 90  # 99 distinct definitions in opentaskpy 26.18.1
    assert set(REFUSED) <= {e.where for e in ENTRIES}


@pytest.mark.parametrize("entry", ENTRIES, ids=lambda e: e.where)
def test_definition_loads_or_is_refused_for_a_listed_reason(entry: CorpusEntry) -> None:
    unprovided = _protocols(entry.definition) & NOT_PROVIDED
    if entry.where in REFUSED:
        _, words = REFUSED[entry.where]
        with pytest.raises(StoreflowError, match=words.replace("(", r"\(")):
            parse_task(entry.definition, entry.where)
    elif unprovided:
        with pytest.raises(StoreflowError, match=r"protocol\.name"):
            parse_task(entry.definition, entry.where)
    else:
        loaded = parse_task(entry.definition, entry.where)
        assert loaded.type == entry.type


def test_most_of_the_local_corpus_loads() -> None:
    loaded = [
        e for e in ENTRIES if e.where not in REFUSED and not _protocols(e.definition) & NOT_PROVIDED
    ]
    assert len(loaded) >= 36
    assert {e.type for e in loaded} == {"transfer", "execution", "batch"}
