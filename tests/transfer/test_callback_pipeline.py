"""The transfer's callbacks as pipelines (tasks/transfer/callbacks.py): a Python and a
JavaScript FILTER answer successive chunks at once, AFTER_RESULT_RECEIVED gets the
delivered batches as a stream; every callback still sees every file in play, in order,
and a file either filter refuses is never copied, whichever chunk it is in."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from storeflow.models.transfer import parse_definition
from storeflow.sandbox.definitions import CallbackDefinition
from storeflow.sandbox.models import Stage
from storeflow.sandbox.settings import SandboxSettings
from storeflow.sandbox.stages import CallbackSet
from storeflow.tasks.transfer import metadata as transfer_metadata
from storeflow.tasks.transfer import run_transfer
from storeflow.tasks.transfer.callbacks import BoundCallbacks
from storeflow.tasks.transfer.engine import AFTER_JOIN, FILTER_BATCH
from tests.transfer.conftest import local_def

Dirs = Callable[[str], Path]

# Numbers every file it sees; refuses multiples of 7.
PY_FILTER = (
    "import utils\n"
    "seen = 0\n"
    "def run(req):\n"
    "    global seen\n"
    "    seen += 1\n"
    "    info = utils.get_node_info(req)\n"
    "    info.metadata['py'] = str(seen)\n"
    "    return int(info.path.rsplit('-', 1)[1]) % 7 != 0\n"
)
# Numbers every file it sees (only those the Python filter kept); refuses a few files
# of the last chunks.
JS_FILTER = (
    "const utils = require('./utils')\n"
    "let seen = 0\n"
    "module.exports = (req) => {\n"
    "  seen += 1\n"
    "  const info = utils.getNodeInfo(req)\n"
    "  info.getMetadataMap().set('js', String(seen))\n"
    "  const n = Number(info.getPath().split('-').pop())\n"
    "  return n !== 2 && n !== 2050 && n !== 2101\n"
    "}\n"
)
AFTER = (
    "import utils\n"
    "seen = 0\n"
    "def run(req):\n"
    "    global seen\n"
    "    seen += 1\n"
    "    info = utils.get_node_info(req)\n"
    "    info.metadata['after'] = req.result.details['source'].rsplit('-', 1)[1]\n"
    "    return True\n"
)


@pytest.mark.parametrize("workers", [1, 2])
def test_filters_and_after_results_as_pipelines_over_many_chunks(dirs: Dirs, workers: int) -> None:
    count = 2 * max(FILTER_BATCH, AFTER_JOIN) + 110
    src, dst = dirs("src"), dirs("dst")
    for i in range(count):
        (src / f"f-{i:05}").write_bytes(b"x")
    # Some files carry metadata from an earlier transfer, in every chunk: read ahead of
    # the chunk being sent, it reaches the callbacks with its own file.
    carried = set(range(1, count, 97))
    for i in carried:
        transfer_metadata.write(str(src / f"f-{i:05}"), {"origin": str(i)})
    definitions = [
        CallbackDefinition(name="py", language="python", stage=Stage.FILTER, source=PY_FILTER),
        CallbackDefinition(name="js", language="javascript", stage=Stage.FILTER, source=JS_FILTER),
        CallbackDefinition(
            name="after", language="python", stage=Stage.AFTER_RESULT_RECEIVED, source=AFTER
        ),
    ]
    spec = parse_definition(local_def(src, dst))
    with CallbackSet(definitions, task_id="t", policy=SandboxSettings()) as callbacks:
        bound = BoundCallbacks(callbacks, spec)
        result = run_transfer(
            spec,
            batch_filter=bound.batch_filter,
            after_results=bound.after_results,
            batch_size=100,
            max_workers=workers,
        )
    kept = [i for i in range(count) if i % 7 != 0 and i not in (2, 2050, 2101)]
    assert sorted(os.listdir(dst)) == sorted(f"f-{i:05}" for i in kept)
    assert len(result.skipped) == count - len(kept)
    # In order: the Python filter saw every file, the JS one those the Python one kept.
    by_py = [i for i in range(count) if i % 7 != 0]
    for i in kept:
        stored = transfer_metadata.read(str(dst / f"f-{i:05}"))
        expected = {"py": str(i + 1), "js": str(by_py.index(i) + 1), "after": f"{i:05}"}
        if i in carried:
            expected["origin"] = str(i)
        assert stored == expected


def _files_carrying(src: Path, count: int, carried: set[int]) -> None:
    """``count`` files f-00000...; those in ``carried`` hold metadata from an earlier
    transfer ({"origin": their number})."""
    for i in range(count):
        (src / f"f-{i:05}").write_bytes(b"x")
    for i in carried:
        transfer_metadata.write(str(src / f"f-{i:05}"), {"origin": str(i)})


def _transfer_with_after(
    src: Path, dst: Path, source: str, filtered: dict[str, dict[str, str]] | None = None
) -> None:
    """A transfer with one Python AFTER_RESULT_RECEIVED callback and no FILTER;
    ``filtered``: the metadata a FILTER left for some files, as if it had seen them."""
    definitions = [
        CallbackDefinition(
            name="after", language="python", stage=Stage.AFTER_RESULT_RECEIVED, source=source
        )
    ]
    spec = parse_definition(local_def(src, dst))
    with CallbackSet(definitions, task_id="t", policy=SandboxSettings()) as callbacks:
        bound = BoundCallbacks(callbacks, spec)
        bound.filtered.update(filtered or {})
        run_transfer(spec, after_results=bound.after_results, batch_size=100, max_workers=2)


def test_after_results_alone_start_from_the_metadata_the_source_files_carry(
    dirs: Dirs,
) -> None:
    """Without FILTER, AFTER_RESULT_RECEIVED reads each batch's source metadata itself
    (all of a batch at once): a file that carries some from an earlier transfer reaches
    the callback with it, one that carries none with an empty map, in every batch."""
    count = AFTER_JOIN + 300
    src, dst = dirs("src"), dirs("dst")
    carried = set(range(3, count, 101))
    _files_carrying(src, count, carried)
    seen = (
        "import utils\n"
        "def run(req):\n"
        "    info = utils.get_node_info(req)\n"
        "    info.metadata['had'] = info.metadata.get('origin', '-')\n"
        "    return True\n"
    )
    _transfer_with_after(src, dst, seen)
    for i in range(count):
        stored = transfer_metadata.read(str(dst / f"f-{i:05}"))
        if i in carried:
            assert stored == {"origin": str(i), "had": str(i)}
        else:
            assert stored == {"had": "-"}


def test_after_results_start_from_filter_metadata_where_filter_saw_the_file(
    dirs: Dirs,
) -> None:
    """A batch of which FILTER saw only some files (a plan made elsewhere, or in part):
    those start from what FILTER left, the others from what their source files carry,
    each with its own file whatever their order in the batch."""
    count = 300
    src, dst = dirs("src"), dirs("dst")
    carried = set(range(1, count, 7))
    _files_carrying(src, count, carried)
    seen_by_filter = set(range(0, count, 3))
    marker = (
        "import utils\n"
        "def run(req):\n"
        "    utils.get_node_info(req).metadata['after'] = 'yes'\n"
        "    return True\n"
    )
    filtered = {f"f-{i:05}": {"filter": str(i)} for i in seen_by_filter}
    _transfer_with_after(src, dst, marker, filtered)
    for i in range(count):
        expected = {"after": "yes"}
        if i in seen_by_filter:
            expected["filter"] = str(i)
        elif i in carried:
            expected["origin"] = str(i)
        assert transfer_metadata.read(str(dst / f"f-{i:05}")) == expected, i
