"""The warm runner process: import everything once, then fork a child per command.

Run as `python -m storeflow.cli.warm.zygote` (`storeflow warm start` does that). The parent
never starts a thread, opens a database or talks to Prefect: it only imports, so a
fork is safe. Its loop is single-threaded (a selector over the listening socket, the
clients' connections and a signal wake-up pipe). Each child takes the client's
stdin/stdout/stderr, working directory, umask and environment, runs the command
exactly as `storeflow` would, reports its exit status, and exits like any process.

The child for the next command is forked ahead of it and made ready (ready.py: Prefect's
per-process work, done with the runner's settings) while nothing runs; it takes one
command, handed over with the client's connection and terminal, and no other. A command
that finds no ready child (another one took it, or its environment differs where the
prepared clients read it) gets a child forked on the spot, as before.
"""

import argparse
import atexit
import contextlib
import gc
import importlib
import os
import selectors
import signal
import socket
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

from storeflow.cli.warm import ready, wire

LISTEN_BACKLOG = 64
#: A client that connects and then has not sent its whole request after this long is
#: dropped; meanwhile the loop serves every other connection (no head-of-line blocking).
REQUEST_TIMEOUT = 5.0
#: A ready child is forked once no command runs, or none started for this long: its
#: preparation (~0.1 s of CPU) stays off a command's cores.
READY_DELAY = 1.0
#: An unused ready child is replaced after this long (connections it holds may be gone).
READY_MAX_AGE = 600.0
#: After a ready child died unused, the next one waits this long (no fork loop).
READY_RETRY = 10.0


def log(message: str) -> None:
    stamp = time.strftime("%Y-%m-%d %H:%M:%S")
    print(f"{stamp} storeflow-warm[{os.getpid()}] {message}", file=sys.stderr, flush=True)


def command_words(argv: list[str]) -> str:
    """The verb, for the log: never option values, which can hold secrets."""
    words = [a for a in argv if not a.startswith("-")][:2]
    return " ".join(words) or "(no command)"


#: Modules Prefect, SQLAlchemy and friends import lazily during a process's first flow
#: run (found by diffing sys.modules around one): about a second, paid once here
#: instead of in every child. A name missing from a later release is skipped.
FIRST_RUN_MODULES = (
    "prefect.engine",
    "prefect.flow_engine",
    "prefect.task_engine",
    "prefect.utilities.visualization",
    "prefect._internal.attempt_control",
    "prefect._internal.control_listener",
    "prefect._internal.metrics",
    "prefect.concurrency.context",
    "prefect.concurrency.v1.context",
    "fastapi.encoders",
    "anyio._backends._asyncio",
    "anyio.streams.memory",
    "anyio.streams.stapled",
    "anyio.streams.tls",
    "opentelemetry._logs",
    "opentelemetry.metrics",
    "sqlite3",
    "sqlalchemy.dialects.sqlite",
    "sqlalchemy.dialects.postgresql",
    "pydantic.color",
    "http.cookies",
    "encodings.idna",
    # `transfer run FILE.json` renders the file as an OTF template (jinja2): 50 ms.
    "storeflow.tasks.otf.config",
    "typer._adapters",
    "typer._click.decorators",
)


def warm_up() -> list[str]:
    """Import what any command can need; read files, open nothing. Returns the
    modules that could not be imported."""
    from storeflow.cli.app import preload
    from storeflow.cli.runner import warm_up as warm_up_runs
    from storeflow.tasks.transfer.registry import handler_class, protocol_names

    # The click command Typer builds from the verbs, and what the CLI itself imports
    # only when a verb runs: every kind's flows, the lazily mounted groups.
    preload()
    warm_up_runs()  # settings, TLS context, Prefect's API schemas, the database's
    for name in protocol_names():  # every registered one, with its client library
        handler_class(name).preload()
    missing = []
    for module in FIRST_RUN_MODULES:
        try:
            importlib.import_module(module)
        except ImportError:
            missing.append(module)
    ready.rehearse_transfer()
    return missing


def assert_forkable() -> None:
    threads = [t.name for t in threading.enumerate() if t is not threading.main_thread()]
    if threads:
        raise RuntimeError(
            f"the warm-up started threads ({', '.join(threads)}); forking would be unsafe"
        )


# -- the child ------------------------------------------------------------------------------


class BecomeChild(BaseException):
    """Raised in a freshly forked child to leave the server's loop and its stack."""

    def __init__(self, conn: socket.socket, fds: list[int], request: dict[str, Any]) -> None:
        super().__init__("forked")
        self.conn, self.fds, self.request = conn, fds, request


def exit_status(code: object) -> int:
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1


def run_command(argv: list[str]) -> int:
    from storeflow.cli.app import main

    try:
        main(argv)
    except SystemExit as exc:
        return exit_status(exc.code)
    except KeyboardInterrupt:
        return 128 + signal.SIGINT
    return 0


def default_signals() -> None:
    """A command handles signals as the plain CLI does (Ctrl-C: KeyboardInterrupt)."""
    signal.set_wakeup_fd(-1)
    for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT):
        signal.signal(sig, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)


def become_client(child: BecomeChild) -> None:
    """Take over the client's terminal, directory, umask and environment."""
    # Its own process group: the client relays Ctrl-C to the command and everything it
    # started, as a terminal would.
    os.setpgid(0, 0)
    for target, fd in enumerate(child.fds):
        os.dup2(fd, target)
    for fd in child.fds:
        if fd > 2:
            os.close(fd)
    request = child.request
    os.umask(int(request["umask"]))
    os.environ.clear()
    os.environ.update({str(k): str(v) for k, v in dict(request["env"]).items()})
    sys.argv = ["storeflow", *request["argv"]]
    os.chdir(str(request["cwd"]))


class ClientWatch:
    """A client that dies mid-command interrupts it, like a terminal that goes away."""

    def __init__(self) -> None:
        self.conn: socket.socket | None = None
        self.done = threading.Event()
        self.started = False
        self._given = threading.Event()

    def start(self) -> None:
        """Start the thread; it waits for `watch` (a ready child starts it ahead: a
        thread's start waits for the new thread to run, milliseconds when the process's
        other threads hold the interpreter)."""
        threading.Thread(target=self._wait, name="storeflow-warm-client", daemon=True).start()
        self.started = True

    def watch(self, conn: socket.socket) -> None:
        self.conn = conn
        self._given.set()

    def _wait(self) -> None:
        self._given.wait()
        conn = self.conn
        assert conn is not None
        # The runner shares this socket and sets it non-blocking for its selector, so
        # wait in timeout mode (poll, then read), which works either way.
        conn.settimeout(60)
        while True:
            try:
                if not conn.recv(4096):
                    break
            except TimeoutError:
                continue
            except OSError:
                break
        if not self.done.is_set():
            os.killpg(0, signal.SIGINT)


def run_child(child: BecomeChild, watch: ClientWatch | None = None) -> int:
    """The forked child's whole life after the loop: returns the exit status."""
    code = 1
    started = time.monotonic()
    watch = watch or ClientWatch()
    runner_log = os.dup(2)
    try:
        become_client(child)  # first: the watch interrupts this process's new group
        if not watch.started:
            watch.start()
        watch.watch(child.conn)
        code = run_command(list(child.request["argv"]))
    except KeyboardInterrupt:
        code = 128 + signal.SIGINT
    except BaseException:
        traceback.print_exc()
    finally:
        watch.done.set()
        release_client(runner_log)
        with contextlib.suppress(OSError):
            wire.send(child.conn, {"exit": code})
        words = command_words(list(child.request["argv"]))
        log(f"{words}: answered {code} after {time.monotonic() - started:.3f}s")
    return code


class BecomeReady(BaseException):
    """Raised in a child forked ahead of any command, to leave the server's loop."""

    def __init__(self, channel: socket.socket, prepare: Callable[[], None]) -> None:
        super().__init__("forked ahead")
        self.channel = channel
        self.prepare = prepare


def run_ready(channel: socket.socket, prepare: Callable[[], None]) -> int:
    """A ready child's whole life: prepare, say so, wait for one command (its request,
    with the client's connection and terminal) and run it; when the runner closes the
    channel instead, exit."""
    started = time.monotonic()
    watch = ClientWatch()
    watch.start()
    try:
        prepare()
    except Exception as exc:  # e.g. the server is down: the command will say so itself
        log(f"preparing failed ({type(exc).__name__}: {exc}); will serve as a fresh child")
    with contextlib.suppress(OSError):
        wire.send(channel, {"ready": round(time.monotonic() - started, 3)})
    try:
        message, fds = wire.Reader(channel).receive(with_fds=4)
    except (OSError, wire.WireError):
        message, fds = None, []
    finally:
        channel.close()
    if message is None or len(fds) != 4 or not isinstance(message.get("request"), dict):
        for fd in fds:
            os.close(fd)
        return 0
    conn = socket.socket(fileno=fds[0])
    return run_child(BecomeChild(conn, fds[1:], message["request"]), watch)


def release_client(runner_log: int) -> None:
    """Give the client its terminal back before the exit status goes: what the process
    does on its way out (Prefect draining logs and events to the server) must not print
    after the client's shell prompt, so it goes to the runner's log instead."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(runner_log, 1)
    os.dup2(runner_log, 2)
    os.close(devnull)
    os.close(runner_log)


def leave(code: int) -> NoReturn:
    """End the child as the interpreter would, without tearing the interpreter down:
    threading's exit hooks (Prefect's services drain their events and logs there) and
    the atexit functions (log handlers, temporary directories) run, the standard streams
    are flushed, then the process exits.  The teardown would free every object the
    child inherited from the runner, copying each page it touches: about a second of CPU
    after every command (0.9 s against 0.5 s for a whole 1 GiB transfer), on the cores
    the next command and the Prefect server need."""
    shutdown = getattr(threading, "_shutdown", None)  # what Py_FinalizeEx calls first
    if shutdown is not None:
        shutdown()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    os._exit(code)


# -- the server -----------------------------------------------------------------------------


@dataclass
class Running:
    conn: socket.socket
    words: str
    started: float = field(default_factory=time.monotonic)


@dataclass
class Ready:
    """A child forked ahead of the next command, waiting on its end of `channel`."""

    pid: int
    channel: socket.socket
    reader: wire.Reader
    forked: float = field(default_factory=time.monotonic)
    #: Seconds its preparation took, once it said it was ready.
    prepared: float | None = None


@dataclass
class Pending:
    """A connection whose request is still arriving."""

    conn: socket.socket
    reader: wire.Reader
    peer: int
    deadline: float = field(default_factory=lambda: time.monotonic() + REQUEST_TIMEOUT)


class Zygote:
    """The single-threaded loop: accept, fork, reap, relay exit statuses, go idle."""

    def __init__(
        self,
        socket_path: Path,
        pid_path: Path,
        idle_timeout: float,
        prepare: Callable[[], None] | None = None,
    ) -> None:
        """`prepare`: what a child forked ahead of the next command does to be ready for
        it (ready.prepare); None: a child is forked for each command when it comes."""
        self.socket_path = socket_path
        self.pid_path = pid_path
        self.idle_timeout = idle_timeout
        self.owner = os.getpid()
        self.settings = wire.settings_fingerprint(dict(os.environ), os.getcwd())
        self.pyproject = wire.pyproject_settings(os.getcwd())
        self.code = wire.code_fingerprint()
        self.children: dict[int, Running] = {}
        #: The environment ready children are prepared in (ready.fits compares with it).
        self.env = dict(os.environ)
        self.prepare = prepare
        self.ready: Ready | None = None
        self.ready_not_before = 0.0
        #: Ready children told to go (SIGTERM), still to be reaped.
        self.retired: set[int] = set()
        self.pending: dict[socket.socket, Pending] = {}
        #: (device, inode) of the socket this runner bound: only that one is ever removed.
        self.socket_id: tuple[int, int] | None = None
        self.accepting = True
        self.served = 0
        self.started = time.time()
        self.last_activity = time.monotonic()
        self.stop_reason = ""
        self.selector: selectors.BaseSelector = selectors.DefaultSelector()
        self.listener: socket.socket | None = None

    # -- lifecycle --

    def serve(self) -> None:
        wake_r, wake_w = socket.socketpair()
        for end in (wake_r, wake_w):
            end.setblocking(False)
        try:
            with self.selector, wake_r, wake_w, self._listen() as listener:
                self.listener = listener
                self._install_signals(wake_w)
                self.selector.register(listener, selectors.EVENT_READ, "accept")
                self.selector.register(wake_r, selectors.EVENT_READ, "signal")
                log(f"ready on {self.socket_path} (idle timeout {self.idle_timeout:g}s)")
                while self.accepting or self.children or self.retired:
                    for key, _ in self.selector.select(timeout=self._select_timeout()):
                        self._dispatch(key)
                    self._drop_late_requests()
                    if self._idle():
                        self.stop("idle")
                    self._keep_one_ready()
        finally:
            if os.getpid() == self.owner:
                for pending in list(self.pending.values()):
                    self._forget(pending)
                self._remove_files()
                log(f"stopped ({self.stop_reason or 'error'}), served {self.served} commands")

    def stop(self, reason: str) -> None:
        """Take no new commands (the socket goes at once); exit when the running ones end."""
        if not self.accepting:
            return
        self.accepting = False
        self.stop_reason = reason
        if self.listener is not None:
            self.selector.unregister(self.listener)
        self._unlink_socket()
        self._retire_ready()
        log(f"stopping ({reason}); {len(self.children)} commands still running")

    def _listen(self) -> socket.socket:
        wire.ensure_private_dir(str(self.socket_path.parent), create=True)
        if self.socket_path.exists():
            probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            probe.settimeout(2)
            try:
                probe.connect(str(self.socket_path))
            except OSError:
                self.socket_path.unlink()  # left behind by a runner that died
            else:
                raise RuntimeError(f"a warm runner already listens on {self.socket_path}")
            finally:
                probe.close()
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o177)  # the socket is born 0600
        try:
            listener.bind(str(self.socket_path))
        finally:
            os.umask(old)
        info = os.lstat(self.socket_path)
        self.socket_id = (info.st_dev, info.st_ino)
        # The pid file before listen(): a client checks the listener's PID against it,
        # and nobody can connect before listen().
        scratch = self.pid_path.with_suffix(".tmp")
        scratch.write_text(f"{os.getpid()}\n")
        scratch.replace(self.pid_path)
        listener.listen(LISTEN_BACKLOG)
        listener.setblocking(False)
        return listener

    def _remove_files(self) -> None:
        try:
            if self.pid_path.read_text().strip() == str(self.owner):
                self.pid_path.unlink()
        except OSError:
            pass
        if self.accepting:  # after stop() the path may already be a newer runner's
            self._unlink_socket()

    def _unlink_socket(self) -> None:
        """Remove the socket this runner bound, and only that: once a runner's socket
        was removed (by hand, or by `warm start` finding it dead), the path may be a
        newer runner's."""
        try:
            info = os.lstat(self.socket_path)
        except FileNotFoundError:
            return
        if (info.st_dev, info.st_ino) != self.socket_id:
            log(f"left {self.socket_path} alone: it is another runner's socket now")
            return
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()

    def _install_signals(self, wake_w: socket.socket) -> None:
        signal.set_wakeup_fd(wake_w.fileno(), warn_on_full_buffer=False)
        self.pending_signal = ""

        def on_stop(signum: int, _frame: object) -> None:
            self.pending_signal = signal.Signals(signum).name

        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, on_stop)
        # A handler, even one that does nothing, makes SIGCHLD wake the loop.
        signal.signal(signal.SIGCHLD, lambda _s, _f: None)

    def _select_timeout(self) -> float:
        now = time.monotonic()
        deadlines = [p.deadline - now for p in self.pending.values()]
        if self.accepting and not self.children and self.idle_timeout > 0:
            deadlines.append(self.idle_timeout - (now - self.last_activity))
        if self.accepting and self.prepare is not None:
            deadlines.append(self._ready_due() - now)
        return max(0.05, min([60.0, *deadlines]))

    def _idle(self) -> bool:
        return (
            self.accepting
            and self.idle_timeout > 0
            and not self.children
            and not self.pending
            and time.monotonic() - self.last_activity >= self.idle_timeout
        )

    # -- events --

    def _dispatch(self, key: selectors.SelectorKey) -> None:
        if key.data == "signal":
            _drain(key.fileobj)
            if self.pending_signal:
                self.stop(f"signal {self.pending_signal}")
            self._reap()
        elif key.data == "accept":
            self._accept()
        elif isinstance(key.data, Pending):
            self._read_request(key.data)
        elif isinstance(key.data, Ready):
            self._read_ready(key.data)
        else:  # a client's connection: readable only when the client went away
            conn = key.fileobj
            assert isinstance(conn, socket.socket)
            try:
                gone = not conn.recv(4096)
            except OSError:
                gone = True
            if gone:
                self.selector.unregister(conn)

    def _accept(self) -> None:
        """Take every waiting connection; their requests are read as they arrive."""
        assert self.listener is not None
        while True:
            try:
                conn, _ = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # e.g. out of descriptors: the client retries or runs here
                log(f"accept failed: {exc}")
                return
            self.last_activity = time.monotonic()
            pid, uid = wire.peer_credentials(conn)
            if uid != os.getuid():
                log(f"refused a connection from pid {pid}: uid {uid}, not {os.getuid()}")
                conn.close()
                continue
            conn.settimeout(REQUEST_TIMEOUT)  # for the replies; reads wait on the selector
            pending = Pending(conn, wire.Reader(conn), pid)
            self.pending[conn] = pending
            self.selector.register(conn, selectors.EVENT_READ, pending)

    def _read_request(self, pending: Pending) -> None:
        conn = pending.conn
        try:
            pending.reader.pull(with_fds=3)
            request = pending.reader.message()
        except (OSError, wire.WireError) as exc:
            log(f"dropped a request from pid {pending.peer}: {exc}")
            self._forget(pending)
            return
        if request is None:
            if pending.reader.closed:
                self._forget(pending)
            return
        self.selector.unregister(conn)
        del self.pending[conn]
        fds = pending.reader.take_fds()
        try:
            self._handle(conn, fds, request)
        finally:
            for fd in fds:
                os.close(fd)

    def _forget(self, pending: Pending) -> None:
        with contextlib.suppress(KeyError, ValueError):
            self.selector.unregister(pending.conn)
        self.pending.pop(pending.conn, None)
        pending.reader.close_fds()
        pending.conn.close()

    def _drop_late_requests(self) -> None:
        now = time.monotonic()
        for pending in [p for p in self.pending.values() if p.deadline <= now]:
            log(f"dropped a connection from pid {pending.peer}: no request in {REQUEST_TIMEOUT:g}s")
            self._forget(pending)

    def _handle(self, conn: socket.socket, fds: list[int], request: dict[str, Any]) -> None:
        op = request.get("op")
        if op == "status":
            _reply(conn, self.status(), close=True)
        elif op == "stop":
            _reply(conn, {"ok": True, "pid": self.owner, "running": len(self.children)}, True)
            self.stop("asked to stop")
        elif op == "run":
            refusal = self._refusal(request, fds)
            if refusal:
                _reply(conn, {"ok": False, "reason": refusal}, close=True)
            elif not self._hand_to_ready(conn, fds, request):
                self._fork(conn, fds, request)
        else:
            _reply(conn, {"ok": False, "reason": f"unknown op {op!r}"}, close=True)

    def _refusal(self, request: dict[str, Any], fds: list[int]) -> str:
        if not self.accepting:  # a request that was still arriving when it stopped
            return f"the warm runner is stopping ({self.stop_reason})"
        if request.get("protocol") != wire.PROTOCOL:
            return f"protocol {request.get('protocol')!r} (this runner speaks {wire.PROTOCOL})"
        if len(fds) != 3:
            return f"expected stdin, stdout and stderr, got {len(fds)} descriptors"
        argv, env = request.get("argv"), request.get("env")
        if not (isinstance(argv, list) and all(isinstance(a, str) for a in argv)):
            return "argv must be a list of strings"
        if not (isinstance(env, dict) and all(isinstance(v, str) for v in env.values())):
            return "env must map names to strings"
        if not isinstance(request.get("cwd"), str) or not isinstance(request.get("umask"), int):
            return "a run request needs cwd (a string) and umask (an integer)"
        if request.get("code") != self.code:
            self.stop("stale: storeflow's code or packages changed since it started")
            return "the warm runner runs an older copy of storeflow's code; it is stopping"
        if request.get("settings") != self.settings or (
            wire.pyproject_settings(str(request["cwd"])) != self.pyproject
        ):
            return (
                "the warm runner was started with other Prefect/storeflow settings "
                "(environment, profile or settings files)"
            )
        return ""

    def _fork(self, conn: socket.socket, fds: list[int], request: dict[str, Any]) -> None:
        for stream in (sys.stdout, sys.stderr):
            stream.flush()  # or the child would print our buffered lines again
        pid = os.fork()
        if pid == 0:
            default_signals()
            self._close_inherited()
            kept = list(fds)
            fds.clear()  # the caller's finally must not close the child's copies
            raise BecomeChild(conn, kept, request)
        self._started(pid, conn, request, "forked")

    def _started(self, pid: int, conn: socket.socket, request: dict[str, Any], how: str) -> None:
        self.served += 1
        words = command_words(request["argv"])
        self.children[pid] = Running(conn, words)
        _reply(conn, {"ok": True, "pid": pid}, close=False)
        self.selector.register(conn, selectors.EVENT_READ, pid)
        log(f"pid {pid}: {words} ({how})")

    def _close_inherited(self) -> None:
        """In a new child: what belongs to other clients and children is not its own."""
        for running in self.children.values():
            running.conn.close()
        for pending in self.pending.values():
            pending.reader.close_fds()
            pending.conn.close()
        if self.ready is not None:  # or the ready child would never see the runner go
            self.ready.channel.close()

    # -- the ready child --

    def _ready_due(self) -> float:
        """When the next ready child should be forked (or the unused one replaced)."""
        if self.ready is not None:
            return self.ready.forked + READY_MAX_AGE
        youngest = max((r.started for r in self.children.values()), default=None)
        due = self.ready_not_before
        return due if youngest is None else max(due, youngest + READY_DELAY)

    def _keep_one_ready(self) -> None:
        if self.prepare is None or not self.accepting or time.monotonic() < self._ready_due():
            return
        if self.ready is not None:
            self._retire_ready()  # too old: replaced
        self._fork_ready()

    def _fork_ready(self) -> None:
        assert self.prepare is not None
        ours, theirs = socket.socketpair()
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        pid = os.fork()
        if pid == 0:
            ours.close()
            default_signals()
            self._close_inherited()
            raise BecomeReady(theirs, self.prepare)
        theirs.close()
        ours.setblocking(False)
        self.ready = Ready(pid, ours, wire.Reader(ours))
        self.selector.register(ours, selectors.EVENT_READ, self.ready)

    def _read_ready(self, child: Ready) -> None:
        """The ready child said it is ready, or its channel closed (it died: reaped)."""
        try:
            child.reader.pull()
            message = child.reader.message()
        except (OSError, wire.WireError):
            message = None
        if message is not None:
            child.prepared = float(message.get("ready", 0.0))
        elif child.reader.closed:
            self.selector.unregister(child.channel)

    def _hand_to_ready(self, conn: socket.socket, fds: list[int], request: dict[str, Any]) -> bool:
        """Give the command to the ready child (False: there is none, it is still
        preparing, or it was prepared for another environment)."""
        child = self.ready
        if child is None or child.prepared is None:  # a fork now is quicker than waiting
            return False
        if not ready.fits(self.env, dict(request["env"])):
            return False
        self.ready = None
        with contextlib.suppress(KeyError, ValueError):
            self.selector.unregister(child.channel)
        try:
            child.channel.settimeout(REQUEST_TIMEOUT)
            wire.send(child.channel, {"request": request}, fds=[conn.fileno(), *fds])
        except OSError as exc:
            log(f"pid {child.pid}: the ready child did not take the command ({exc})")
            self._retire(child)
            return False
        child.channel.close()
        since = time.monotonic() - child.forked
        self._started(child.pid, conn, request, f"ready for {since:.1f}s")
        return True

    def _retire_ready(self) -> None:
        if self.ready is not None:
            child, self.ready = self.ready, None
            with contextlib.suppress(KeyError, ValueError):
                self.selector.unregister(child.channel)
            self._retire(child)

    def _retire(self, child: Ready) -> None:
        child.channel.close()
        with contextlib.suppress(ProcessLookupError):
            os.kill(child.pid, signal.SIGTERM)  # it holds nothing a command needs
        self.retired.add(child.pid)

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            running = self.children.pop(pid, None)
            if running is None:
                self._reaped_unused(pid, status)
                continue
            code = os.waitstatus_to_exitcode(status)
            code = 128 - code if code < 0 else code  # killed by a signal: shell convention
            with contextlib.suppress(KeyError, ValueError):  # the client had gone already
                self.selector.unregister(running.conn)
            _reply(running.conn, {"exit": code}, close=True)
            self.last_activity = time.monotonic()
            seconds = time.monotonic() - running.started
            log(f"pid {pid}: {running.words} exited {code} after {seconds:.2f}s")

    def _reaped_unused(self, pid: int, status: int) -> None:
        if pid in self.retired:
            self.retired.discard(pid)
            return
        if self.ready is not None and self.ready.pid == pid:  # died before any command
            child, self.ready = self.ready, None
            with contextlib.suppress(KeyError, ValueError):
                self.selector.unregister(child.channel)
            child.channel.close()
            self.ready_not_before = time.monotonic() + READY_RETRY
            code = os.waitstatus_to_exitcode(status)
            log(f"pid {pid}: the ready child exited {code} unused; next in {READY_RETRY:g}s")

    def status(self) -> dict[str, Any]:
        return {
            "ok": True,
            "pid": self.owner,
            "started": self.started,
            "served": self.served,
            "running": len(self.children),
            "idle_timeout": self.idle_timeout,
            "socket": str(self.socket_path),
            "settings": self.settings,
            "pyproject": self.pyproject,
            "code": self.code,
            "ready": None
            if self.ready is None
            else {"pid": self.ready.pid, "prepared": self.ready.prepared},
        }


def _reply(conn: socket.socket, message: dict[str, Any], close: bool) -> None:
    # A client that went away: its command (if any) still runs to its end.
    with contextlib.suppress(OSError):
        wire.send(conn, message)
    if close:
        conn.close()


def _drain(wake: Any) -> None:
    try:
        while wake.recv(4096):
            pass
    except BlockingIOError:
        pass


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m storeflow.cli.warm.zygote", description=__doc__
    )
    parser.add_argument(
        "--idle-timeout", type=float, default=3600, help="exit after this long idle; 0: never"
    )
    parser.add_argument(
        "--no-ready",
        action="store_true",
        help="fork each command's child when it comes, not ahead of it (see ready.py)",
    )
    args = parser.parse_args(argv)
    env = dict(os.environ)
    socket_path, pid_path = wire.runner_paths(env)
    started = time.monotonic()
    missing = warm_up()
    assert_forkable()
    # Everything imported so far lives as long as the runner: move it out of the
    # collector's sight, or a child's first collection would walk (and so copy-on-write
    # fault) the whole inherited heap.
    gc.collect()
    gc.freeze()
    prepare = None if args.no_ready else ready.prepare
    zygote = Zygote(Path(socket_path), Path(pid_path), args.idle_timeout, prepare)
    log(f"warmed up in {time.monotonic() - started:.2f}s")
    if missing:
        log(f"not pre-imported (not installed): {', '.join(missing)}")
    try:
        zygote.serve()
        return
    except (BecomeChild, BecomeReady) as forked:
        # Out of the except block before running anything: the command must not see
        # this as the exception "being handled" (its tracebacks would show it).
        child = forked.with_traceback(None)
    if isinstance(child, BecomeReady):
        leave(run_ready(child.channel, child.prepare))
    leave(run_child(child))


if __name__ == "__main__":
    main()
