"""One warm worker for one callback: started once, answers many calls,
replaced after a timeout, a crash or a broken rule. Never shared between
callbacks, so one callback can only ever affect its own answers.

What differs between languages (command line, jail, channel) comes from the
callback's CallbackLanguage (sandbox/languages/); this module only speaks
the protocol every worker shares.
"""

import secrets
import threading
import time
from collections.abc import Sequence
from typing import Any

from storeflow.sandbox import isolation, languages
from storeflow.sandbox.failures import WorkerFailure
from storeflow.sandbox.languages import CallbackLanguage
from storeflow.sandbox.models import (
    Answer,
    CallbackFailure,
    CallbackRequest,
    CallOutcome,
    ErrorKind,
)
from storeflow.sandbox.process import LaunchSpec, WorkerProcess
from storeflow.sandbox.settings import SandboxSettings

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
        process = WorkerProcess(
            spec,
            token=token,
            output_limit=self.settings.output_limit_bytes,
            frame_limit=self.settings.result_limit_bytes,
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
        """Run the callback once per request, in order, with one line to the worker for
        the whole batch (languages that take batches; others get one call each).  Each
        call keeps its own deadline; a call that times out or kills its worker fails
        alone, and a fresh worker takes the rest, as one call after another would."""
        return [a.outcome() for a in self.call_wires([r.to_wire() for r in requests])]

    def call_wires(self, wires: Sequence[dict[str, Any]]) -> list[Answer]:
        """:meth:`call_many` for requests already in their wire form
        (:meth:`CallbackRequest.to_wire`), answered as :class:`Answer`: no model per
        file either way."""
        outcomes: list[Answer] = []
        with self._lock:
            while len(outcomes) < len(wires):
                started = time.monotonic()
                try:
                    if self.language.batches:
                        self._batch_locked(wires[len(outcomes) :], outcomes)
                    else:
                        outcomes.append(self._call_wire_locked(wires[len(outcomes)]))
                        outcomes[-1].seconds = time.monotonic() - started
                except WorkerFailure as failure:
                    failed = Answer(ok=False, error=failure.to_failure())
                    failed.seconds = time.monotonic() - started
                    outcomes.append(failed)
                except isolation.IsolationUnavailable as exc:
                    outcomes.append(Answer(ok=False, error=_isolation_failure(exc)))
        return outcomes

    def _batch_locked(self, wires: Sequence[dict[str, Any]], done: list[Answer]) -> None:
        """Append the answer to each request to ``done`` as it arrives; a failure
        part-way leaves the answers so far in place and raises for the next request."""
        process = self._ready_process()
        nonce = secrets.token_hex(8)
        message = {"op": "batch", "nonce": nonce, "requests": list(wires)}
        try:
            process.send(message, time.monotonic() + self.settings.call_timeout_s)
            for index in range(len(wires)):
                started = time.monotonic()
                deadline = started + self.settings.call_timeout_s
                try:
                    got, answer = process.reader.read_frame(deadline)
                except WorkerFailure as failure:
                    raise self._explain(process, failure, starting=False) from failure
                if got != f"{nonce}.{index}":
                    raise WorkerFailure(
                        ErrorKind.PROTOCOL,
                        "the result channel carried something besides the answer",
                    )
                outcome = self._outcome(answer, process.reader.take_output())
                outcome.seconds = time.monotonic() - started
                done.append(outcome)
                if self._process is not process:
                    # The answer asked for a fresh worker (memory, output cap): the rest
                    # of the batch goes to the next one.
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
            # It died while idle: bwrap's --die-with-parent ends a worker with the
            # thread that started it (a copy thread of an earlier delivery); not this
            # call's failure.
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
