"""Reading a worker's answers without trusting anything the callback writes.

An answer is one line `\\x1e TOKEN SP NONCE SP JSON \\n` where TOKEN is a
per-worker secret. For Python workers the answers arrive on a pipe of their
own and anything else on it is a protocol violation; for deno the answers
share stdout with console.log, so other bytes count as captured output.
Output is capped, answers are capped, and every read has a deadline.
"""

import json
import os
import selectors
import time
from typing import Any

from storeflow.sandbox.failures import WorkerFailure
from storeflow.sandbox.models import ErrorKind

MARK = b"\x1e"
_CHUNK = 65536


class FrameReader:
    def __init__(
        self,
        *,
        channel_fd: int,
        output_fds: list[int],
        token: str,
        channel_is_output: bool,
        output_limit: int,
        frame_limit: int,
    ) -> None:
        self._channel_fd = channel_fd
        self._prefix = MARK + token.encode("ascii") + b" "
        self._channel_is_output = channel_is_output
        self._output_limit = output_limit
        self._frame_limit = frame_limit
        self._channel = bytearray()
        self._output = bytearray()
        self._selector = selectors.DefaultSelector()
        for fd in {channel_fd, *output_fds}:
            os.set_blocking(fd, False)
            self._selector.register(fd, selectors.EVENT_READ)
        self.closed_fds: set[int] = set()

    def close(self) -> None:
        self._selector.close()

    def take_output(self) -> str:
        text = self._output.decode("utf-8", "replace")
        self._output.clear()
        return text

    def stderr_tail(self) -> str:
        return self._output[-2000:].decode("utf-8", "replace")

    def _add_output(self, data: bytes | bytearray) -> None:
        self._output += data
        if len(self._output) > self._output_limit:
            raise WorkerFailure(
                ErrorKind.OUTPUT_LIMIT,
                f"callback wrote more than {self._output_limit} bytes of output",
            )

    def _extract_frame(self) -> tuple[str, dict[str, Any]] | None:
        buffer = self._channel
        start = buffer.find(self._prefix)
        if start < 0:
            keep = len(self._prefix) - 1
            if self._channel_is_output:
                # Everything but a possible partial marker at the end is output.
                if len(buffer) > keep:
                    self._add_output(buffer[: len(buffer) - keep])
                    del buffer[: len(buffer) - keep]
            elif buffer and not self._prefix.startswith(bytes(buffer[: len(self._prefix)])):
                raise WorkerFailure(ErrorKind.PROTOCOL, "unexpected bytes on the result channel")
            return None
        if start > 0:
            if not self._channel_is_output:
                raise WorkerFailure(ErrorKind.PROTOCOL, "unexpected bytes on the result channel")
            self._add_output(buffer[:start])
            del buffer[:start]
        end = buffer.find(b"\n")
        if end < 0:
            if len(buffer) > self._frame_limit + 256:
                raise WorkerFailure(ErrorKind.OUTPUT_LIMIT, "answer larger than the result cap")
            return None
        line = bytes(buffer[len(self._prefix) : end])
        del buffer[: end + 1]
        nonce, _, body = line.partition(b" ")
        try:
            message = json.loads(body)
        except ValueError as exc:
            raise WorkerFailure(ErrorKind.PROTOCOL, f"malformed answer: {exc}") from exc
        if not isinstance(message, dict):
            raise WorkerFailure(ErrorKind.PROTOCOL, "answer is not a JSON object")
        return nonce.decode("ascii", "replace"), message

    def read_frame(self, deadline: float) -> tuple[str, dict[str, Any]]:
        """The next answer; WorkerFailure on timeout, exit, or a broken rule."""
        while True:
            frame = self._extract_frame()
            if frame is not None:
                return frame
            if self._channel_fd in self.closed_fds:
                raise WorkerFailure(ErrorKind.CRASHED, "the worker exited")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise WorkerFailure(ErrorKind.TIMEOUT, "no answer before the deadline")
            for key, _ in self._selector.select(remaining):
                fd = int(key.fd)
                data = os.read(fd, _CHUNK)
                if not data:
                    self._selector.unregister(fd)
                    self.closed_fds.add(fd)
                elif fd == self._channel_fd:
                    self._channel += data
                else:
                    self._add_output(data)

    def leftover_on_channel(self) -> bool:
        """True when a Python worker wrote more than its one answer."""
        return not self._channel_is_output and bool(self._channel)
