"""Feeds from the CLI and from a saved search: criteria checked, mistakes named, nothing
created on a refusal."""

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from storeflow.blocks.config import StoreflowConfig
from storeflow.cli.app import app
from storeflow.models import catalog_repository as catalog
from storeflow.models import feed_repository as feeds
from storeflow.models.db import session_scope

runner = CliRunner()


def invoke(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def feed_names() -> list[str]:
    with session_scope(StoreflowConfig().database_url) as session:
        return [f.name for f in feeds.list_feeds(session)]


def test_create_list_show_delete() -> None:
    code, stdout, _ = invoke(
        "feed", "create", "sheets", "--name-regex", r".*\.xlsx", "--size-min", "10",
        "--size-max", "1000", "--metadata", "lab.sample:exists",
        "--parameters", '{"threshold": 3}', "--approval", "--json",
    )  # fmt: skip
    assert code == 0, stdout
    made = json.loads(stdout)
    assert made["criteria"] == {
        "name": r".*\.xlsx",
        "size_min": 10,
        "size_max": 1000,
        "metadata": [{"path": "lab.sample", "op": "exists"}],
    }
    assert made["parameters"] == {"threshold": 3} and made["approval"] is True
    code, stdout, _ = invoke("feed", "list", "--json")
    assert [f["name"] for f in json.loads(stdout)] == ["sheets"]
    code, stdout, _ = invoke("feed", "show", str(made["id"]), "--json")
    assert code == 0 and json.loads(stdout)["name"] == "sheets"
    code, _, _ = invoke("feed", "delete", "sheets")
    assert code == 0 and feed_names() == []
    code, _, stderr = invoke("feed", "show", "sheets")
    assert code == 2 and "does not exist" in stderr


def test_query_form() -> None:
    code, stdout, _ = invoke("feed", "create", "q", "--query", "name:*.xlsx size>1KB", "--json")
    assert code == 0
    criteria = json.loads(stdout)["criteria"]
    assert criteria["size_min"] == 1025
    assert criteria["name"].startswith("(?s:.*\\.xlsx)")


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (["--name-regex", "a(b"], "criteria.name"),
        (["--mime", "imgae/png"], "criteria.mime"),
        (["--mime", "image/png/x"], "criteria.mime"),
        (["--metadata", "a.b:like:3"], "criteria.metadata.0.op"),
        (["--metadata", "a.b:equals"], "criteria.metadata.0"),
        (["--size-min", "10", "--size-max", "5"], "criteria.size_max"),
        (["--criteria", '{"colour": "red"}'], "criteria.colour"),
        (["--criteria", '{"op": "xor"}'], "criteria.op"),
        (["--query", "size>10QB"], "query"),
        (["--kind", "folder"], "kind"),
    ],
)
def test_bad_input_names_the_field_and_creates_nothing(args: list[str], field: str) -> None:
    code, _, stderr = invoke("feed", "create", "bad", *args)
    assert code == 2
    assert f"{field}:" in stderr, stderr
    assert feed_names() == []


def test_existing_name_refused() -> None:
    assert invoke("feed", "create", "one", "--mime", "text/*")[0] == 0
    code, _, stderr = invoke("feed", "create", "one", "--mime", "image/*")
    assert code == 2 and "name:" in stderr and "exists" in stderr
    with session_scope(StoreflowConfig().database_url) as session:
        assert feeds.find(session, "one").criteria == {"mime": "text/*"}


def test_dataset_feed_needs_file_criteria() -> None:
    code, _, stderr = invoke("feed", "create", "d", "--kind", "dataset", "--criteria", "{}")
    assert code == 2 and "criteria:" in stderr
    code, _, stderr = invoke(
        "feed", "create", "d", "--kind", "dataset",
        "--criteria", '{"files": [{"name": ".*\\\\.csv"}, {"mime": "nope"}]}',
    )  # fmt: skip
    assert code == 2 and "criteria.files.1.mime:" in stderr
    code, stdout, _ = invoke(
        "feed", "create", "d", "--kind", "dataset", "--json",
        "--criteria", '{"files": [{"name": ".*\\\\.csv"}, {"name": "README"}]}',
    )  # fmt: skip
    assert code == 0 and json.loads(stdout)["kind"] == "dataset"


def _file(tmp_path: Path, name: str, data: bytes) -> dict[str, Any]:
    from storeflow.tasks.catalog import observe

    path = tmp_path / name
    path.write_bytes(data)
    facts = observe(StoreflowConfig(), path, checksum=False)
    with session_scope(StoreflowConfig().database_url) as session:
        found, _ = catalog.upsert(session, facts)
        if name == "a.csv":
            catalog.add_metadata(
                session, found.id, {"lab": {"rows": 12}}, agent_type="user", agent="t"
            )
    return found.model_dump(mode="json")


def test_file_search_and_save_as(tmp_path: Path) -> None:
    _file(tmp_path, "a.csv", b"x,y\n1,2\n")
    _file(tmp_path, "b.csv", b"x,y\n")
    _file(tmp_path, "notes.txt", b"hello there\n")
    code, stdout, _ = invoke(
        "file", "search", "--name-regex", r".*\.csv", "--metadata", "lab.rows:range:10:20",
        "--json",
    )  # fmt: skip
    assert code == 0
    assert [f["name"] for f in json.loads(stdout)["files"]] == ["a.csv"]
    code, stdout, _ = invoke(
        "file", "search", "--query", "name:*.csv OR name:notes.*", "--save-as", "some", "--json"
    )
    assert code == 0
    found = json.loads(stdout)
    assert sorted(f["name"] for f in found["files"]) == ["a.csv", "b.csv", "notes.txt"]
    assert found["feed"]["criteria"]["op"] == "or" and feed_names() == ["some"]
    code, _, stderr = invoke("file", "search", "--mime", "text", "--save-as", "other")
    assert code == 2 and "criteria.mime:" in stderr and feed_names() == ["some"]
