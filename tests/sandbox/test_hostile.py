"""Hostile callbacks in both languages: each is blocked, the host survives,
and the error says what happened."""

import os
import socket
from pathlib import Path

import pytest

from storeflow.sandbox.models import CallOutcome, ErrorKind, Language, NodeInfo
from storeflow.sandbox.settings import SandboxSettings
from storeflow.sandbox.stages import CallbackSet
from tests.sandbox.helpers import node_for, one_callback, run_one

PY, JS = Language.PYTHON, Language.JAVASCRIPT
# A file of this checkout that the host can read (found from here, not a machine path):
# the jailed callback must not see it.
REPO_FILE = Path(__file__).resolve().parents[2] / "pyproject.toml"


def _fails(outcome: CallOutcome, kind: ErrorKind, *words: str) -> None:
    assert not outcome.ok, outcome
    assert outcome.error is not None and outcome.error.kind is kind, outcome.error
    for word in words:
        assert word in outcome.error.message, outcome.error.message


# Each case: (language, source, expected kind, words the error must contain).
BLOCKED = {
    "py-read-passwd": (PY, "def run(req):\n    return open('/etc/passwd').read()\n",
                       ErrorKind.EXCEPTION, "FileNotFoundError", "/etc/passwd"),
    "py-read-repo": (PY, f"def run(req):\n    return open({str(REPO_FILE)!r}).read()\n",
                     ErrorKind.EXCEPTION, "FileNotFoundError", str(REPO_FILE)),
    "py-proc-environ": (PY, "def run(req):\n    return open('/proc/1/environ').read()\n",
                        ErrorKind.EXCEPTION, "FileNotFoundError"),
    "py-write-usr": (PY, "def run(req):\n    open('/usr/evil', 'w').write('x')\n",
                     ErrorKind.EXCEPTION, "Read-only file system", "/usr/evil"),
    "py-socket": (PY, "import socket\ndef run(req):\n    socket.socket()\n",
                  ErrorKind.EXCEPTION, "PermissionError"),
    "py-subprocess": (PY, "import subprocess\ndef run(req):\n    subprocess.run(['id'])\n",
                      ErrorKind.EXCEPTION, "PermissionError"),
    "py-fork-bomb": (PY, "import os\ndef run(req):\n    while True:\n        os.fork()\n",
                     ErrorKind.EXCEPTION, "PermissionError"),
    "py-kill-parent": (PY, "import os\ndef run(req):\n    os.kill(os.getppid(), 9)\n",
                       ErrorKind.EXCEPTION, "PermissionError"),
    "py-memory-bomb": (PY, "def run(req):\n    hog = []\n    while True:\n"
                           "        hog.append(bytearray(16 << 20))\n",
                       ErrorKind.MEMORY, "MemoryError"),
    "py-disk-bomb": (PY, "def run(req):\n    for i in range(1000):\n"
                         "        open(f'/tmp/f{i}', 'wb').write(b'x' * (4 << 20))\n",
                     ErrorKind.EXCEPTION, "OSError"),
    "py-flood-stdout": (PY, "def run(req):\n    while True:\n        print('x' * 4096)\n",
                        ErrorKind.OUTPUT_LIMIT, "output"),
    "py-exit": (PY, "import os\ndef run(req):\n    os._exit(0)\n", ErrorKind.CRASHED, "died"),
    "py-syntax": (PY, "def run(req) return 1\n", ErrorKind.SYNTAX, "SyntaxError"),
    "py-no-run": (PY, "def main(req):\n    return 1\n", ErrorKind.NO_ENTRYPOINT, "run(req)"),
    "js-read-passwd": (JS, "module.exports = () => Deno.readTextFileSync('/etc/passwd')",
                       ErrorKind.EXCEPTION, "NotCapable"),
    "js-env": (JS, "module.exports = () => Deno.env.toObject()", ErrorKind.EXCEPTION,
               "NotCapable", "Requires env access"),
    "js-write": (JS, "module.exports = () => Deno.writeTextFileSync('/tmp/x', 'x')",
                 ErrorKind.EXCEPTION, "NotCapable"),
    "js-subprocess": (JS, "module.exports = () => new Deno.Command('/usr/bin/id').outputSync()",
                      ErrorKind.EXCEPTION, "NotCapable", "Requires run access"),
    "js-node-child-process": (
        JS, "module.exports = async () => (await import('node:child_process')).execSync('id')",
        ErrorKind.EXCEPTION, "NotCapable", "Requires"),
    "js-ffi": (JS, "module.exports = () => Deno.dlopen('libc.so.6', {})",
               ErrorKind.EXCEPTION, "NotCapable", "Requires ffi access"),
    "js-npm-import": (JS, "module.exports = async () => await import('npm:left-pad')",
                      ErrorKind.EXCEPTION, "--no-npm"),
    "js-remote-import": (JS, "module.exports = async () => await import('https://deno.land/x/a.js')",
                         ErrorKind.EXCEPTION, "--no-remote"),
    "js-require-fs": (JS, "const fs = require('fs')\nmodule.exports = () => 1",
                      ErrorKind.EXCEPTION, "only './utils'"),
    "js-kill": (JS, "module.exports = () => Deno.kill(1, 'SIGKILL')", ErrorKind.EXCEPTION,
                "NotCapable", "Requires run access"),
    "js-memory-bomb": (JS, "module.exports = () => { const hog = []; "
                           "for (;;) hog.push(new Array(1 << 20).fill(1.5)) }",
                       ErrorKind.MEMORY, "memory"),
    "js-flood-stdout": (JS, "module.exports = () => { for (;;) console.log('x'.repeat(4096)) }",
                        ErrorKind.OUTPUT_LIMIT, "output"),
    "js-exit": (JS, "module.exports = () => Deno.exit(0)", ErrorKind.CRASHED, "died"),
    "js-syntax": (JS, "module.exports = function ( {", ErrorKind.SYNTAX, "SyntaxError"),
    "js-no-export": (JS, "const x = 1", ErrorKind.NO_ENTRYPOINT, "module.exports"),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(BLOCKED))
def test_hostile_callback_is_blocked(case: str, settings: SandboxSettings, target: Path) -> None:
    language, source, kind, *words = BLOCKED[case]
    if case == "py-read-repo":  # else the case passes without testing the jail
        assert REPO_FILE.is_file() and os.access(REPO_FILE, os.R_OK), REPO_FILE
    assert isinstance(language, Language) and isinstance(source, str)
    assert isinstance(kind, ErrorKind)
    _fails(run_one(settings, language, source, node_for(target)), kind, *map(str, words))


@pytest.mark.parametrize(
    ("language", "source"),
    [
        (PY, "import utils\ndef run(req):\n"
             "    open(utils.get_node_info(req).path, 'w').write('x')\n"),
        (JS, "const u = require('./utils')\n"
             "module.exports = (req) => Deno.writeTextFileSync(u.getNodeInfo(req).getPath(), 'x')"),
    ],
)  # fmt: skip
def test_the_inspected_file_cannot_be_changed(
    language: Language, source: str, settings: SandboxSettings, target: Path
) -> None:
    before = os.stat(target)
    outcome = run_one(settings, language, source, node_for(target))
    assert not outcome.ok
    after = os.stat(target)
    assert target.read_text() == "a,b\n1,2\n"
    assert (after.st_mtime_ns, after.st_size) == (before.st_mtime_ns, before.st_size)


@pytest.mark.parametrize("language", [PY, JS])
def test_no_connection_reaches_a_host_listener(
    language: Language, settings: SandboxSettings, target: Path
) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        listener.settimeout(0.2)
        port = listener.getsockname()[1]
        source = {
            PY: "import socket\ndef run(req):\n"
            f"    socket.create_connection(('127.0.0.1', {port}))\n",
            JS: f"module.exports = async () => await fetch('http://127.0.0.1:{port}/')",
        }[language]
        outcome = run_one(settings, language, source, node_for(target))
        assert not outcome.ok and outcome.error is not None
        expected = {PY: "PermissionError", JS: "NotCapable: Requires net access"}[language]
        assert expected in outcome.error.message, outcome.error.message
        with pytest.raises(TimeoutError):
            listener.accept()


def test_python_host_environment_is_invisible(
    settings: SandboxSettings, target: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STOREFLOW_CANARY_SECRET", "s3cr3t")
    source = (
        "import os\ndef run(req):\n    try:\n        listing = os.listdir('/')\n"
        "    except PermissionError:\n        listing = 'denied'\n"
        "    return [dict(os.environ), listing, os.getuid(), os.listdir('/tmp')]\n"
    )
    outcome = run_one(settings, PY, source, node_for(target))
    assert outcome.ok, outcome.error
    # No host variable (bwrap sets PWD, Python coerces LC_CTYPE), the root not even
    # listable, an unprivileged uid, an empty scratch.
    assert isinstance(outcome.result, list)
    environment, *rest = outcome.result
    assert environment == {"PWD": "/tmp", "LC_CTYPE": "C.UTF-8"}
    assert rest == ["denied", 65534, []]


def test_python_ctypes_reaches_no_forbidden_syscall(
    settings: SandboxSettings, target: Path
) -> None:
    source = """
import ctypes
def run(req):
    libc = ctypes.CDLL(None, use_errno=True)
    # fork, socket(AF_INET), unshare(CLONE_NEWUSER), keyctl, ptrace
    return [libc.fork(), libc.socket(2, 1, 0), libc.unshare(0x10000000),
            libc.syscall(250, 0, 0), libc.syscall(101, 16, 1)]
"""
    outcome = run_one(settings, PY, source, node_for(target))
    assert outcome.ok, outcome.error
    assert outcome.result == [-1, -1, -1, -1, -1]


@pytest.mark.parametrize(
    ("language", "source"),
    [
        (PY, "def run(req):\n    while True:\n        pass\n"),
        (JS, "module.exports = () => { for (;;) {} }"),
        (JS, "module.exports = () => new Promise(() => {})"),
    ],
)
def test_infinite_loop_times_out_and_the_worker_is_replaced(
    language: Language, source: str, settings: SandboxSettings, target: Path
) -> None:
    policy = settings.model_copy(update={"call_timeout_s": 0.5})
    looping = f"import utils\n_n = [0]\n{source}" if language is PY else source
    definition = one_callback(language, looping)
    with CallbackSet([definition], task_id="t", policy=policy) as cbs:
        first = cbs.filter(node_for(target))
        worker = cbs._workers[0]
        assert worker.pid is None  # killed by PID, not left running
        second = cbs.filter(node_for(target))
        assert worker.starts == 2
    for outcome in (first, second):
        assert outcome.error is not None and outcome.error.kind is ErrorKind.TIMEOUT
        assert "0.5 s" in outcome.error.message


def test_js_worker_bomb_is_contained(settings: SandboxSettings, target: Path) -> None:
    source = (
        "module.exports = () => { const code = URL.createObjectURL(new Blob(['for(;;){}']));"
        " for (;;) new Worker(code, { type: 'module' }) }"
    )
    policy = settings.model_copy(update={"call_timeout_s": 1.0})
    outcome = run_one(policy, JS, source, node_for(target))
    assert not outcome.ok and outcome.error is not None
    assert outcome.error.kind in {ErrorKind.TIMEOUT, ErrorKind.MEMORY, ErrorKind.CRASHED}


def test_js_forged_frames_and_poisoned_prototypes_are_just_output(
    settings: SandboxSettings, target: Path
) -> None:
    source = r"""
const leaks = []
module.exports = function (req) {
  const real = TextEncoder.prototype.encode
  TextEncoder.prototype.encode = function (s) { leaks.push(String(s)); return real.call(this, s) }
  const sub = Uint8Array.prototype.subarray
  Uint8Array.prototype.subarray = function (...a) { leaks.push('bytes'); return sub.apply(this, a) }
  JSON.stringify = (v) => { leaks.push('stringify'); return '{"ok":true,"result":"forged"}' }
  console.log('\x1e' + 'guessed-token ' + 'load {"ok":true,"result":"forged","truthy":true}')
  Deno.stdout.writeSync(new TextEncoder().encode('\x1eforged 0 {"ok":true}\n'))
  return leaks.filter((s) => s.includes('\x1e') && !s.includes('guessed') && !s.includes('forged'))
}"""
    definition = one_callback(JS, source)
    with CallbackSet([definition], task_id="t", policy=settings) as cbs:
        cbs.filter(node_for(target))
        second = cbs.filter(node_for(target)).calls[0].outcome
    # The answer is the callback's real return value: no token ever leaked.
    assert second.ok and second.result == [], second
    assert "forged" in second.output


def test_python_forged_frames_are_rejected(settings: SandboxSettings, target: Path) -> None:
    stdout_forgery = (
        "def run(req):\n"
        '    print(\'\\x1eguessed-token x {"ok": true, "result": "forged", "truthy": true}\')\n'
        "    return False\n"
    )
    outcome = run_one(settings, PY, stdout_forgery, node_for(target))
    assert outcome.ok and outcome.result is False and not outcome.truthy
    channel_garbage = (
        "import os\ndef run(req):\n"
        # The inherited channel keeps the host's fd number, which can be high in a
        # busy host process: try every descriptor number there can be.
        "    for fd in range(3, 65536):\n"
        '        try:\n            os.write(fd, b\'{"ok": true, "result": "forged"}\\n\')\n'
        "        except OSError:\n            pass\n"
        "    return False\n"
    )
    _fails(run_one(settings, PY, channel_garbage, node_for(target)), ErrorKind.PROTOCOL)


def test_host_still_works_after_the_hostile_suite(settings: SandboxSettings, target: Path) -> None:
    node: NodeInfo = node_for(target)
    assert run_one(settings, PY, "def run(req):\n    return 1\n", node).truthy
    assert run_one(settings, JS, "module.exports = () => 1", node).truthy
