"""One warm worker for one callback: started once, answers many calls,
replaced after a timeout, a crash or a broken rule. Never shared between
callbacks, so one callback can only ever affect its own answers.

What differs between languages (command line, jail, channel) comes from the
callback's CallbackLanguage (sandbox/languages/); this module only speaks
the protocol every worker shares.
"""

import dataclasses
import json
import marshal
import secrets
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import orjson

from storeflow.sandbox import isolation, languages
from storeflow.sandbox.failures import WorkerFailure
from storeflow.sandbox.languages import CallbackLanguage
from storeflow.sandbox.models import (
    Answer,
    CallbackFailure,
    CallbackRequest,
    CallOutcome,
    ErrorKind,
    NodeInfo,
    NodeRow,
)
from storeflow.sandbox.process import LaunchSpec, WorkerProcess, started_by_one_thread
from storeflow.sandbox.settings import SandboxSettings

#: A delivered file's result, ``(source, destination, ...)``: what
#: ``ExecutionResult(status="SUCCESS", destination=<the first destination>,
#: details={"destinations": [...], "source": source})`` says, in a few bytes.  Sent as an
#: array of strings; a worker expands it when the callback reads the result.
#: AFTER_RESULT_RECEIVED of a transfer hands a worker one per file.  A plain tuple:
#: both batch encoders (orjson, marshal) write it as it is, without a Python step.
DeliveredResult = tuple[str, ...]


def delivered_wire(result: DeliveredResult) -> dict[str, Any]:
    """A delivered file's result as a dict (for a worker that takes one call at a time)."""
    return {
        "status": "SUCCESS",
        "error": None,
        "destination": result[1],
        "details": {"destinations": list(result[1:]), "source": result[0]},
    }


#: A batch item: a file's node and its result (AFTER_RESULT_RECEIVED), as wire dicts
#: (or a :class:`DeliveredResult`).
BatchItem = tuple[NodeRow | None, dict[str, Any] | DeliveredResult | None]
#: A worker sends a batch's answers in groups, at most this long after the first of a
#: group was ready (see sandbox/pyworker/main.py): one line per group, not per file.
GROUP_S = 0.05

# Failures the callback owns: it will fail the same way on every start.
_LOAD_KINDS = {ErrorKind.SYNTAX, ErrorKind.NO_ENTRYPOINT, ErrorKind.EXCEPTION}
_WORKER_KINDS = {kind.value: kind for kind in ErrorKind}


class CallbackWorker:
    def __init__(
        self,
        language: str | CallbackLanguage[Any],
        source: str,
        filename: str,
        settings: SandboxSettings,
        *,
        one_shot: bool = False,
    ) -> None:
        self.language = languages.get(language) if isinstance(language, str) else language
        self.source = source
        self.filename = filename
        # The language's own limits (timeout, memory) replace the sandbox-wide ones.
        self.settings = settings.for_language(self.language.name)
        self.one_shot = one_shot
        self._process: WorkerProcess | None = None
        self._load_failure: WorkerFailure | None = None
        self._lock = threading.Lock()
        self.starts = 0

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def _spec(self) -> LaunchSpec:
        self.language.require_isolation(self.settings)
        if self.one_shot:
            return self.language.one_shot_spec(self.settings)
        return self.language.worker_spec(self.settings)

    def _start(self) -> WorkerProcess:
        spec = self._spec()
        token = secrets.token_hex(16)
        process = started_by_one_thread(
            lambda: WorkerProcess(
                spec,
                token=token,
                output_limit=self.settings.output_limit_bytes,
                frame_limit=self.settings.result_limit_bytes,
            )
        )
        self.starts += 1
        try:
            deadline = time.monotonic() + self.settings.start_timeout_s
            config = {
                "op": "config",
                "token": token,
                "channel_fd": process.channel_fd_in_child,
                "frame_limit": self.settings.result_limit_bytes,
                **spec.config,
            }
            process.send(config, deadline)
            ready = self._expect(process, "ready", deadline)
            self.language.check_ready(self.settings, ready)
            # Loading runs the callback's top-level code: the call timeout bounds it.
            deadline = time.monotonic() + self.settings.call_timeout_s
            process.send({"op": "load", "source": self.source, "filename": self.filename}, deadline)
            loaded = self._expect(process, "load", deadline, loading=True)
            if not loaded.get("ok"):
                kind = _WORKER_KINDS.get(str(loaded.get("kind")), ErrorKind.EXCEPTION)
                raise WorkerFailure(kind, str(loaded.get("error", "callback failed to load")))
            process.reader.take_output()
        except BaseException:
            process.kill()
            raise
        return process

    def _expect(
        self, process: WorkerProcess, nonce: str, deadline: float, loading: bool = False
    ) -> dict[str, Any]:
        try:
            got, message = process.reader.read_frame(deadline)
        except WorkerFailure as failure:
            raise self._explain(process, failure, starting=not loading) from failure
        if got != nonce:
            raise WorkerFailure(ErrorKind.PROTOCOL, f"expected the {nonce!r} answer")
        return message

    def _explain(
        self, process: WorkerProcess, failure: WorkerFailure, starting: bool
    ) -> WorkerFailure:
        """Reword a low-level failure for the operator reading the error."""
        if failure.kind is ErrorKind.TIMEOUT:
            limit = self.settings.start_timeout_s if starting else self.settings.call_timeout_s
            what = "start" if starting else "return"
            return WorkerFailure(
                ErrorKind.TIMEOUT,
                f"callback did not {what} within {limit:g} s; its worker was killed",
            )
        if failure.kind is ErrorKind.CRASHED:
            tail = process.reader.stderr_tail()
            how = process.exit_description()
            if "out of memory" in tail.lower() or "heap limit" in tail.lower():
                return WorkerFailure(
                    ErrorKind.MEMORY,
                    f"callback exceeded the {self.settings.memory_limit_mb} MB memory cap ({how})",
                )
            detail = f": {tail.strip()[-500:]}" if tail.strip() else ""
            return WorkerFailure(ErrorKind.CRASHED, f"the callback's worker died ({how}){detail}")
        return failure

    def call(self, request: CallbackRequest) -> CallOutcome:
        """Run the callback once; failures come back in the outcome, not raised."""
        started = time.monotonic()
        with self._lock:
            try:
                answer = self._call_wire_locked(request.to_wire())
            except WorkerFailure as failure:
                answer = Answer(ok=False, error=failure.to_failure())
            except isolation.IsolationUnavailable as exc:
                answer = Answer(ok=False, error=_isolation_failure(exc))
        answer.seconds = time.monotonic() - started
        return answer.outcome()

    def call_many(self, requests: Sequence[CallbackRequest]) -> list[CallOutcome]:
        """Run the callback once per request, in order, a batch per run of requests of
        one task and stage (languages that take batches; others get one call each).
        Each call keeps its own deadline; a call that times out or kills its worker
        fails alone, and a fresh worker takes the rest, as one call after another would."""
        answers: list[Answer] = []
        start = 0
        while start < len(requests):
            common = _common(requests[start])
            end = start + 1
            while end < len(requests) and _common(requests[end]) == common:
                end += 1
            items: list[BatchItem] = [
                (
                    r.node.to_row() if r.node is not None else None,
                    r.result.to_wire() if r.result is not None else None,
                )
                for r in requests[start:end]
            ]
            answers += self.call_items(common, items)
            start = end
        return [a.outcome() for a in answers]

    def call_items(
        self, common: dict[str, Any], items: Sequence[BatchItem], encoded: bytes | None = None
    ) -> list[Answer]:
        """:meth:`call_many` in wire form, no model per file either way: ``common`` is
        what every request shares (id, stage, task), each item a (node, result) pair
        (:meth:`FileNode.to_row`, :meth:`ExecutionResult.to_wire`).  ``encoded``:
        ``items`` in the language's batch encoding (:data:`BATCH_ENCODERS`) when the
        caller has them so already (the next callback of a stage is sent the same
        files)."""
        outcomes: list[Answer] = []
        # After a timeout the calls still unanswered run again one answer per frame, so
        # the one that hangs is named (grouped answers leave it ambiguous).
        group_s = GROUP_S
        with self._lock:
            while len(outcomes) < len(items):
                started = time.monotonic()
                try:
                    if self.language.batches:
                        rest = items[len(outcomes) :]
                        body = encoded if not outcomes else None
                        self._batch_locked(common, rest, outcomes, group_s, body)
                    else:
                        row, result = items[len(outcomes)]
                        node = NodeInfo.of_row(row).to_wire() if row is not None else None
                        if type(result) is tuple:
                            result = delivered_wire(result)
                        wire = {**common, "node": node, "result": result}
                        outcomes.append(self._call_wire_locked(wire))
                        outcomes[-1].seconds = time.monotonic() - started
                except WorkerFailure as failure:
                    if failure.kind is ErrorKind.TIMEOUT and group_s > 0:
                        group_s = 0.0
                        continue
                    failed = Answer(ok=False, error=failure.to_failure())
                    failed.seconds = time.monotonic() - started
                    outcomes.append(failed)
                except isolation.IsolationUnavailable as exc:
                    outcomes.append(Answer(ok=False, error=_isolation_failure(exc)))
        return outcomes

    def _batch_locked(
        self,
        common: dict[str, Any],
        items: Sequence[BatchItem],
        done: list[Answer],
        group_s: float,
        encoded: bytes | None = None,
    ) -> None:
        """Append the answer to each item to ``done`` as its group arrives; a failure
        part-way leaves the answers so far in place and raises for the next item.
        ``encoded``: ``items`` in the language's batch encoding, when known."""
        process = self._ready_process()
        nonce = secrets.token_hex(8)
        head = {"op": "batch", "nonce": nonce, "common": common, "group_s": group_s}
        encoding = self.language.batch_encoding
        if encoded is None:
            encoded = BATCH_ENCODERS[encoding](items)
        line = batch_line(head, encoding, encoded)
        # A group is sent at most group_s after its first answer was ready, plus the
        # call in progress then: each call still has its own full timeout.
        wait = self.settings.call_timeout_s + group_s
        answered = 0
        try:
            process.send_line(line, time.monotonic() + wait)
            while answered < len(items):
                started = time.monotonic()
                try:
                    got, group = process.reader.read_frame(started + wait)
                except WorkerFailure as failure:
                    raise self._explain(process, failure, starting=False) from failure
                answers = group.get("answers")
                count = _group_size(answers) if isinstance(answers, list) else 0
                if (
                    got != f"{nonce}.{answered}"
                    or not isinstance(answers, list)
                    or not 0 < count <= len(items) - answered
                ):
                    raise WorkerFailure(
                        ErrorKind.PROTOCOL,
                        "the result channel carried something besides the answer",
                    )
                # Output captured while a group was computed goes with its first answer.
                output = process.reader.take_output()
                seconds = (time.monotonic() - started) / count
                outcome: Answer | None = None
                as_sent = False
                for answer in answers:
                    if type(answer) is int:
                        # The answer before, `answer` more times (checked: it exists).
                        assert outcome is not None
                        _repeat(outcome, as_sent, answer, items, done)
                        answered += answer
                        continue
                    as_sent = type(answer) is list and len(answer) == 3 and answer[2] is None
                    if type(answer) is list:
                        outcome = _success(answer, items[answered][0], output)
                    elif isinstance(answer, dict):
                        outcome = self._outcome(answer, output)
                    else:
                        raise WorkerFailure(ErrorKind.PROTOCOL, "an answer is neither kind")
                    output = ""
                    outcome.seconds = seconds
                    done.append(outcome)
                    answered += 1
                    if self._process is not process:
                        # The answer asked for a fresh worker (memory, output cap): the
                        # rest of the batch goes to the next one.
                        return
            if process.reader.leftover_on_channel():
                raise WorkerFailure(
                    ErrorKind.PROTOCOL, "the result channel carried something besides the answer"
                )
        except WorkerFailure as failure:
            if failure.replace:
                self._discard()
            raise

    def _ready_process(self) -> WorkerProcess:
        if self._load_failure is not None:
            raise self._load_failure
        if self._process is not None and self._process.popen.poll() is not None:
            # It died while idle (killed from outside): not this call's failure.
            self._discard()
        if self._process is None:
            try:
                self._process = self._start()
            except WorkerFailure as failure:
                if failure.kind in _LOAD_KINDS:
                    self._load_failure = failure
                raise
        return self._process

    def _call_wire_locked(self, wire: dict[str, Any]) -> Answer:
        process = self._ready_process()
        nonce = secrets.token_hex(8)
        deadline = time.monotonic() + self.settings.call_timeout_s
        try:
            process.send({"op": "call", "nonce": nonce, "request": wire}, deadline)
            try:
                got, message = process.reader.read_frame(deadline)
            except WorkerFailure as failure:
                raise self._explain(process, failure, starting=False) from failure
            if got != nonce or process.reader.leftover_on_channel():
                raise WorkerFailure(
                    ErrorKind.PROTOCOL, "the result channel carried something besides the answer"
                )
            return self._outcome(message, process.reader.take_output())
        except WorkerFailure as failure:
            if failure.replace:
                self._discard()
            raise

    def _outcome(self, message: dict[str, Any], output: str) -> Answer:
        if message.get("ok") is True:
            metadata = message.get("metadata")
            if metadata is not None and not (
                isinstance(metadata, dict)
                and all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items())
            ):
                raise WorkerFailure(ErrorKind.PROTOCOL, "metadata must map strings to strings")
            return Answer(
                ok=True,
                result=message.get("result"),
                truthy=bool(message.get("truthy")),
                metadata=metadata,
                output=output,
            )
        kind = _WORKER_KINDS.get(str(message.get("kind")), ErrorKind.EXCEPTION)
        # A failed allocation can leave a worker in a poor state: start afresh.
        replace = kind in {ErrorKind.MEMORY, ErrorKind.OUTPUT_LIMIT}
        if replace:
            self._discard()
        error = WorkerFailure(kind, str(message.get("error", "callback failed")), replace=False)
        return Answer(ok=False, error=error.to_failure(), output=output)

    def _discard(self) -> None:
        if self._process is not None:
            self._process.kill()
            self._process = None

    def close(self) -> None:
        with self._lock:
            self._discard()


def _success(answer: list[Any], row: NodeRow | None, output: str) -> Answer:
    """A batch's success, [result, truthy, metadata or None when the call left the
    node's as it was sent]."""
    if len(answer) != 3:
        raise WorkerFailure(ErrorKind.PROTOCOL, "an answer is not [result, truthy, metadata]")
    result, truthy, metadata = answer
    if metadata is None:
        metadata = row[-1] if row is not None else None
    elif not _string_map(metadata):
        raise WorkerFailure(ErrorKind.PROTOCOL, "metadata must map strings to strings")
    return Answer(ok=True, result=result, truthy=truthy is True, metadata=metadata, output=output)


# Compact: a batch of 256 files is a few KiB shorter down the pipe.
_ENCODER = json.JSONEncoder(ensure_ascii=True, separators=(",", ":"))


def encode_items(items: Sequence[BatchItem]) -> bytes:
    """A batch's items as the worker reads them: JSON (UTF-8), one list.  A
    :class:`DeliveredResult` goes as an array of strings, expanded by the worker when the
    callback asks for the result.

    orjson writes a row in a tenth of the standard encoder's time (the host encodes
    every file a stage's callbacks see).  A name that is not UTF-8 (a surrogate escape,
    as os.fsdecode makes of such bytes) is beyond it: that batch goes through the
    standard encoder, whose \\udcXX escapes the workers read back as they were."""
    listed = items if isinstance(items, list) else list(items)
    try:
        return orjson.dumps(listed)
    except TypeError:  # orjson.JSONEncodeError: a surrogate, a type it does not know
        return _ENCODER.encode(listed).encode("ascii")


def marshal_items(items: Sequence[BatchItem]) -> bytes:
    """A batch's items as a Python worker reads them: Python's own marshal format, which
    it loads in a third of what json.loads takes for the same rows (more than a microsecond a
    file saved per Python callback).  Only ever host -> worker: what a worker sends back
    is JSON, never loaded as marshal.  marshal takes exact built-in types only: items
    holding anything else (a subclass of str or dict a caller passed) go through JSON
    and back first, which leaves them as the JSON a worker would read."""
    listed = items if isinstance(items, list) else list(items)
    try:
        return marshal.dumps(listed)
    except ValueError:  # "unmarshallable object": a subclass of str, list or dict
        return marshal.dumps(json.loads(encode_items(listed)))


#: How a batch's items travel, by CallbackLanguage.batch_encoding: "json" in the batch's
#: line, "marshal" as that many bytes right after it (the line says how many).
BATCH_ENCODERS: dict[str, Callable[[Sequence[BatchItem]], bytes]] = {
    "json": encode_items,
    "marshal": marshal_items,
}


def batch_line(head: dict[str, Any], encoding: str, items: bytes) -> bytes:
    """The batch request: ``head`` (op, nonce, common, group_s) with the encoded items,
    as the language's worker reads it (see CallbackLanguage.batch_encoding)."""
    start = _ENCODER.encode(head)[:-1].encode("ascii")
    if encoding == "json":
        return b"".join((start, b',"items":', items, b"}\n"))
    return b"".join((start, b',"items_%s":%d}\n' % (encoding.encode("ascii"), len(items)), items))


def _repeat(
    outcome: Answer, as_sent: bool, times: int, items: Sequence[BatchItem], done: list[Answer]
) -> None:
    """Append ``outcome`` again for the next ``times`` items of ``items`` (``done`` holds
    the answers to the items before).  The same object where it says the same (a
    batch's answers are read, never changed): its output went with the first, and
    metadata is the item's own when the answer left it as sent (``as_sent``), a copy
    of the callback's per file when it set some."""
    if outcome.output:
        outcome = dataclasses.replace(outcome, output="")
    metadata = outcome.metadata
    start = len(done)
    taken = items[start : start + times]
    if metadata is None or (
        as_sent and not metadata and all(row is not None and not row[-1] for row, _ in taken)
    ):
        # No metadata, or none sent to any and none set: the one answer for them all.
        done.extend([outcome] * len(taken))
        return
    for row, _ in taken:
        if as_sent:
            mine = row[-1] if row is not None else None
            same = mine is metadata or mine == metadata
            done.append(outcome if same else dataclasses.replace(outcome, metadata=mine))
        else:
            done.append(dataclasses.replace(outcome, metadata=dict(metadata)))


def _group_size(answers: list[Any]) -> int:
    """How many answers a group stands for (a repeat counts each); 0 for a malformed
    group: empty, or a repeat that is not a positive count after an answer."""
    if not answers or type(answers[0]) is int:
        return 0
    count = 0
    for answer in answers:
        if type(answer) is not int:
            count += 1
        elif answer > 0:
            count += answer
        else:
            return 0
    return count


def _string_map(value: Any) -> bool:
    return isinstance(value, dict) and all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    )


def _common(request: CallbackRequest) -> dict[str, Any]:
    """What a batch's requests share: its wire form without node and result."""
    wire = request.to_wire()
    return {"id": wire["id"], "stage": wire["stage"], "task": wire["task"]}


def _isolation_failure(exc: isolation.IsolationUnavailable) -> CallbackFailure:
    return WorkerFailure(ErrorKind.ISOLATION, str(exc)).to_failure()


def run_once(
    language: str | CallbackLanguage[Any],
    source: str,
    filename: str,
    request: CallbackRequest,
    settings: SandboxSettings,
) -> CallOutcome:
    """A one-shot run: a fresh worker answers one call and is stopped."""
    worker = CallbackWorker(language, source, filename, settings, one_shot=True)
    try:
        return worker.call(request)
    finally:
        worker.close()
