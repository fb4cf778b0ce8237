"""Cold start of the `storeflow` command against bare Python, as ratios in one run.

    .venv/bin/python -m bench.cli [--rounds 10]

Each contender is a fresh process of this interpreter: `python -c pass`, then
`storeflow --help`, `storeflow space list --json` and `storeflow callback run --lang
python ...`, with STOREFLOW_WARM=off (no warm runner) and a scratch STOREFLOW_HOME.
The contenders take turns within each round and each keeps its best time, so a
slow moment of a shared machine cannot decide a ratio.  Prints a table; asserts
nothing (target: --help and space list within 0.3 s of bare Python).
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGET_EXTRA_S = 0.3
ENTRY = "from storeflow.cli.main import main; main()"


def contenders(work: Path) -> dict[str, list[str]]:
    callback = work / "callback.py"
    callback.write_text("def run(req):\n    return True\n")
    run = ["--lang", "python", "--file", str(callback), "--path", str(callback)]
    storeflow = [sys.executable, "-c", ENTRY]
    return {
        "python -c pass": [sys.executable, "-c", "pass"],
        "storeflow --help": [*storeflow, "--help"],
        "storeflow space list --json": [*storeflow, "space", "list", "--json"],
        "storeflow callback run": [*storeflow, "callback", "run", *run],
    }


def once(cmd: list[str], env: dict[str, str], cwd: Path) -> float:
    start = time.perf_counter()
    result = subprocess.run(
        cmd, env=env, cwd=cwd, capture_output=True, timeout=120, stdin=subprocess.DEVNULL
    )
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {result.returncode}: {result.stderr[-500:]!r}")
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=10, help="best of this many runs each")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="storeflow-bench-cli-") as tmp:
        work = Path(tmp)
        env = {**os.environ, "STOREFLOW_WARM": "off", "STOREFLOW_HOME": str(work / "home")}
        for var in ("STOREFLOW_CONFIG_BLOCK", "STOREFLOW_DATABASE_URL"):
            env.pop(var, None)
        commands = contenders(work)
        once(commands["storeflow space list --json"], env, work)  # the database, made once
        best = {name: float("inf") for name in commands}
        for _ in range(args.rounds):
            for name, cmd in commands.items():
                best[name] = min(best[name], once(cmd, env, work))
    bare = best["python -c pass"]
    heading = f"command (cold, best of {args.rounds})"
    print(f"{heading:40} {'s':>7} {'ratio':>7} {'+s':>7}")
    for name, seconds in best.items():
        print(f"{name:40} {seconds:7.3f} {seconds / bare:7.2f} {seconds - bare:7.3f}")
    print(f"target: --help and space list within {TARGET_EXTRA_S} s of bare Python")
    return 0


if __name__ == "__main__":
    sys.exit(main())
