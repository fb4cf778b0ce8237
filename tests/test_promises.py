"""tests/README.md maps each promise of the README to the tests that prove it: every
quote must still be in the README, every named test must exist, every section of the
README that promises something must have rows; and no test may skip."""

import ast
import re
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TABLE = ROOT / "tests" / "README.md"
README = ROOT / "README.md"
# Sections that describe rather than promise.
NO_PROMISES = {"Layout", "Pinned versions"}
TEST_REF = re.compile(r"`(tests/[\w/]+\.py)::(\w+)`")


def _flat(text: str) -> str:
    return " ".join(text.split())


def _rows() -> list[tuple[str, list[tuple[str, str]], str]]:
    """(quote, [(file, test)], limits) for each row of the table."""
    rows = []
    for line in TABLE.read_text().splitlines():
        if not line.startswith('| "'):
            continue
        cells = [cell.strip() for cell in line.strip().strip("|").split(" | ")]
        assert len(cells) == 3, f"a row needs promise | tests | limits: {line}"
        quote, tests, limits = cells
        assert quote.startswith('"') and quote.endswith('"'), line
        rows.append((quote[1:-1], TEST_REF.findall(tests), limits))
    return rows


def _sections() -> dict[str, str]:
    """README section title -> its flattened text (the part before the first `##` is
    the introduction)."""
    sections: dict[str, list[str]] = {"(introduction)": []}
    current = "(introduction)"
    for line in README.read_text().splitlines():
        heading = re.match(r"^#{2,3} (.+)$", line)
        if heading:
            current = heading.group(1).strip()
            sections[current] = []
        else:
            sections[current].append(line)
    return {title: _flat("\n".join(lines)) for title, lines in sections.items()}


@cache
def _functions(path: str) -> set[str]:
    tree = ast.parse((ROOT / path).read_text())
    return {node.name for node in tree.body if isinstance(node, ast.FunctionDef)}


def test_every_quote_is_in_the_readme_and_names_tests() -> None:
    readme = _flat(README.read_text())
    rows = _rows()
    assert len(rows) >= 40, "the table lost its rows"
    for quote, tests, _ in rows:
        assert _flat(quote) in readme, f"no longer in README.md: {quote!r}"
        assert tests, f"no test named for {quote!r}"


def test_every_named_test_exists() -> None:
    missing = [
        f"{path}::{name}"
        for _, tests, _ in _rows()
        for path, name in tests
        if not (ROOT / path).is_file() or name not in _functions(path)
    ]
    assert not missing, f"tests/README.md names tests that do not exist: {missing}"


def test_every_section_that_promises_has_rows() -> None:
    quotes = [_flat(quote) for quote, _, _ in _rows()]
    uncovered = [
        title
        for title, text in _sections().items()
        if title not in NO_PROMISES and text and not any(q in text for q in quotes)
    ]
    assert not uncovered, f"README sections without a row in tests/README.md: {uncovered}"


def test_no_test_skips() -> None:
    """README: "none skips". A missing tool is installed by the bootstrap, or the test
    fails saying so."""
    skipping = re.compile(
        r"pytest\.skip\(|mark\.skip\b|mark\.skipif|skipif\(|importorskip|mark\.xfail|pytest\.xfail"
    )
    found = [
        f"{path.relative_to(ROOT)}:{number}"
        for path in sorted((ROOT / "tests").rglob("*.py"))
        if path != Path(__file__).resolve()
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if skipping.search(line)
    ]
    assert not found, f"tests that skip instead of failing: {found}"
