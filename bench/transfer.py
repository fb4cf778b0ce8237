"""Transfer benchmark: storeflow against cp -a, rsync -a, opentaskpy and smbclient put.

    .venv/bin/python -m bench.transfer                        # the issue's sizes (minutes)
    .venv/bin/python -m bench.transfer --small-count 2000 --large-mib 128 --smb-mib 64 --runs 1

Defaults are issue 5's: 10,000 files of 4 KiB and one 1 GiB file, local to local, and
1 GiB local -> SMB.  Every figure is printed as a ratio against a baseline measured in the
same run (`cp -a` for local copies, opentaskpy's `task-run` for storeflow end to end,
`smbclient put` for SMB), next to the issue's target:

- copy phase (plan made beforehand; deliver + finalize) <= 1.2x `cp -a` for small
  files, <= 1.1x for the large file, wall and CPU seconds (user + sys) side by side;
- end to end (`storeflow transfer run` in a new process against a running
  `prefect server start` and a running `storeflow warm start`, as a user keeps both up)
  faster than `task-run` on the same definition file; the same command without the
  warm runner (STOREFLOW_WARM=off: the process imports Prefect itself) is printed too;
- SMB throughput >= 0.8x of `smbclient put`.

opentaskpy is never a storeflow dependency: the bench installs it into a throwaway
virtualenv (`--otf-venv`, default /tmp/storeflow-bench-otf) the first time, with

    python3 -m venv /tmp/storeflow-bench-otf && /tmp/storeflow-bench-otf/bin/pip install opentaskpy

Then the small-file case on tmpfs (bench/small_files.py: cp -a, rsync -a, rclone copy
when installed, storeflow at 1, 2 and all cores' workers, callbacks, and a plan of
`--million` files), printed as a second table.

`--no-otf`, `--no-e2e`, `--no-smb`, `--no-tmpfs` skip those parts.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench import small_files
from storeflow.models.transfer import TransferDefinition, parse_definition
from storeflow.tasks.transfer import deliver, finalize, plan_transfer
from storeflow.tasks.transfer.engine import default_workers
from tests.services import SmbShare, smb_server

OTF_VENV = Path(tempfile.gettempdir()) / "storeflow-bench-otf"


@dataclass
class Row:
    case: str
    tool: str
    seconds: float
    baseline: str
    baseline_seconds: float
    #: "time": lower is better (ratio = seconds / baseline); "throughput": the inverse.
    measure: str = "time"
    #: The issue's bound on the ratio, as text ("<= 1.5"); "+<= 0.1" bounds the seconds
    #: beyond the baseline instead; "" for none.
    target: str = ""
    #: CPU seconds (user + sys) of the contender and of the baseline, when measured.
    cpu: float | None = None
    baseline_cpu: float | None = None

    @property
    def ratio(self) -> float:
        if self.measure == "throughput":
            return self.baseline_seconds / self.seconds
        return self.seconds / self.baseline_seconds

    @property
    def verdict(self) -> str:
        if not self.target:
            return ""
        op, bound = self.target.split()
        limit = float(bound)
        ok = {
            "<=": self.ratio <= limit,
            "<": self.ratio < limit,
            ">=": self.ratio >= limit,
            "+<=": self.seconds - self.baseline_seconds <= limit,
        }[op]
        return "ok" if ok else "MISSED"


@dataclass
class Contender:
    prepare: Callable[[], None]
    run: Callable[[], object]
    check: Callable[[], None] = lambda: None
    #: The work runs in a child process: its CPU is the children's rusage.
    child: bool = False


#: CPU seconds (user + sys) of each contender's best round, from the last best_of call.
LAST_CPU: dict[str, float] = {}


def best_of(runs: int, contenders: dict[str, Contender]) -> dict[str, float]:
    """The best time of each contender over `runs` rounds, taking turns within a round:
    on a machine shared with other work, speed drifts over minutes, and back-to-back
    blocks per tool would let the drift decide the ratios.  The least CPU seconds of
    each are left in LAST_CPU."""
    times: dict[str, list[float]] = {name: [] for name in contenders}
    cpus: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(runs):
        for name, contender in contenders.items():
            contender.prepare()
            wall, cpu, _ = small_files.measure(
                small_files.Contender(contender.prepare, contender.run, contender.child)
            )
            times[name].append(wall)
            cpus[name].append(cpu)
            contender.check()
    LAST_CPU.clear()
    LAST_CPU.update({name: min(found) for name, found in cpus.items()})
    return {name: min(found) for name, found in times.items()}


def run_quietly(cmd: list[str], env: dict[str, str] | None = None) -> None:
    done = subprocess.run(cmd, env=env, capture_output=True, stdin=subprocess.DEVNULL)
    if done.returncode != 0:
        raise RuntimeError(
            f"{' '.join(cmd)} exited {done.returncode}:\n"
            f"{done.stdout.decode()[-2000:]}\n{done.stderr.decode()[-2000:]}"
        )


def definition_dict(src: Path, dst: Path) -> dict[str, Any]:
    """One OTF definition, as both storeflow and opentaskpy read it."""
    return {
        "type": "transfer",
        "source": {"directory": str(src), "fileRegex": ".*", "protocol": {"name": "local"}},
        "destination": [
            {
                "directory": str(dst),
                "createDirectoryIfNotExists": True,
                "protocol": {"name": "local"},
            }
        ],
    }


def engine_copy(definition: TransferDefinition) -> Callable[[], None]:
    """The copy phase: deliver + finalize of an existing plan (listing excluded)."""
    plan = plan_transfer(definition)

    def run() -> None:
        deliver(plan, max_workers=default_workers(), batch_size=256)
        finalize(plan)

    return run


def fresh(path: Path, aside: Path | None = None) -> Callable[[], None]:
    def prepare() -> None:
        gone(path, aside)()
        path.mkdir(parents=True)

    return prepare


def gone(path: Path, aside: Path | None = None) -> Callable[[], None]:
    """Remove ``path`` before a run, or set it aside in ``aside`` (see
    small_files.set_aside_dir: on this VM's ext4, deleting 10,000 files slows the next
    run's creates by seconds, whichever tool runs)."""

    def prepare() -> None:
        small_files.clear(path, aside)
        # Every timed run starts with nothing dirty in the page cache: otherwise a run
        # pays for writing back the previous runs' gigabytes, and the order of the
        # tools would decide their figures.
        os.sync()

    return prepare


def check_copied(src: Path, dst: Path) -> None:
    want = sorted(os.listdir(src))
    have = sorted(os.listdir(dst))
    if want != have:
        raise RuntimeError(f"{dst}: {len(have)} files, {len(want)} expected")


# -- copy phase -----------------------------------------------------------------------------


def local_copy(
    case: str, src: Path, dst: Path, runs: int, target: str, aside: Path | None = None
) -> tuple[float, float, list[Row]]:
    """storeflow's copy phase and rsync -a against cp -a (modes and mtimes kept, as
    storeflow keeps them); returns the times of cp -a and of the copy phase too.
    ``aside``: where each run's output is set aside instead of deleted (see gone)."""
    fresh(dst, aside)()
    copied = functools.partial(check_copied, src, dst)
    found = best_of(
        runs,
        {
            "engine": Contender(
                fresh(dst, aside), engine_copy(parse_definition(definition_dict(src, dst))), copied
            ),
            "cp": Contender(
                gone(dst, aside),
                lambda: run_quietly(["cp", "-a", str(src), str(dst)]),
                copied,
                True,
            ),
            "rsync": Contender(
                gone(dst, aside),
                lambda: run_quietly(["rsync", "-a", f"{src}/", f"{dst}/"]),
                copied,
                True,
            ),
        },
    )
    cpu = dict(LAST_CPU)
    t_engine, t_cp, t_rsync = found["engine"], found["cp"], found["rsync"]
    shutil.rmtree(dst, ignore_errors=True)
    return (
        t_cp,
        t_engine,
        [
            Row(case, "cp -a", t_cp, "cp -a", t_cp, cpu=cpu["cp"], baseline_cpu=cpu["cp"]),
            Row(
                case,
                "storeflow copy phase",
                t_engine,
                "cp -a",
                t_cp,
                target=target,
                cpu=cpu["engine"],
                baseline_cpu=cpu["cp"],
            ),
            Row(case, "rsync -a", t_rsync, "cp -a", t_cp, cpu=cpu["rsync"], baseline_cpu=cpu["cp"]),
        ],
    )


# -- end to end -----------------------------------------------------------------------------


def otf_task_run(venv: Path) -> Path:
    """opentaskpy's `task-run` in a throwaway virtualenv (created on first use)."""
    task_run = venv / "bin" / "task-run"
    if not task_run.exists():
        print(f"installing opentaskpy into {venv} (not a storeflow dependency)", file=sys.stderr)
        run_quietly([sys.executable, "-m", "venv", str(venv)])
        run_quietly([str(venv / "bin" / "pip"), "install", "--quiet", "opentaskpy"])
    return task_run


@contextmanager
def prefect_server(work: Path) -> Iterator[dict[str, str]]:
    """A `prefect server start` on 127.0.0.1, on a scratch PostgreSQL database as the
    tests use (the SQLite backend answers back-to-back runs with 503 "database is
    locked", which the client retries after ~2 s); yields the client environment."""
    from tests.e2e.server import PREFECT, free_port, started, wait_until_healthy
    from tests.prefect_backend import scratch_database

    port = free_port()
    api_url = f"http://127.0.0.1:{port}/api"
    env = {
        **os.environ,
        "PREFECT_HOME": str(work / "prefect-home"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
        "PREFECT_LOGGING_LEVEL": "WARNING",
        "STOREFLOW_HOME": str(work / "storeflow-home"),
    }
    server = [PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(port)]
    with (
        scratch_database("storeflow_bench_prefect") as database,
        started(
            server,
            {**env, "PREFECT_API_DATABASE_CONNECTION_URL": _asyncpg(database)},
            work / "server.log",
            work,
        ) as process,
    ):
        wait_until_healthy(api_url, process, work / "server.log", 120)
        client_env = {**env, "PREFECT_API_URL": api_url}
        with warm_runner(client_env, work):
            yield client_env


def _asyncpg(database: str) -> str:
    return f"postgresql+asyncpg://postgres@127.0.0.1:5432/{database}"


@contextmanager
def warm_runner(env: dict[str, str], work: Path) -> Iterator[None]:
    """`storeflow warm start` as a user would run it beside the server; stopped by PID."""
    storeflow = str(Path(sys.executable).with_name("storeflow"))
    run_quietly([storeflow, "warm", "start", "--idle-timeout", "0"], env)
    status = subprocess.run(
        [storeflow, "warm", "status", "--json"], env=env, capture_output=True, timeout=60
    )
    pid = int(json.loads(status.stdout)["pid"])
    try:
        yield
    finally:
        subprocess.run([storeflow, "warm", "stop"], env=env, capture_output=True, timeout=60)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def warm_settled(env: dict[str, str], seconds: float = 60) -> None:
    """Wait until the warm runner runs no command and its next child is ready: what a
    command leaves running in the background (its child draining Prefect's services and
    exiting, the next child preparing) is the warm runner's own work, and must not run
    during the next contender's turn.  Untimed (a contender's `check`)."""
    from storeflow.cli.warm import wire
    from storeflow.cli.warm.client import connect

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with connect(env) as sock:
            wire.send(sock, {"op": "status", "protocol": wire.PROTOCOL})
            reply, _ = wire.Reader(sock).receive()
        ready = (reply or {}).get("ready") or {}
        if reply and reply.get("running") == 0 and ready.get("prepared") is not None:
            return
        time.sleep(0.02)
    raise RuntimeError(f"the warm runner did not settle in {seconds:g}s")


@contextmanager
def prefect_floor(client_env: dict[str, str]) -> Iterator[Callable[[], None]]:
    """bench/prefect_floor.py --serve against the same server: Prefect's own cost of one
    flow of the transfer flow's shape, copying nothing, in a process that already ran one.
    Yields a function that does one run, so that the floor takes its turns with the
    contenders it is compared with."""
    process = subprocess.Popen(
        [sys.executable, "-m", "bench.prefect_floor", "--serve"],
        env=client_env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).parent.parent,
    )
    assert process.stdin is not None and process.stdout is not None
    stdin, stdout = process.stdin, process.stdout

    def answer() -> dict[str, Any]:
        line = stdout.readline()
        if not line:
            raise RuntimeError(f"bench.prefect_floor exited {process.wait(timeout=60)}")
        found: dict[str, Any] = json.loads(line)
        return found

    def one_run() -> None:
        stdin.write("\n")
        stdin.flush()
        answer()

    try:
        answer()  # "ready": its first run (imports, clients) is behind it
        yield one_run
    finally:
        stdin.close()
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=60)


def end_to_end(
    case: str,
    src: Path,
    work: Path,
    runs: int,
    t_cp: float,
    client_env: dict[str, str],
    task_run: Path | None,
    floor_run: Callable[[], None],
    aside: Path | None = None,
) -> list[Row]:
    """`storeflow transfer run` as a user runs it (a new process, the flow on a running
    Prefect server) and opentaskpy's `task-run` on the same definition file.

    The floor, the least storeflow end to end could take, is the sum of Prefect's floor
    (`floor_run`, see prefect_floor) and storeflow's copy phase, both timed in the same
    rounds as the command, taking turns with it; `t_cp` is the time of cp -a.
    ``aside``: where each run's output is set aside instead of deleted (see gone)."""
    config = work / "otf-config"
    config.mkdir(parents=True, exist_ok=True)
    dst = work / "dst"
    definition = config / "transfer.json"
    definition.write_text(json.dumps(definition_dict(src, dst), indent=2))
    (config / "variables.json").write_text("{}")
    storeflow = str(Path(sys.executable).with_name("storeflow"))
    command = [storeflow, "transfer", "run", str(definition), "--json"]
    cold_env = {**client_env, "STOREFLOW_WARM": "off"}
    warm_env = {**client_env, "STOREFLOW_WARM": "require"}  # fail rather than fall back
    copied = functools.partial(check_copied, src, dst)

    def copied_and_settled() -> None:
        copied()
        warm_settled(warm_env)

    fresh(dst, aside)()  # the copy phase's plan names an existing destination
    warm_settled(warm_env)
    removed = gone(dst, aside)
    contenders = {
        "cold": Contender(removed, lambda: run_quietly(command, cold_env), copied),
        "warm": Contender(removed, lambda: run_quietly(command, warm_env), copied_and_settled),
        "prefect floor": Contender(removed, floor_run),
        "copy phase": Contender(
            fresh(dst, aside), engine_copy(parse_definition(definition_dict(src, dst))), copied
        ),
    }
    if task_run is not None:
        otf_env = {**os.environ, "OTF_NO_LOG": "1", "OTF_STAGING_DIR": str(work / "staging")}
        otf = [str(task_run), "-t", "transfer", "-c", str(config)]
        contenders["otf"] = Contender(removed, lambda: run_quietly(otf, otf_env), copied)
    found = best_of(runs, contenders)
    t_cold, t_cli = found["cold"], found["warm"]
    t_floor, t_copy_phase = found["prefect floor"], found["copy phase"]
    rows = [
        Row(case, "storeflow CLI, no warm runner", t_cold, "cp -a", t_cp),
        Row(case, "storeflow CLI end to end", t_cli, "cp -a", t_cp),
    ]
    if task_run is not None:
        t_otf = found["otf"]
        rows += [
            Row(case, "opentaskpy task-run", t_otf, "cp -a", t_cp),
            Row(case, "storeflow CLI, no warm runner", t_cold, "opentaskpy", t_otf),
            Row(case, "storeflow CLI end to end", t_cli, "opentaskpy", t_otf, target="< 1.0"),
            Row(case, "floor: Prefect run + copy", t_floor + t_copy_phase, "opentaskpy", t_otf),
        ]
    # The bar for the end-to-end figure: within 0.1 s of the least it could take.
    floor = t_floor + t_copy_phase
    against = f"floor {floor:.3f} s ({t_floor:.3f} Prefect + {t_copy_phase:.3f} copy)"
    rows.append(Row(case, "storeflow CLI end to end", t_cli, against, floor, target="+<= 0.1"))
    shutil.rmtree(dst, ignore_errors=True)
    return rows


# -- SMB ------------------------------------------------------------------------------------


def smb_copy(case: str, src: Path, work: Path, runs: int) -> list[Row]:
    share = work / "share"
    share.mkdir(parents=True)
    name = next(iter(os.listdir(src)))
    with smb_server(work / "smbd", [SmbShare("data", share)]) as server:
        protocol = {
            "name": "smb",
            "credentials": {
                "host": server.host,
                "port": server.port,
                "share": "data",
                "username": server.username,
                "password": server.password,
            },
        }
        definition = parse_definition(
            {
                "type": "transfer",
                "source": {"directory": str(src), "fileRegex": ".*", "protocol": {"name": "local"}},
                "destination": [{"directory": "/", "protocol": protocol}],
            }
        )
        # Each run writes to an empty share, as each local run writes to a new directory:
        # replacing last run's 1 GiB file would time the server's unlink of it.
        empty_share = fresh(share)
        # The password goes in a 0600 auth file, never on a command line.
        auth = work / "smb.auth"
        auth.touch(mode=0o600)
        auth.write_text(f"username = {server.username}\npassword = {server.password}\n")
        put = [
            "smbclient",
            f"//{server.host}/data",
            "-p",
            str(server.port),
            "-A",
            str(auth),
            "-c",
            f'put "{src / name}" "copy.bin"',
        ]

        def engine_copied() -> None:
            if (share / name).stat().st_size != (src / name).stat().st_size:
                raise RuntimeError("SMB copy is short")

        found = best_of(
            runs,
            {
                "engine": Contender(empty_share, engine_copy(definition), engine_copied),
                "smbclient": Contender(empty_share, lambda: run_quietly(put)),
            },
        )
        t_engine, t_tool = found["engine"], found["smbclient"]
    return [
        Row(case, "smbclient put", t_tool, "smbclient put", t_tool, "throughput"),
        Row(
            case, "storeflow copy phase", t_engine, "smbclient put", t_tool, "throughput", ">= 0.8"
        ),
    ]


def smb_download(case: str, src: Path, work: Path, runs: int) -> list[Row]:
    """SMB -> local (pipelined reads) against ``smbclient get`` of the same file."""
    share = work / "share"
    share.mkdir(parents=True)
    name = next(iter(os.listdir(src)))
    shutil.copyfile(src / name, share / name)
    dest, tool_dest = work / "down", work / "down-tool"
    with smb_server(work / "smbd", [SmbShare("data", share)]) as server:
        protocol = {
            "name": "smb",
            "credentials": {
                "host": server.host,
                "port": server.port,
                "share": "data",
                "username": server.username,
                "password": server.password,
            },
        }
        dest.mkdir()
        definition = parse_definition(
            {
                "type": "transfer",
                "source": {"directory": "/", "fileRegex": f"^{name}$", "protocol": protocol},
                "destination": [{"directory": str(dest), "protocol": {"name": "local"}}],
            }
        )
        auth = work / "smb.auth"
        auth.touch(mode=0o600)
        auth.write_text(f"username = {server.username}\npassword = {server.password}\n")
        get = [
            "smbclient", f"//{server.host}/data", "-p", str(server.port), "-A", str(auth),
            "-c", f'get "{name}" "{tool_dest / name}"',
        ]  # fmt: skip

        def engine_copied() -> None:
            if (dest / name).stat().st_size != (src / name).stat().st_size:
                raise RuntimeError("SMB download is short")

        found = best_of(
            runs,
            {
                "engine": Contender(fresh(dest), engine_copy(definition), engine_copied),
                "smbclient": Contender(fresh(tool_dest), lambda: run_quietly(get)),
            },
        )
        t_engine, t_tool = found["engine"], found["smbclient"]
    return [
        Row(case, "smbclient get", t_tool, "smbclient get", t_tool, "throughput"),
        Row(
            case, "storeflow copy phase", t_engine, "smbclient get", t_tool, "throughput", ">= 0.8"
        ),
    ]


# -- report ---------------------------------------------------------------------------------


def table(rows: list[Row]) -> str:
    head = ("case", "tool", "seconds", "ratio", "cpu s", "cpu ratio", "against", "target", "")
    lines = [head]
    for row in rows:
        unit = "x throughput" if row.measure == "throughput" else "x time"
        cpu_ratio = ""
        if row.cpu is not None and row.baseline_cpu:
            cpu_ratio = f"{row.cpu / row.baseline_cpu:.2f}x"
        lines.append(
            (
                row.case,
                row.tool,
                f"{row.seconds:.3f}",
                f"{row.ratio:.2f}{unit}",
                f"{row.cpu:.3f}" if row.cpu is not None else "",
                cpu_ratio,
                row.baseline,
                row.target,
                row.verdict,
            )
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
    return "\n".join(
        "| "
        + " | ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True))
        + " |"
        for line in [lines[0], tuple("-" * w for w in widths), *lines[1:]]
    )


def write_file(path: Path, size: int, block: bytes) -> None:
    with open(path, "wb") as out:
        for _ in range(size // len(block)):
            out.write(block)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--small-count", type=int, default=10_000)
    parser.add_argument("--small-size", type=int, default=4096, help="bytes per small file")
    parser.add_argument("--large-mib", type=int, default=1024)
    parser.add_argument("--smb-mib", type=int, default=1024)
    parser.add_argument("--runs", type=int, default=3, help="best of N, for every figure")
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--otf-venv", type=Path, default=OTF_VENV)
    parser.add_argument("--json", type=Path, default=None, help="also write the rows here")
    parser.add_argument("--no-e2e", action="store_true", help="skip the CLI and opentaskpy runs")
    parser.add_argument("--no-otf", action="store_true", help="skip opentaskpy")
    parser.add_argument("--no-smb", action="store_true", help="skip SMB")
    parser.add_argument(
        "--million", type=int, default=1_000_000, help="files of the tmpfs plan case (0: skip)"
    )
    parser.add_argument("--no-tmpfs", action="store_true", help="skip the tmpfs small-file case")
    args = parser.parse_args()
    small_files.exit_on_sigterm()

    task_run = None if args.no_e2e or args.no_otf else otf_task_run(args.otf_venv)
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        work = Path(tmp)
        small = work / "small"
        small.mkdir()
        payload = os.urandom(args.small_size)
        for i in range(args.small_count):
            (small / f"file-{i:06}.dat").write_bytes(payload)
        block = os.urandom(1 << 20)
        large = work / "large"
        large.mkdir()
        write_file(large / "large.bin", args.large_mib << 20, block)

        small_case = f"{args.small_count} x {args.small_size // 1024} KiB local"
        large_case = f"1 x {args.large_mib} MiB local"
        # The small cases' outputs are set aside, not deleted (see gone); the large
        # case's, a file a run, are deleted (they would hold gigabytes).
        aside = small_files.set_aside_dir(work / "s")
        t_cp_small, _, found = local_copy(small_case, small, work / "s", args.runs, "<= 1.2", aside)
        rows += found
        t_cp_large, _, found = local_copy(large_case, large, work / "l", args.runs, "<= 1.1")
        rows += found
        if not args.no_e2e:
            with prefect_server(work) as env, prefect_floor(env) as floor_run:
                rows += end_to_end(
                    small_case, small, work / "es", args.runs, t_cp_small, env, task_run,
                    floor_run, aside,
                )  # fmt: skip
                rows += end_to_end(
                    large_case, large, work / "el", args.runs, t_cp_large, env, task_run,
                    floor_run,
                )  # fmt: skip
        shutil.rmtree(large)
        if not args.no_smb:
            smb_src = work / "smbsrc"
            smb_src.mkdir()
            write_file(smb_src / "large.bin", args.smb_mib << 20, block)
            rows += smb_copy(
                f"1 x {args.smb_mib} MiB local -> SMB", smb_src, work / "smb", args.runs
            )
            rows += smb_download(
                f"1 x {args.smb_mib} MiB SMB -> local", smb_src, work / "smb-get", args.runs
            )

    tmpfs_lines: list[small_files.Line] = []
    if not args.no_tmpfs:
        with tempfile.TemporaryDirectory(dir=small_files.tmpfs_dir()) as tmp:
            tmpfs_lines = small_files.run_all(
                Path(tmp), args.small_count, args.small_size, args.million, args.runs + 2
            )

    order = {case: index for index, case in reversed(list(enumerate(r.case for r in rows)))}
    rows.sort(key=lambda r: order[r.case])
    print(table(rows))
    if tmpfs_lines:
        print()
        print(small_files.table(tmpfs_lines))
    if args.json is not None:
        dumped: list[dict[str, Any]] = [{**asdict(r), "ratio": r.ratio} for r in rows]
        args.json.write_text(json.dumps(dumped + small_files.summary(tmpfs_lines), indent=2))


if __name__ == "__main__":
    main()
