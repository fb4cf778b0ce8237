"""The folders are the architecture, and their imports run one way only (README,
Layout): each folder imports only the folders below it, never one above."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Top to bottom: what a folder may import is what stands below it.
LAYERS = ["cli", "services", "flows", "tasks", "blocks", "models", "sandbox"]


def storeflow_imports(path: Path) -> set[str]:
    """The storeflow folders a module imports (at any depth: function-level too)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        names = []
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        for name in names:
            parts = name.split(".")
            if parts[0] == "storeflow" and len(parts) > 1:
                found.add(parts[1])
    return found


def test_every_folder_of_the_namespace_is_a_known_layer() -> None:
    linked = {p.name for p in (ROOT / "storeflow").iterdir() if p.is_symlink()}
    assert linked == set(LAYERS)


def test_imports_run_down_the_layers_only() -> None:
    upward = []
    for rank, layer in enumerate(LAYERS):
        above = set(LAYERS[:rank])
        for module in sorted((ROOT / layer).rglob("*.py")):
            for target in sorted(storeflow_imports(module) & above):
                upward.append(f"{module.relative_to(ROOT)} imports storeflow.{target}")
    assert upward == []
