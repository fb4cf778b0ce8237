"""Bounded input: numbers that fit the databases, printable text, measured documents."""

import json
from pathlib import Path

import pytest

from storeflow.flows.spaces import space_update
from storeflow.flows.transfers import transfer
from storeflow.models.bounds import (
    MAX_DOCUMENT_BYTES,
    MAX_DOCUMENT_DEPTH,
    MAX_ETAG,
    MAX_INT64,
    BoundError,
    check_document,
    nesting_depth,
    parse_document,
)
from storeflow.models.errors import InvalidInput
from storeflow.models.names import parse_size
from storeflow.models.replicas import ReplicaSpec
from storeflow.models.schemas import SpaceSpec, parse_spec
from storeflow.models.transfer import DefinitionError, load_definition


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("99999999999999999999999P", "more than the largest size"),
        ("9223372036854775808", "more than the largest size"),
        (2**63, "more than the largest size"),
        ("\u0663G", "is not a size"),  # Arabic-Indic three
        ("1\u00b2", "is not a size"),  # superscript two
        ("10\tG", "is not a size"),
        ("x" * 1000, "is not a size"),
        (-1, "cannot be negative"),
        (True, "must be a number"),
    ],
)
def test_sizes_outside_64_bits_or_not_ascii_are_refused(value: object, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        parse_size(value)


def test_sizes_up_to_the_largest_are_taken() -> None:
    assert parse_size(str(MAX_INT64)) == MAX_INT64
    assert parse_size(" 10 GiB ") == 10 * 1024**3
    assert parse_size("7P") == 7 * 1024**5


def test_a_spec_names_the_field_that_is_out_of_bounds() -> None:
    cases = [
        ({"name": "q", "quota": "99999999999999999999999P"}, "space.quota", "largest size"),
        ({"name": "q", "template": "t\x00"}, "space.template", r"U\+0000"),
        ({"name": "q\nr"}, "space.name", r"U\+000A"),
        ({"name": "q", "quota": 2**64}, "space.quota", "does not fit in 64 bits"),
    ]
    for data, field, reason in cases:
        with pytest.raises(InvalidInput, match=reason) as info:
            parse_spec(SpaceSpec, data, "space")
        assert info.value.field == field, info.value


def test_a_replica_interval_past_a_year_is_refused() -> None:
    base = {"name": "r", "space": "s", "provider": "p", "direction": "upstream"}
    with pytest.raises(InvalidInput, match="less than or equal to 31622400") as info:
        parse_spec(ReplicaSpec, {**base, "schedule": {"interval": 10**10}}, "replica")
    assert info.value.field == "replica.schedule.interval"


def test_documents_are_measured_before_they_are_parsed() -> None:
    deep = "[" * 200_000 + "]" * 200_000
    assert nesting_depth(deep) == 200_000
    assert nesting_depth('{"a": "[[[[[[[[[["}') == 1  # brackets in strings do not count
    for raw, reason in [
        (deep.encode(), "nested deeper"),
        (b"\xff\xfe{}", "not UTF-8"),
        (b" " * (MAX_DOCUMENT_BYTES + 1), "larger than"),
        (b'{"a": ' + b"9" * 5000 + b"}", "digits"),
        (b'{"a": 1e400}', "not a finite number"),
        (b'{"a": 99999999999999999999}', "64 bits"),
    ]:
        with pytest.raises(BoundError, match=reason):
            parse_document(raw, "json")
    with pytest.raises(BoundError, match="nested deeper"):
        parse_document(b"a: " + b"[" * 1000 + b"]" * 1000, "yaml")


def test_document_values_name_where_they_are() -> None:
    with pytest.raises(BoundError) as info:
        check_document({"destination": [{"directory": "ok"}, {"directory": "a\x00b"}]})
    assert info.value.field == "destination.1.directory"
    nested: object = "leaf"
    for _ in range(MAX_DOCUMENT_DEPTH + 2):
        nested = [nested]
    with pytest.raises(BoundError, match="nested deeper"):
        check_document(nested)


def test_a_definition_with_a_nul_is_refused_naming_the_field(tmp_path: Path) -> None:
    path = tmp_path / "nul.json"
    definition = {
        "type": "transfer",
        "source": {"protocol": {"name": "local"}, "directory": "src\x00dir", "fileRegex": ".*"},
        "destination": [{"protocol": {"name": "local"}, "directory": str(tmp_path)}],
    }
    path.write_text(json.dumps(definition))
    before = path.read_bytes()
    with pytest.raises(DefinitionError, match=r"source\.directory: control character U\+0000"):
        load_definition(path)
    assert path.read_bytes() == before


def test_flow_parameters_carry_their_bounds_to_the_api() -> None:
    """The deployments' parameter schemas bound what the Prefect API accepts, so a bad
    value is refused (422) before a run exists."""
    update = space_update.parameters.model_dump()["properties"]
    etag = update["etag"]["anyOf"][0]
    assert etag["maximum"] == MAX_ETAG and etag["minimum"] == 1
    assert "pattern" in update["name"]
    assert etag["description"].startswith("The etag you last read")
    run = transfer.parameters.model_dump()["properties"]
    assert "pattern" in run["name"]["anyOf"][0]
    assert run["batch_size"]["maximum"] == 100_000
