"""Start a worker process, talk to it line by line, and kill it by PID."""

import contextlib
import fcntl
import json
import os
import selectors
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

from storeflow.sandbox.channel import FrameReader
from storeflow.sandbox.failures import WorkerFailure
from storeflow.sandbox.models import ErrorKind

T = TypeVar("T")


@dataclass(frozen=True)
class LaunchSpec:
    """How to start one worker and speak to it.

    `separate_channel`: answers arrive on a pipe of their own (any other byte
    on it is a protocol violation) rather than sharing stdout with the
    callback's output. `config`: what the worker's first message carries
    besides the channel fields (for a Python worker, its jail).
    """

    argv: list[str]
    env: dict[str, str]
    separate_channel: bool
    cwd: str = "/"
    # A host directory used as scratch in weak isolation; removed with the worker.
    cleanup_dir: str | None = None
    config: dict[str, object] = field(default_factory=dict)


#: Bytes a request pipe holds: a batch of a few hundred files' requests in one write.
PIPE_BYTES = 1 << 20


def _widen(fd: int) -> None:
    """Let the pipe ``fd`` hold a whole batch: the worker reads a batch only once all of
    it has arrived, so a batch larger than the pipe costs a wait and a wake-up per
    pipeful.  Best effort: past the system's limit for pipes the default stays."""
    with contextlib.suppress(OSError):
        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, PIPE_BYTES)


class _Starter:
    """The one thread that starts every worker process of this process."""

    lock = threading.Lock()
    pool: ThreadPoolExecutor | None = None

    @classmethod
    def forget(cls) -> None:
        # A forked child (the warm runner's) has no copy of the thread: it starts its own.
        cls.lock = threading.Lock()
        cls.pool = None


os.register_at_fork(after_in_child=_Starter.forget)


def started_by_one_thread(start: Callable[[], T]) -> T:
    """Run ``start`` (which starts a worker) in a thread that lives as long as the process.

    A jail dies with the thread that started it (bwrap's --die-with-parent, like any
    PR_SET_PDEATHSIG, watches the starting thread, not the process): a worker started
    by a short-lived thread (a copy thread of one delivery) would die with it, and the
    next batch would pay a fresh start."""
    with _Starter.lock:
        if _Starter.pool is None:
            _Starter.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sf-sandbox-start")
        pool = _Starter.pool
    return pool.submit(start).result()


class WorkerProcess:
    def __init__(
        self, spec: LaunchSpec, *, token: str, output_limit: int, frame_limit: int
    ) -> None:
        self._cleanup_dir = spec.cleanup_dir
        channel_read: int | None = None
        pass_fds: tuple[int, ...] = ()
        self.channel_fd_in_child = -1
        if spec.separate_channel:
            channel_read, channel_write = os.pipe()
            pass_fds = (channel_write,)
            self.channel_fd_in_child = channel_write
        try:
            self.popen = subprocess.Popen(
                spec.argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=spec.env,
                cwd=spec.cwd,
                pass_fds=pass_fds,
                close_fds=True,
                start_new_session=True,
            )
        finally:
            for fd in pass_fds:
                os.close(fd)
        assert self.popen.stdin and self.popen.stdout and self.popen.stderr
        self.pid = self.popen.pid
        self._stdin_fd = self.popen.stdin.fileno()
        os.set_blocking(self._stdin_fd, False)
        _widen(self._stdin_fd)
        stdout_fd = self.popen.stdout.fileno()
        stderr_fd = self.popen.stderr.fileno()
        self._channel_read = channel_read
        self.reader = FrameReader(
            channel_fd=channel_read if channel_read is not None else stdout_fd,
            output_fds=[stdout_fd, stderr_fd] if channel_read is not None else [stderr_fd],
            token=token,
            channel_is_output=channel_read is None,
            output_limit=output_limit,
            frame_limit=frame_limit,
        )

    def send(self, message: dict[str, Any], deadline: float) -> None:
        """Write one request line; a worker that stops reading times out."""
        self.send_line(json.dumps(message, ensure_ascii=True).encode("ascii") + b"\n", deadline)

    def send_line(self, line: bytes, deadline: float) -> None:
        """:meth:`send` of a request already encoded: one JSON line (for a marshalled
        batch, the line and the bytes it announces)."""
        data = memoryview(line)
        try:
            # Requests are small: one write usually suffices, no selector needed.
            data = data[os.write(self._stdin_fd, data) :]
        except BlockingIOError:
            pass
        except (BrokenPipeError, ConnectionResetError) as exc:
            raise WorkerFailure(ErrorKind.CRASHED, "the worker exited") from exc
        if not data:
            return
        with selectors.DefaultSelector() as selector:
            selector.register(self._stdin_fd, selectors.EVENT_WRITE)
            while data:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise WorkerFailure(ErrorKind.TIMEOUT, "the worker stopped reading requests")
                if not selector.select(remaining):
                    continue
                try:
                    data = data[os.write(self._stdin_fd, data) :]
                except BlockingIOError:
                    continue
                except (BrokenPipeError, ConnectionResetError) as exc:
                    raise WorkerFailure(ErrorKind.CRASHED, "the worker exited") from exc

    def exit_description(self) -> str:
        try:
            code = self.popen.wait(timeout=1.0)
        except subprocess.TimeoutExpired:
            return "still running"
        if code < 0:
            return f"killed by signal {signal.Signals(-code).name}"
        return f"exit status {code}"

    def kill(self) -> None:
        """SIGKILL the process we started (its jail dies with it), then reap it."""
        if self.popen.poll() is None:
            # The group is the session we created with start_new_session.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGKILL)
        try:
            self.popen.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.kill(self.pid, signal.SIGKILL)
            self.popen.wait(timeout=10)
        self.reader.close()
        for stream in (self.popen.stdin, self.popen.stdout, self.popen.stderr):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()
        if self._channel_read is not None:
            os.close(self._channel_read)
            self._channel_read = None
        if self._cleanup_dir is not None:
            shutil.rmtree(self._cleanup_dir, ignore_errors=True)
            self._cleanup_dir = None
