"""Definitions: every OTF field parses, unknown/misspelt fields are named, files load."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from storeflow.models.transfer import (
    DefinitionError,
    LocalDestination,
    NFSDestination,
    SMBSource,
    definition_json_schema,
    load_definition,
    parse_definition,
)

FULL: dict[str, Any] = {
    "type": "transfer",
    "source": {
        "directory": "/in",
        "fileRegex": r".*\.csv",
        "conditionals": {
            "size": {"gt": 0, "lt": 1000},
            "age": {"gt": 5, "lt": 3600},
            "count": {"minCount": 1, "maxCount": 10},
        },
        "fileWatch": {
            "timeout": 30,
            "directory": "/in/flags",
            "fileRegex": "go",
            "watchOnly": False,
        },
        "postCopyAction": {
            "action": "rename",
            "destination": "/done",
            "pattern": "csv",
            "sub": "x",
        },
        "error": False,
        "protocol": {
            "name": "smb",
            "credentials": {
                "host": "h",
                "port": 1445,
                "share": "s",
                "username": "u",
                "password": "secret",
            },
        },
    },
    "destination": [
        {
            "directory": "/out",
            "createDirectoryIfNotExists": True,
            "rename": {"pattern": "a", "sub": "b"},
            "mode": "0640",
            "flags": {"fullPath": "/out/DONE"},
            "protocol": {"name": "opentaskpy.remotehandlers.local.LocalTransfer"},
        },
        {
            "directory": "/nfs",
            "mode": "644",
            "protocol": {"name": "nfs", "server": {"host": "h", "export": "/e", "port": 2050}},
        },
    ],
}


def test_every_field_parses() -> None:
    d = parse_definition(FULL)
    assert isinstance(d.source, SMBSource)
    assert d.source.conditionals is not None and d.source.conditionals.size is not None
    assert d.source.conditionals.size.gt == 0
    assert d.source.file_watch is not None and d.source.file_watch.file_regex == "go"
    assert d.source.post_copy_action is not None and d.source.post_copy_action.sub == "x"
    assert d.source.error is False
    assert d.source.protocol.credentials is not None
    assert d.source.protocol.credentials.password.get_secret_value() == "secret"
    assert "secret" not in repr(d)
    local, nfs = d.destination
    assert isinstance(local, LocalDestination) and local.mode_bits == 0o640
    assert local.flags is not None and local.flags.full_path == "/out/DONE"
    assert isinstance(nfs, NFSDestination) and nfs.mode_bits == 0o644


@pytest.mark.parametrize(
    ("patch", "field"),
    [
        (lambda d: d["source"].update(fileRegx="x"), "source.fileRegx"),
        (
            lambda d: d["source"]["conditionals"]["size"].update(gte=1),
            "source.conditionals.size.gte",
        ),
        (lambda d: d["source"]["conditionals"]["count"].update(mincount=1), "count.mincount"),
        (lambda d: d["source"]["fileWatch"].update(watchonly=True), "fileWatch.watchonly"),
        (lambda d: d["destination"][0].update(createDirectoryIfNotExist=True), "destination[0]"),
        (lambda d: d["destination"][0]["flags"].update(fullpath="/x"), "flags.fullpath"),
        (lambda d: d["destination"][1]["protocol"]["server"].update(hots="x"), "server.hots"),
        (lambda d: d.update(destinations=[]), "destinations"),
    ],
)
def test_misspelt_field_is_named(patch: Any, field: str) -> None:
    data = json.loads(json.dumps(FULL))
    patch(data)
    with pytest.raises(DefinitionError) as err:
        parse_definition(data)
    assert field in str(err.value)
    assert "unknown field" in str(err.value)


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        (lambda d: d["source"]["protocol"].update(name="ftp"), "protocol.name must be one of"),
        (lambda d: d["source"].update(fileRegex="("), "not a valid regular expression"),
        (lambda d: d["destination"][0].update(mode="rwx"), "is not octal"),
        (lambda d: d["source"]["postCopyAction"].pop("pattern"), "needs 'pattern'"),
        (lambda d: d["source"]["conditionals"]["count"].update(minCount=11), "minCount is greater"),
        (lambda d: d["source"]["protocol"].update(block="b"), "exactly one of"),
        (lambda d: d.update(type="execution"), "type"),
    ],
)
def test_invalid_values_are_explained(patch: Any, message: str) -> None:
    data = json.loads(json.dumps(FULL))
    patch(data)
    with pytest.raises(DefinitionError, match=message):
        parse_definition(data)


def test_unknown_protocol_lists_every_registered_name() -> None:
    data = json.loads(json.dumps(FULL))
    data["destination"][1]["protocol"] = {"name": "ftp"}
    with pytest.raises(DefinitionError) as err:
        parse_definition(data)
    message = str(err.value)
    assert "destination[1]: protocol.name must be one of: local, " in message
    for name in ("opentaskpy.remotehandlers.local.LocalTransfer", "nfs", "smb"):
        assert name in message


def test_error_paths_leave_out_the_protocol_tag() -> None:
    data = json.loads(json.dumps(FULL))
    data["destination"][1]["protocol"]["server"]["hots"] = "x"
    data["source"]["protocol"]["credentials"]["port"] = 0
    with pytest.raises(DefinitionError) as err:
        parse_definition(data)
    assert "destination[1].protocol.server.hots: unknown field" in str(err.value)
    assert "source.protocol.credentials.port: Input should be greater than 0" in str(err.value)


def test_smb_destination_refuses_mode() -> None:
    data = json.loads(json.dumps(FULL))
    data["destination"][0]["protocol"] = FULL["source"]["protocol"]
    with pytest.raises(DefinitionError, match=r"destination\[0\]\.mode: unknown field"):
        parse_definition(data)


def test_json_schema_names_otf_fields() -> None:
    schema = json.dumps(definition_json_schema())
    for name in ("fileRegex", "postCopyAction", "createDirectoryIfNotExists", "minCount"):
        assert name in schema
    assert '"additionalProperties": false' in schema


def test_load_json_and_yaml(tmp_path: Path) -> None:
    (tmp_path / "t.json").write_text(json.dumps(FULL))
    (tmp_path / "t.yaml").write_text(yaml.safe_dump(FULL))
    assert load_definition(tmp_path / "t.json") == load_definition(tmp_path / "t.yaml")


def test_load_errors_name_the_cause(tmp_path: Path) -> None:
    (tmp_path / "bad.json").write_text('{"type": "transfer",')
    with pytest.raises(DefinitionError, match=r"bad\.json: line 1"):
        load_definition(tmp_path / "bad.json")
    (tmp_path / "t.txt").write_text("{}")
    with pytest.raises(DefinitionError, match=r"\.json, \.yaml"):
        load_definition(tmp_path / "t.txt")
    with pytest.raises(DefinitionError, match="No such file"):
        load_definition(tmp_path / "missing.yaml")
