"""OTF's meaning for the fields its schemas accept: error: false in every form, file
watch defaults, post-copy destinations (compared with opentaskpy itself, run from a
throwaway virtualenv), and the fields storeflow used to refuse as misspelt."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from storeflow.models.transfer import DefinitionError, LocalDestination, parse_definition
from storeflow.tasks.transfer.engine import run_transfer
from storeflow.tasks.transfer.errors import ConditionNotMet, FileWatchTimeout
from tests.otf import opentaskpy_release


def local(src: Path, dst: Path | None, **source: Any) -> dict[str, Any]:
    definition: dict[str, Any] = {
        "type": "transfer",
        "source": {
            "directory": str(src),
            "fileRegex": r".*\.txt",
            "protocol": {"name": "local"},
            **source,
        },
    }
    if dst is not None:
        definition["destination"] = [{"directory": str(dst), "protocol": {"name": "local"}}]
    return definition


def tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


@pytest.fixture
def src(tmp_path: Path) -> Path:
    (tmp_path / "src").mkdir()
    return tmp_path / "src"


@pytest.fixture
def dst(tmp_path: Path) -> Path:
    (tmp_path / "dst").mkdir()
    return tmp_path / "dst"


# -- fields OTF accepts ---------------------------------------------------------------------


def test_fields_otf_accepts_are_accepted(src: Path, dst: Path) -> None:
    d = local(
        src,
        dst,
        conditionals={"checkDuringFilewatch": True, "count": {"minCount": 1}},
    )
    d["destination"][0].update(transferType="push", permissions={"mode": "0600"})
    d["variables"] = {"A": 1}
    model = parse_definition(d)
    assert model.source.conditionals is not None
    assert model.source.conditionals.check_during_filewatch is True
    dest = model.destination[0]
    assert isinstance(dest, LocalDestination) and dest.transfer_type == "push"
    assert dest.mode_bits == 0o600
    (src / "a.txt").write_text("a")
    run_transfer(model)
    assert (dst / "a.txt").stat().st_mode & 0o777 == 0o600


def test_unknown_transfer_type_and_encryption_are_explained(src: Path, dst: Path) -> None:
    d = local(src, dst)
    d["destination"][0]["transferType"] = "teleport"
    with pytest.raises(DefinitionError, match=r"destination\[0\]\.transferType"):
        parse_definition(d)
    d = local(src, dst, encryption={"encrypt": True})
    with pytest.raises(DefinitionError, match=r"source\.encryption: GPG encryption is not"):
        parse_definition(d)


def test_file_watch_default_timeout_is_otf_s_sixty_seconds(src: Path) -> None:
    model = parse_definition(local(src, None, fileWatch={}))
    assert model.source.file_watch is not None and model.source.file_watch.timeout == 60


def test_no_destination_finds_files_and_runs_the_post_copy_action(src: Path) -> None:
    (src / "a.txt").write_text("a")
    result = run_transfer(parse_definition(local(src, None, postCopyAction={"action": "delete"})))
    assert result.files == ("a.txt",) and tree(src) == []


# -- error: false ------------------------------------------------------------------------------


def test_error_false_succeeds_when_min_count_is_not_met(src: Path, dst: Path) -> None:
    (src / "a.txt").write_text("a")
    cond = {"count": {"minCount": 2}}
    with pytest.raises(ConditionNotMet, match="minCount is 2"):
        run_transfer(parse_definition(local(src, dst, conditionals=cond)))
    result = run_transfer(parse_definition(local(src, dst, conditionals=cond, error=False)))
    assert result.files == () and tree(dst) == []


def test_error_false_succeeds_when_the_file_watch_times_out(src: Path, dst: Path) -> None:
    (src / "a.txt").write_text("a")
    trigger = {"timeout": 0.3, "fileRegex": "go"}
    with pytest.raises(FileWatchTimeout):
        run_transfer(parse_definition(local(src, dst, fileWatch=trigger)), poll_interval=0.1)
    definition = parse_definition(local(src, dst, fileWatch=trigger, error=False))
    result = run_transfer(definition, poll_interval=0.1)
    # As OTF: nothing more is done after the watch, the data file stays where it is.
    assert result.files == () and tree(dst) == [] and tree(src) == ["a.txt"]


def test_error_false_succeeds_when_nothing_matches(src: Path, dst: Path) -> None:
    result = run_transfer(parse_definition(local(src, dst, error=False)))
    assert result.files == ()


def test_conditionals_apply_during_the_watch_only_when_asked(src: Path, dst: Path) -> None:
    (src / "a.txt").write_text("")  # empty: fails size.gt 0
    cond: dict[str, Any] = {"size": {"gt": 0}}
    # Without checkDuringFilewatch the file ends the watch; the conditionals then find
    # no valid file (OTF's order).
    d = local(src, dst, conditionals=cond, fileWatch={"timeout": 5})
    with pytest.raises(Exception, match="no file in"):
        run_transfer(parse_definition(d), poll_interval=0.1)
    d = local(src, dst, conditionals={**cond, "checkDuringFilewatch": True})
    d["source"]["fileWatch"] = {"timeout": 0.3}
    with pytest.raises(FileWatchTimeout):
        run_transfer(parse_definition(d), poll_interval=0.1)


# -- postCopyAction destinations, as opentaskpy puts them -----------------------------------


def test_rename_without_a_directory_part_is_refused(src: Path) -> None:
    action = {"action": "rename", "destination": "archive", "pattern": "a", "sub": "b"}
    with pytest.raises(DefinitionError, match="has no directory part"):
        parse_definition(local(src, None, postCopyAction=action))


def otf_run(definition: dict[str, Any], config: Path) -> None:
    """opentaskpy's own `task-run` on the definition (its venv, its config layout)."""
    bin_dir = opentaskpy_release.venv()
    (config / "transfers").mkdir(parents=True, exist_ok=True)
    (config / "transfers" / "t.json").write_text(json.dumps(definition))
    (config / "variables.json").write_text("{}")
    env = {**os.environ, "OTF_NO_LOG": "1"}
    done = subprocess.run(
        [str(bin_dir / "task-run"), "-t", "t", "-c", str(config)],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]


@pytest.mark.parametrize(
    "action",
    [
        {"action": "move", "destination": "ARCHIVE"},
        {"action": "move", "destination": "ARCHIVE/"},
        {"action": "rename", "destination": "ARCHIVE/", "pattern": r"\.txt$", "sub": ".done"},
        {"action": "rename", "destination": "ARCHIVE", "pattern": r"\.txt$", "sub": ".done"},
    ],
    ids=["move", "move-slash", "rename-slash", "rename-no-slash"],
)
def test_post_copy_destination_lands_where_opentaskpy_puts_it(
    tmp_path: Path, action: dict[str, Any]
) -> None:
    trees = []
    for who in ("otf", "storeflow"):
        root = tmp_path / who
        (root / "in" / "archive").mkdir(parents=True)
        (root / "out").mkdir()
        (root / "in" / "a.txt").write_text("a")
        (root / "in" / "b.txt").write_text("b")
        placed = {**action, "destination": action["destination"].replace(
            "ARCHIVE", str(root / "in" / "archive"))}  # fmt: skip
        definition = local(root / "in", root / "out", postCopyAction=placed)
        if who == "otf":
            otf_run(definition, tmp_path / "otf-config")
        else:
            run_transfer(parse_definition(definition))
        trees.append(tree(root))
    assert trees[0] == trees[1]
    assert trees[1] != sorted(["in/a.txt", "in/b.txt", "out/a.txt", "out/b.txt"])
