"""A batch's identical answers travel as one answer and a count: every file still gets
its own verdict, its own metadata and only its own output."""

from pathlib import Path

import pytest

from storeflow.sandbox.models import FileNode, Language
from storeflow.sandbox.settings import SandboxSettings
from storeflow.sandbox.stages import CallbackSet
from tests.sandbox.helpers import nodes, one_callback

KEEP_ALL_PRINT_FIRST = {
    Language.PYTHON: (
        "calls = 0\n"
        "def run(req):\n"
        "    global calls\n"
        "    calls += 1\n"
        "    if calls == 1:\n"
        "        print('first')\n"
        "    return True\n"
    ),
    Language.JAVASCRIPT: (
        "let calls = 0\n"
        "module.exports = (req) => {\n"
        "  calls += 1\n"
        "  if (calls === 1) console.log('first')\n"
        "  return true\n"
        "}\n"
    ),
}

TAG_ALL = {
    Language.PYTHON: (
        "import utils\n"
        "def run(req):\n"
        "    utils.get_node_info(req).metadata['tag'] = 'x'\n"
        "    return True\n"
    ),
    Language.JAVASCRIPT: (
        "const utils = require('./utils')\n"
        "module.exports = (req) => {\n"
        "  utils.getNodeInfo(req).getMetadataMap().set('tag', 'x')\n"
        "  return true\n"
        "}\n"
    ),
}


@pytest.mark.parametrize("language", [Language.PYTHON, Language.JAVASCRIPT])
def test_same_answers_keep_each_files_metadata_and_output(
    settings: SandboxSettings, tmp_path: Path, language: Language
) -> None:
    files = nodes(tmp_path, 30, own_metadata_every=3)
    with CallbackSet(
        [one_callback(language, KEEP_ALL_PRINT_FIRST[language])], task_id="t", policy=settings
    ) as cbs:
        outcomes = cbs.filter_many(files)
    assert [o.keep for o in outcomes] == [True] * 30
    assert [o.metadata for o in outcomes] == [n.metadata for n in files]
    assert not any(o.set or o.removed for o in outcomes)
    outputs = [o.calls[0].outcome.output for o in outcomes]
    assert outputs[0].strip() == "first" and outputs[1:] == [""] * 29


@pytest.mark.parametrize("language", [Language.PYTHON, Language.JAVASCRIPT])
def test_same_metadata_set_on_every_file_is_each_files_own(
    settings: SandboxSettings, tmp_path: Path, language: Language
) -> None:
    nodes = [FileNode(str(tmp_path / f"g-{i}"), 0o100644, 0, 0, 1, 0, 0, 0, {}) for i in range(20)]
    with CallbackSet(
        [one_callback(language, TAG_ALL[language])], task_id="t", policy=settings
    ) as cbs:
        outcomes = cbs.filter_many(nodes)
    assert [o.metadata for o in outcomes] == [{"tag": "x"}] * 20
    assert all(o.set == {"tag": "x"} for o in outcomes)
    # Changing one file's metadata leaves the others' alone.
    assert outcomes[0].metadata is not None
    outcomes[0].metadata["tag"] = "changed"
    assert [o.metadata for o in outcomes[1:]] == [{"tag": "x"}] * 19


def test_metadata_assigned_whole_goes_back_like_metadata_changed_in_place(
    settings: SandboxSettings, tmp_path: Path
) -> None:
    """A Python callback may replace a node's metadata (info.metadata = {...}) instead of
    changing the map it read: each file's new map comes back, checked the same way."""
    source = (
        "import utils\n"
        "def run(req):\n"
        "    info = utils.get_node_info(req)\n"
        "    n = int(info.path.rsplit('-', 1)[1])\n"
        "    if n % 2:\n"
        "        info.metadata = {'odd': str(n)}\n"
        "    if n == 4:\n"
        "        info.metadata = {'bad': 4}\n"
        "    return True\n"
    )
    files = [
        FileNode(str(tmp_path / f"g-{i}"), 0o100644, 0, 0, 1, 0, 0, 0, {"was": "x"})
        for i in range(8)
    ]
    with CallbackSet([one_callback(Language.PYTHON, source)], task_id="t", policy=settings) as cbs:
        outcomes = cbs.filter_many(files)
    for i, outcome in enumerate(outcomes):
        if i == 4:
            assert not outcome.keep and "str to str" in str(outcome.calls[0].outcome.error)
        elif i % 2:
            assert outcome.keep and outcome.metadata == {"odd": str(i)}
        else:
            assert outcome.keep and outcome.metadata == {"was": "x"}
