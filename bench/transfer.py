"""Transfer benchmark: the engine's copy phase against cp -r, rsync -a and smbclient put.

    .venv/bin/python -m bench.transfer [--small-count 10000] [--large-mib 1024] [--smb-mib 1024]

Defaults are smaller than the issue's figures (10,000 x 4 KiB, 1 GiB) so a run takes a
few minutes; ratios are engine time / tool time (below 1.0: the engine is faster).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from models.transfer import TransferDefinition, parse_definition
from tasks.transfer import deliver, finalize, plan_transfer
from tests.services import SmbShare, smb_server


def timed(func: Callable[[], object]) -> float:
    started = time.perf_counter()
    func()
    return time.perf_counter() - started


def best(runs: int, prepare: Callable[[], None], func: Callable[[], object]) -> float:
    times = []
    for _ in range(runs):
        prepare()
        times.append(timed(func))
    return min(times)


def local_definition(src: Path, dst: Path) -> TransferDefinition:
    return parse_definition(
        {
            "type": "transfer",
            "source": {"directory": str(src), "fileRegex": ".*", "protocol": {"name": "local"}},
            "destination": [{"directory": str(dst), "protocol": {"name": "local"}}],
        }
    )


def engine_copy(definition: TransferDefinition) -> Callable[[], None]:
    """The copy phase: deliver + finalize of an existing plan (listing excluded)."""
    plan = plan_transfer(definition)

    def run() -> None:
        deliver(plan)
        finalize(plan)

    return run


def fresh(path: Path) -> Callable[[], None]:
    def prepare() -> None:
        shutil.rmtree(path, ignore_errors=True)
        path.mkdir(parents=True)

    return prepare


def compare_local(label: str, src: Path, work: Path, runs: int) -> None:
    dst = work / "dst"
    fresh(dst)()
    engine = engine_copy(local_definition(src, dst))
    t_engine = best(runs, fresh(dst), engine)
    t_cp = best(
        runs,
        lambda: shutil.rmtree(dst, ignore_errors=True),
        lambda: subprocess.run(["cp", "-r", str(src), str(dst)], check=True),
    )
    t_rsync = best(
        runs,
        lambda: shutil.rmtree(dst, ignore_errors=True),
        lambda: subprocess.run(["rsync", "-a", f"{src}/", f"{dst}/"], check=True),
    )
    print(
        f"{label:<28} engine {t_engine:7.3f}s  cp -r {t_cp:7.3f}s ({t_engine / t_cp:4.2f}x)  "
        f"rsync -a {t_rsync:7.3f}s ({t_engine / t_rsync:4.2f}x)"
    )


def compare_end_to_end(label: str, src: Path, work: Path, runs: int) -> None:
    """`storeflow transfer run` as a user runs it (a new process, the flow on a running
    `prefect server start` on 127.0.0.1) against `cp -r` on the same files."""
    from tests.e2e.server import PREFECT, free_port, started, wait_until_healthy

    work.mkdir(parents=True, exist_ok=True)
    dst = work / "dst"
    definition = work / "e2e.json"
    definition.write_text(
        json.dumps(local_definition(src, dst).model_dump(mode="json", by_alias=True))
    )
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
    storeflow = str(Path(sys.executable).with_name("storeflow"))
    with started(server, env, work / "server.log", work) as process:
        wait_until_healthy(api_url, process, work / "server.log", 120)
        client_env = {**env, "PREFECT_API_URL": api_url}
        t_cli = best(
            runs,
            fresh(dst),
            lambda: subprocess.run(
                [storeflow, "transfer", "run", str(definition), "--json"],
                env=client_env,
                check=True,
                capture_output=True,
            ),
        )
    t_cp = best(
        runs,
        lambda: shutil.rmtree(dst, ignore_errors=True),
        lambda: subprocess.run(["cp", "-r", str(src), str(dst)], check=True),
    )
    print(
        f"{label + ' (CLI e2e)':<28} storeflow {t_cli:7.3f}s  cp -r {t_cp:7.3f}s "
        f"({t_cli / t_cp:5.2f}x)"
    )


def compare_smb(src: Path, work: Path, runs: int) -> None:
    share = work / "share"
    share.mkdir(parents=True)
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
        t_engine = best(runs, lambda: None, engine_copy(definition))
        name = next(iter(os.listdir(src)))
        t_tool = best(
            runs,
            lambda: None,
            lambda: subprocess.run(
                [
                    "smbclient",
                    f"//{server.host}/data",
                    "-p",
                    str(server.port),
                    "-U",
                    f"{server.username}%{server.password}",
                    "-c",
                    f'put "{src / name}" "copy.bin"',
                ],
                check=True,
                capture_output=True,
            ),
        )
        size = (src / name).stat().st_size / 2**20
        print(
            f"{f'{size:.0f} MiB local -> SMB':<28} engine {t_engine:7.3f}s  smbclient put "
            f"{t_tool:7.3f}s  (throughput {t_tool / t_engine:4.2f}x of smbclient)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small-count", type=int, default=2000)
    parser.add_argument("--small-size", type=int, default=4096)
    parser.add_argument("--large-mib", type=int, default=256)
    parser.add_argument("--smb-mib", type=int, default=128)
    parser.add_argument("--runs", type=int, default=3, help="best of N")
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument(
        "--no-e2e", action="store_true", help="skip the CLI run against a Prefect server"
    )
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        work = Path(tmp)
        small = work / "small"
        small.mkdir()
        payload = os.urandom(args.small_size)
        for i in range(args.small_count):
            (small / f"file-{i:06}.dat").write_bytes(payload)
        large = work / "large"
        large.mkdir()
        block = os.urandom(1 << 20)
        with open(large / "large.bin", "wb") as out:
            for _ in range(args.large_mib):
                out.write(block)
        smb_src = work / "smbsrc"
        smb_src.mkdir()
        with open(smb_src / "large.bin", "wb") as out:
            for _ in range(args.smb_mib):
                out.write(block)

        size_kib = args.small_size // 1024
        compare_local(f"{args.small_count} x {size_kib} KiB", small, work / "s", args.runs)
        compare_local(f"1 x {args.large_mib} MiB", large, work / "l", args.runs)
        compare_smb(smb_src, work / "smb", args.runs)
        if not args.no_e2e:
            compare_end_to_end(f"{args.small_count} x {size_kib} KiB", small, work / "es", 1)
            compare_end_to_end(f"1 x {args.large_mib} MiB", large, work / "el", 1)


if __name__ == "__main__":
    main()
