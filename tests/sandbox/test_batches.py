"""Many files per round trip: filter_many / after_results give the same outcomes as one
call per file, with the callback still called once per file, and failures stay per file."""

import json
import os
import signal
from pathlib import Path
from typing import Any

import pytest

from storeflow.sandbox.models import ErrorKind, ExecutionResult, Language, Stage
from storeflow.sandbox.settings import SandboxSettings
from storeflow.sandbox.stages import CallbackSet
from storeflow.sandbox.worker import delivered_wire, encode_items, marshal_items
from tests.sandbox.helpers import nodes, one_callback

KEEP_EVEN = {
    Language.PYTHON: (
        "import utils\n"
        "calls = 0\n"
        "def run(req):\n"
        "    global calls\n"
        "    calls += 1\n"
        "    info = utils.get_node_info(req)\n"
        "    info.metadata['seen'] = str(calls)\n"
        "    return int(info.path.rsplit('-', 1)[1]) % 2 == 0\n"
    ),
    Language.JAVASCRIPT: (
        "const utils = require('./utils')\n"
        "let calls = 0\n"
        "module.exports = (req) => {\n"
        "  calls += 1\n"
        "  const info = utils.getNodeInfo(req)\n"
        "  info.getMetadataMap().set('seen', String(calls))\n"
        "  return Number(info.getPath().split('-').pop()) % 2 === 0\n"
        "}\n"
    ),
}


@pytest.mark.parametrize("language", [Language.PYTHON, Language.JAVASCRIPT])
def test_filter_many_matches_one_call_per_file(
    settings: SandboxSettings, tmp_path: Path, language: Language
) -> None:
    files = nodes(tmp_path, 40)
    with CallbackSet(
        [one_callback(language, KEEP_EVEN[language])], task_id="t", policy=settings
    ) as cbs:
        batched = cbs.filter_many(files)
        worker = next(iter(cbs._workers.values()))
        assert worker.starts == 1  # one warm worker answered the whole batch
    assert [o.keep for o in batched] == [i % 2 == 0 for i in range(40)]
    # Each file was one run(req) call, in order, with its own metadata changes.
    assert [o.metadata for o in batched] == [{"seen": str(i + 1)} for i in range(40)]
    assert all(o.changes.set == {"seen": str(i + 1)} for i, o in enumerate(batched))
    with CallbackSet(
        [one_callback(language, KEEP_EVEN[language])], task_id="t", policy=settings
    ) as cbs:
        single = [cbs.filter(n) for n in files]
    assert [(o.keep, o.metadata) for o in single] == [(o.keep, o.metadata) for o in batched]


def test_a_failure_in_a_batch_fails_that_file_only(
    settings: SandboxSettings, tmp_path: Path
) -> None:
    source = (
        "import utils\n"
        "def run(req):\n"
        "    if utils.get_node_info(req).path.endswith('-3'):\n"
        "        raise ValueError('bad file')\n"
        "    return True\n"
    )
    files = nodes(tmp_path, 6)
    with CallbackSet(
        [one_callback(Language.PYTHON, source, name="picky")], task_id="t", policy=settings
    ) as cbs:
        outcomes = cbs.filter_many(files)
    assert [o.keep for o in outcomes] == [True, True, True, False, True, True]
    failed = outcomes[3]
    assert failed.failed_callback == "picky"
    assert failed.error is not None and failed.error.kind is ErrorKind.EXCEPTION
    assert "bad file" in failed.error.message


def test_a_timeout_in_a_batch_kills_the_worker_and_a_fresh_one_takes_the_rest(
    settings: SandboxSettings, tmp_path: Path
) -> None:
    source = (
        "import utils, time\n"
        "def run(req):\n"
        "    if utils.get_node_info(req).path.endswith('-2'):\n"
        "        while True: pass\n"
        "    return True\n"
    )
    fast = settings.model_copy(update={"call_timeout_s": 1.0})
    files = nodes(tmp_path, 5)
    with CallbackSet([one_callback(Language.PYTHON, source)], task_id="t", policy=fast) as cbs:
        outcomes = cbs.filter_many(files)
        worker = next(iter(cbs._workers.values()))
        # Answers come in groups, so the first timeout cannot name the call that hung:
        # the unanswered calls run again one answer per frame on a second worker, which
        # names it; a third takes the rest.
        assert worker.starts == 3
    assert [o.keep for o in outcomes] == [True, True, False, True, True]
    assert outcomes[2].error is not None and outcomes[2].error.kind is ErrorKind.TIMEOUT
    assert [o.error for i, o in enumerate(outcomes) if i != 2] == [None] * 4


@pytest.mark.parametrize("language", [Language.PYTHON, Language.JAVASCRIPT])
def test_answers_past_the_frame_cap_are_split_into_groups(
    settings: SandboxSettings, tmp_path: Path, language: Language
) -> None:
    """A batch's answers travel in groups; a group never passes the frame cap, so many
    big answers arrive whole, each with its own file's result."""
    source = {
        Language.PYTHON: (
            "import utils\ndef run(req):\n    return utils.get_node_info(req).path[-4:] * 150\n"
        ),
        Language.JAVASCRIPT: (
            "const utils = require('./utils')\n"
            "module.exports = (req) => utils.getNodeInfo(req).getPath().slice(-4).repeat(150)\n"
        ),
    }[language]
    capped = settings.model_copy(update={"result_limit_bytes": 2048})
    files = nodes(tmp_path, 30)
    with CallbackSet([one_callback(language, source)], task_id="t", policy=capped) as cbs:
        outcomes = cbs.filter_many(files)
        assert next(iter(cbs._workers.values())).starts == 1
    assert [o.failed for o in outcomes] == [False] * 30
    assert [o.calls[0].outcome.result for o in outcomes] == [str(f.path)[-4:] * 150 for f in files]


def test_callbacks_chain_per_file_and_stop_at_the_first_no(
    settings: SandboxSettings, tmp_path: Path
) -> None:
    first = one_callback(Language.JAVASCRIPT, KEEP_EVEN[Language.JAVASCRIPT], name="even")
    counter = (
        "import utils\n"
        "def run(req):\n"
        "    info = utils.get_node_info(req)\n"
        "    info.metadata['second'] = info.metadata['seen']\n"
        "    return True\n"
    )
    second = one_callback(Language.PYTHON, counter, name="second")
    files = nodes(tmp_path, 6)
    with CallbackSet([first, second], task_id="t", policy=settings) as cbs:
        outcomes = cbs.filter_many(files)
    assert [o.keep for o in outcomes] == [True, False, True, False, True, False]
    assert [[c.name for c in o.calls] for o in outcomes] == [
        ["even", "second"] if i % 2 == 0 else ["even"] for i in range(6)
    ]
    assert outcomes[2].metadata == {"seen": "3", "second": "3"}


def test_after_results_sees_each_files_result(settings: SandboxSettings, tmp_path: Path) -> None:
    source = (
        "import utils\n"
        "def run(req):\n"
        "    info = utils.get_node_info(req)\n"
        "    info.metadata['dest'] = req.result.destination\n"
        "    return True\n"
    )
    files = nodes(tmp_path, 3)
    results = [
        ExecutionResult(status="SUCCESS", destination=f"/out/{i}") for i in range(len(files))
    ]
    definition = one_callback(Language.PYTHON, source, stage=Stage.AFTER_RESULT_RECEIVED)
    with CallbackSet([definition], task_id="t", policy=settings) as cbs:
        outcomes = cbs.after_results(files, results)
    assert [o.metadata for o in outcomes] == [{"dest": f"/out/{i}"} for i in range(3)]


def test_a_worker_that_died_while_idle_is_replaced_not_blamed(
    settings: SandboxSettings, tmp_path: Path
) -> None:
    """bwrap's --die-with-parent ends a worker with the thread that started it (a copy
    thread of an earlier delivery): the next batch starts a fresh one."""
    files = nodes(tmp_path, 4)
    definition = one_callback(Language.PYTHON, KEEP_EVEN[Language.PYTHON])
    with CallbackSet([definition], task_id="t", policy=settings) as cbs:
        assert [o.keep for o in cbs.filter_many(files)] == [True, False, True, False]
        worker = next(iter(cbs._workers.values()))
        assert worker._process is not None
        os.killpg(worker._process.pid, signal.SIGKILL)
        worker._process.popen.wait(timeout=10)
        again = cbs.filter_many(files)
        assert [o.keep for o in again] == [True, False, True, False]
        assert not any(o.failed for o in again)
        assert worker.starts == 2


@pytest.mark.parametrize("language", [Language.PYTHON, Language.JAVASCRIPT])
def test_delivered_results_reach_the_callback_as_dicts_would(
    settings: SandboxSettings, tmp_path: Path, language: Language
) -> None:
    """A DeliveredResult (a delivered file's short form, a tuple, as AFTER_RESULT_RECEIVED
    of a transfer sends) goes as an array (JSON; marshal keeps it a tuple), beside rows
    that carry metadata or other values; a worker expands it when the callback asks and
    the callback sees the same result as from the dict."""
    wire = {
        "status": "SUCCESS",
        "error": None,
        "destination": "/out/\u00e9t\u00e9 \udcff",
        "details": {"destinations": ["/out/\u00e9t\u00e9 \udcff", "/out/b"], "source": "/in/x"},
    }
    short = ("/in/x", "/out/\u00e9t\u00e9 \udcff", "/out/b")
    assert delivered_wire(short) == wire
    rows = [n.to_row() for n in nodes(tmp_path, 3)]
    rows[1] = [*rows[1][:-1], {"k": "v"}]
    rows[2] = [*rows[2][:4], True, *rows[2][5:]]
    encoded = encode_items([(r, short) for r in rows])
    assert encoded.isascii()  # the surrogate: the standard encoder's escapes
    decoded = json.loads(encoded)
    assert [row for row, _ in decoded] == json.loads(json.dumps(rows))
    assert [result for _, result in decoded] == [list(short)] * 3
    source = {
        Language.PYTHON: (
            "import utils\n"
            "def run(req):\n"
            "    info = utils.get_node_info(req)\n"
            "    r = req.result\n"
            "    assert req.result is r\n"
            "    d = r.details\n"
            "    seen = [r.status, str(r.error), r.destination, *d['destinations'], d['source']]\n"
            "    info.metadata['seen'] = '|'.join(seen)\n"
            "    return True\n"
        ),
        Language.JAVASCRIPT: (
            "const utils = require('./utils')\n"
            "module.exports = (req) => {\n"
            "  const r = req.getResult()\n"
            "  if (req.getResult() !== r) throw new Error('not the same result')\n"
            "  const d = r.getDetails()\n"
            "  const seen = [r.getStatus(), r.getError() === undefined ? 'None' : 'error',\n"
            "    r.getDestination(), ...d.destinations, d.source]\n"
            "  utils.getNodeInfo(req).getMetadataMap().set('seen', seen.join('|'))\n"
            "  return true\n"
            "}\n"
        ),
    }[language]
    (tmp_path / "more").mkdir()
    files = nodes(tmp_path / "more", 3)
    definition = one_callback(language, source, stage=Stage.AFTER_RESULT_RECEIVED)
    with CallbackSet([definition], task_id="t", policy=settings) as cbs:
        outcomes = cbs.after_results(files, [short, wire, short])
    expected = "SUCCESS|None|/out/\u00e9t\u00e9 \udcff|/out/\u00e9t\u00e9 \udcff|/out/b|/in/x"
    assert [o.metadata for o in outcomes] == [{"seen": expected}] * 3
    assert json.loads(encode_items([(None, short)])) == [[None, list(short)]]


@pytest.mark.parametrize("language", [Language.PYTHON, Language.JAVASCRIPT])
def test_names_beyond_ascii_reach_the_callback_as_they_were(
    settings: SandboxSettings, tmp_path: Path, language: Language
) -> None:
    """A batch of UTF-8 names goes as UTF-8 JSON (the fast encoder); one with a name
    that is not UTF-8 (a surrogate escape, as os.fsdecode makes of such bytes) falls
    back to ASCII escapes.  Either way the callback sees each path, metadata value and
    result as the host had it."""
    plain = [n.to_row() for n in nodes(tmp_path, 2)]
    accented = [[f"/in/\u00e9t\u00e9 \u6587-{i}", *row[1:-1], {"k": "\u00fc"}]
                for i, row in enumerate(plain)]  # fmt: skip
    broken = [[f"/in/caf\udce9-{i}", *row[1:]] for i, row in enumerate(plain)]
    as_utf8 = encode_items([(r, (r[0], "/out/\u00e9")) for r in accented])
    assert not as_utf8.isascii() and b"\\u" not in as_utf8  # not the escapes
    as_escapes = encode_items([(r, None) for r in broken])
    assert as_escapes.isascii() and json.loads(as_escapes)[0][0][0] == "/in/caf\udce9-0"
    echo = {
        Language.PYTHON: (
            "import utils\n"
            "def run(req):\n"
            "    info = utils.get_node_info(req)\n"
            "    r = req.result\n"
            "    dest = r.destination if r is not None else '-'\n"
            "    seen = [info.path, info.metadata.get('k', ''), dest]\n"
            "    info.metadata['seen'] = '|'.join(seen)\n"
            "    return True\n"
        ),
        Language.JAVASCRIPT: (
            "const utils = require('./utils')\n"
            "module.exports = (req) => {\n"
            "  const info = utils.getNodeInfo(req)\n"
            "  const r = req.getResult()\n"
            "  const m = info.getMetadataMap()\n"
            "  const seen = [info.getPath(), m.get('k') ?? '', r ? r.getDestination() : '-']\n"
            "  m.set('seen', seen.join('|'))\n"
            "  return true\n"
            "}\n"
        ),
    }[language]
    stage = Stage.AFTER_RESULT_RECEIVED
    definition = one_callback(language, echo, stage=stage)
    with CallbackSet([definition], task_id="t", policy=settings) as cbs:
        results = [(r[0], "/out/\u00e9") for r in accented]
        fast = cbs.run_stage_rows(stage, accented, results)
        escaped = cbs.run_stage_rows(stage, broken, [(r[0], "/o") for r in broken])
    assert [m["seen"] for m in fast.metadata] == [
        f"/in/\u00e9t\u00e9 \u6587-{i}|\u00fc|/out/\u00e9" for i in range(2)
    ]
    assert [m["seen"] for m in escaped.metadata] == [f"/in/caf\udce9-{i}||/o" for i in range(2)]


def test_rows_answered_in_columns(settings: SandboxSettings, tmp_path: Path) -> None:
    """run_stage_rows: a verdict and the metadata per file, the dict each row carried
    where nothing changed it, and failures by index; a file a callback refused or failed
    on is not sent to the next."""
    refuse_third = (
        "import utils\n"
        "def run(req):\n"
        "    info = utils.get_node_info(req)\n"
        "    if info.path.endswith('-1'):\n"
        "        raise ValueError('no')\n"
        "    if info.path.endswith('-3'):\n"
        "        info.metadata['mark'] = 'x'\n"
        "    return not info.path.endswith('-2')\n"
    )
    count_calls = (
        "import utils\n"
        "def run(req):\n"
        "    utils.get_node_info(req).metadata['second'] = 'yes'\n"
        "    return True\n"
    )
    rows = [n.to_row() for n in nodes(tmp_path, 5)]
    sent = [row[-1] for row in rows]
    definitions = [
        one_callback(Language.PYTHON, refuse_third),
        one_callback(Language.PYTHON, count_calls),
    ]
    definitions[1] = definitions[1].model_copy(update={"name": "second"})
    with CallbackSet(definitions, task_id="t", policy=settings) as cbs:
        columns = cbs.run_stage_rows(Stage.FILTER, rows)
    assert columns.proceed == [True, False, False, True, True]
    assert list(columns.failures) == [1]
    name, error = columns.failures[1]
    assert name == definitions[0].name and error is not None and "no" in error.message
    assert [len(live) for _, live, _ in columns.asked] == [5, 3]
    assert columns.metadata[3] == {"mark": "x", "second": "yes"}
    assert columns.metadata[0] == {"second": "yes"}
    assert columns.metadata[2] is sent[2]  # refused, unchanged: the dict it was sent


def test_chunks_go_through_the_callbacks_as_a_pipeline(
    settings: SandboxSettings, tmp_path: Path
) -> None:
    """run_stage_chunks: each chunk's columns in order, the same as run_stage_rows
    chunk by chunk; the second callback sees, in order, exactly the files the first
    kept, including those of later chunks, with the first's metadata."""
    first = (
        "import utils\n"
        "calls = 0\n"
        "def run(req):\n"
        "    global calls\n"
        "    calls += 1\n"
        "    info = utils.get_node_info(req)\n"
        "    info.metadata['first'] = str(calls)\n"
        "    return int(info.path.rsplit('-', 1)[1]) % 3 != 0\n"
    )
    second = (
        "const utils = require('./utils')\n"
        "let calls = 0\n"
        "module.exports = (req) => {\n"
        "  calls += 1\n"
        "  const info = utils.getNodeInfo(req)\n"
        "  info.getMetadataMap().set('second', String(calls))\n"
        "  return !info.getPath().endsWith('-7') && !info.getPath().endsWith('-28')\n"
        "}\n"
    )
    definitions = [
        one_callback(Language.PYTHON, first, name="first"),
        one_callback(Language.JAVASCRIPT, second, name="second"),
    ]
    rows = [n.to_row() for n in nodes(tmp_path, 30)]
    chunks = [(rows[start : start + 4], None) for start in range(0, 30, 4)]
    with CallbackSet(definitions, task_id="t", policy=settings) as cbs:
        streamed = list(cbs.run_stage_chunks(Stage.FILTER, iter(chunks), ahead=3))
        workers = [w.starts for w in cbs._workers.values()]
    assert workers == [1, 1]
    proceed = [keep for columns in streamed for keep in columns.proceed]
    metadata = [m for columns in streamed for m in columns.metadata]
    assert proceed == [i % 3 != 0 and i not in (7, 28) for i in range(30)]
    # The first callback saw every file, in order; the second only those the first
    # kept, in order, chunk after chunk.
    assert [m["first"] for m in metadata] == [str(i + 1) for i in range(30)]
    kept_by_first = [i for i in range(30) if i % 3 != 0]
    assert [metadata[i].get("second") for i in kept_by_first] == [
        str(n + 1) for n in range(len(kept_by_first))
    ]
    assert all("second" not in metadata[i] for i in range(30) if i % 3 == 0)


def test_a_pipeline_failure_is_raised_with_its_chunk_and_later_chunks_are_not_asked(
    settings: SandboxSettings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failure of the machinery (not a callback's answer) in chunk k is raised where
    chunk k is taken; the chunks before it were answered, none after it is asked."""
    definitions = [
        one_callback(Language.PYTHON, "def run(req):\n    return True\n", name="a"),
        one_callback(Language.PYTHON, "def run(req):\n    return True\n", name="b"),
    ]
    rows = [n.to_row() for n in nodes(tmp_path, 20)]
    chunks = [(rows[start : start + 2], None) for start in range(0, 20, 2)]
    asked: list[tuple[int, str]] = []
    with CallbackSet(definitions, task_id="t", policy=settings) as cbs:
        real = cbs._call_many

        def call_many(index: int, common: dict, items: Any, encoded: Any = None) -> Any:
            asked.append((index, items[0][0][0]))
            if index == 1 and items[0][0][0].endswith("f-6"):
                raise RuntimeError("pipe broke")
            return real(index, common, items, encoded)

        monkeypatch.setattr(cbs, "_call_many", call_many)
        taken = []
        with pytest.raises(RuntimeError, match="pipe broke"):
            for columns in cbs.run_stage_chunks(Stage.FILTER, iter(chunks), ahead=2):
                taken.append(columns)
    assert len(taken) == 3  # chunks 0-2 answered by both callbacks
    second = [path for index, path in asked if index == 1]
    assert [p.rsplit("/", 1)[1] for p in second] == ["f-0", "f-2", "f-4", "f-6"]
    # The first callback ran at most `ahead` chunks past the failing one.
    assert len([1 for index, _ in asked if index == 0]) <= 4 + 2


def test_python_workers_are_sent_items_marshalled_and_read_them_as_json_would_give_them(
    tmp_path: Path,
) -> None:
    """The Python worker's batch encoding: marshal, which keeps the items' values (a
    delivered file's tuple, a name that is not UTF-8) and loads in a quarter of
    json.loads' time; items marshal cannot take as they are (a str subclass) go through
    JSON first and arrive as JSON would give them.  The line announces the byte count
    and the marshalled items follow it."""
    import marshal

    from storeflow.sandbox import languages
    from storeflow.sandbox.worker import BATCH_ENCODERS, batch_line

    assert languages.get("python").batch_encoding == "marshal"
    assert languages.get("javascript").batch_encoding == "json"
    rows = [n.to_row() for n in nodes(tmp_path, 2)]
    rows[1] = ["/in/caf\udce9", *rows[1][1:-1], {"k": "\u00fc"}]
    items: list[Any] = [(rows[0], ("/in/a", "/out/a")), (rows[1], None)]
    assert marshal.loads(BATCH_ENCODERS["marshal"](items)) == items

    class Name(str):
        """A path a caller passed as a subclass of str (marshal refuses those)."""

    odd = [Name("/in/a"), *rows[0][1:]]
    mixed = marshal.loads(marshal_items([(odd, ("/in/a", Name("/out/a")))]))
    assert mixed == json.loads(encode_items([(odd, ("/in/a", "/out/a"))]))
    assert type(mixed[0][0][0]) is str and mixed[0][1] == ["/in/a", "/out/a"]
    data = marshal_items(items)
    line = batch_line({"op": "batch", "nonce": "n"}, "marshal", data)
    head, _, rest = line.partition(b"\n")
    assert json.loads(head) == {"op": "batch", "nonce": "n", "items_marshal": len(data)}
    assert rest == data
    as_json = batch_line({"op": "batch"}, "json", encode_items(items))
    assert json.loads(as_json)["items"] == json.loads(json.dumps(items))
    assert as_json.endswith(b"}\n") and as_json.count(b"\n") == 1
