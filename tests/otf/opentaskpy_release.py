"""opentaskpy itself, pinned: its source distribution (for the test corpus) and a
throwaway virtualenv with it installed (to compare results), both from PyPI through pip,
cached under the system temp directory.  Never a storeflow dependency."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

VERSION = "26.18.1"
CACHE = Path(tempfile.gettempdir()) / f"storeflow-tests-opentaskpy-{VERSION}"

#: What an f-string's or a variable's value becomes in the corpus: a path, as the
#: opentaskpy tests mostly interpolate directories.
PLACEHOLDER = "/tmp/otf-corpus"


def sdist() -> Path:
    """The unpacked sdist (downloaded with pip the first time)."""
    root = CACHE / f"opentaskpy-{VERSION}"
    if (root / "tests").is_dir():
        return root
    CACHE.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary",
         ":all:", f"opentaskpy=={VERSION}", "-d", str(CACHE)],
        check=True, timeout=600,
    )  # fmt: skip
    with tarfile.open(CACHE / f"opentaskpy-{VERSION}.tar.gz") as tar:
        tar.extractall(CACHE, filter="data")
    return root


def venv() -> Path:
    """A virtualenv with opentaskpy installed; returns its ``bin`` directory."""
    home = CACHE / "venv"
    bin_dir = home / "bin"
    if (bin_dir / "task-run").exists():
        return bin_dir
    subprocess.run([sys.executable, "-m", "venv", str(home)], check=True, timeout=300)
    subprocess.run(
        [str(bin_dir / "pip"), "install", "--quiet", f"opentaskpy=={VERSION}"],
        check=True, timeout=900,
    )  # fmt: skip
    return bin_dir


@dataclass(frozen=True)
class CorpusEntry:
    """One task definition written in opentaskpy's tests: where, and its value."""

    where: str  # "tests/test_x.py:LINE"
    definition: dict[str, Any]

    @property
    def type(self) -> str:
        return str(self.definition.get("type"))


def _value(node: ast.AST, names: dict[str, ast.AST], depth: int = 0) -> Any:
    """A literal's value; a module-level name stands for its literal value; calls and
    f-string parts become the placeholder."""

    def value(child: ast.AST) -> Any:
        return _value(child, names, depth + 1)

    if depth > 50:
        return PLACEHOLDER
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Dict):
        return {value(k): value(v) for k, v in zip(node.keys, node.values, strict=True) if k}
    if isinstance(node, ast.List | ast.Tuple):
        return [value(e) for e in node.elts]
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        inner = value(node.operand)
        return -inner if isinstance(inner, int | float) else PLACEHOLDER
    if isinstance(node, ast.JoinedStr):
        return "".join(
            str(v.value) if isinstance(v, ast.Constant) else PLACEHOLDER for v in node.values
        )
    if isinstance(node, ast.Name) and node.id in names:
        return value(names[node.id])
    return PLACEHOLDER


def _module_literals(tree: ast.Module) -> dict[str, ast.AST]:
    """Module-level ``name = <literal>`` assignments (definitions share parts this way)."""
    names: dict[str, ast.AST] = {}
    for stmt in tree.body:
        if (
            isinstance(stmt, ast.Assign)
            and len(stmt.targets) == 1
            and isinstance(stmt.targets[0], ast.Name)
            and isinstance(stmt.value, ast.Dict | ast.List | ast.Constant | ast.JoinedStr)
        ):
            names[stmt.targets[0].id] = stmt.value
    return names


def corpus() -> list[CorpusEntry]:
    """Every dict literal with ``type`` transfer/execution/batch in opentaskpy's tests."""
    root = sdist()
    found: dict[str, CorpusEntry] = {}
    for path in sorted((root / "tests").glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        names = _module_literals(tree)
        for node in ast.walk(tree):
            if not isinstance(node, ast.Dict):
                continue
            value = _value(node, names)
            if value.get("type") in ("transfer", "execution", "batch"):
                key = json.dumps(value, sort_keys=True)
                found.setdefault(key, CorpusEntry(f"tests/{path.name}:{node.lineno}", value))
    return sorted(found.values(), key=lambda e: e.where)
