"""storeflow claims one import name: installed (not editable) into a fresh virtualenv
beside a Prefect project with its own `flows`, `tasks` and `models` packages, both
import, and the `storeflow` command runs."""

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run(argv: list[str], cwd: Path, timeout: float = 300) -> str:
    # Nothing but the fresh virtualenv decides what imports: no PYTHONPATH from outside.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{argv}: {done.stdout}\n{done.stderr}"
    return done.stdout


def test_storeflow_installs_under_one_name_beside_a_users_project(tmp_path: Path) -> None:
    # The wheel, built offline (the links in storeflow/ are followed) from a copy of this
    # checkout: setuptools writes build/ and *.egg-info beside the sources it builds.
    source = tmp_path / "source"
    skip = (".venv", ".git", "build", "*.egg-info", "__pycache__", "*_cache", "tests", "bench")
    shutil.copytree(ROOT, source, symlinks=True, ignore=shutil.ignore_patterns(*skip))
    pip = [sys.executable, "-m", "pip"]
    run(
        [*pip, "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", "dist", str(source)],
        tmp_path,
    )
    wheel = next((tmp_path / "dist").glob("storeflow-*.whl"))
    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", "--without-pip", str(venv)], tmp_path)
    python = venv / "bin" / "python"
    where = "import site; print(site.getsitepackages()[0])"
    site = Path(run([str(python), "-c", where], tmp_path).strip())
    # storeflow's dependencies come from this environment's site-packages (a plain path:
    # its .pth files, and so the editable storeflow, are not read).
    (site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    run(
        [*pip, "--python", str(python), "install", "-q", "--no-deps", "--no-index", str(wheel)],
        tmp_path,
    )
    installed = sorted(p.name for p in site.iterdir() if not p.name.endswith((".pth", "-info")))
    assert "storeflow" in installed
    assert not {"flows", "tasks", "models", "blocks", "sandbox", "cli"} & set(installed)

    project = tmp_path / "project"
    for package in ("flows", "tasks", "models"):
        (project / package).mkdir(parents=True)
        (project / package / "__init__.py").write_text(f"OWNER = 'the user ({package})'\n")
    code = (
        "import flows, tasks, models\n"
        "import storeflow.flows.spaces, storeflow.cli.app, storeflow.tasks.lifecycle\n"
        "assert flows.OWNER == 'the user (flows)' and tasks.OWNER == 'the user (tasks)'\n"
        "assert models.OWNER == 'the user (models)'\n"
        "assert storeflow.flows.spaces.space_create.name == 'space-create'\n"
        "print(storeflow.tasks.lifecycle.__file__)\n"
    )
    imported = run([str(python), "-c", code], project, timeout=120).strip()
    assert imported.startswith(str(site)), imported  # the installed copy, not this checkout

    help_text = run([str(venv / "bin" / "storeflow"), "--help"], project, timeout=120)
    assert "space" in help_text and "transfer" in help_text
