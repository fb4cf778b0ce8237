"""A strict reader of nfs-ganesha's configuration language.

ganesha has no configuration check and a syntax error on SIGHUP drops every
live export, so storeflow parses the whole configuration (main file and
%include files) itself before it signals the server. The grammar:

    config  := item*
    item    := WORD '{' item* '}'  |  WORD '=' value (',' value)* ';'  |  '%include' value
    value   := WORD | "string"
"""

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

_TOKEN = re.compile(
    r'(?P<space>\s+)|(?P<comment>#[^\n]*)|(?P<string>"[^"\\\n]*")|(?P<punct>[{}=;,])'
    r"|(?P<include>%include)|(?P<word>[A-Za-z0-9_./:*@+-]+)"
)


class GaneshaSyntaxError(ValueError):
    pass


@dataclass
class Block:
    name: str
    params: dict[str, list[str]] = field(default_factory=dict)  # lower-case key -> values
    blocks: list["Block"] = field(default_factory=list)
    start: int = 0  # offsets in the text: from the block name to one past its '}'
    end: int = 0

    def value(self, key: str) -> str | None:
        values = self.params.get(key.lower())
        return values[0] if values else None

    def children(self, name: str) -> list["Block"]:
        return [b for b in self.blocks if b.name.lower() == name.lower()]


@dataclass
class Parsed:
    blocks: list[Block]
    includes: list[Path]


def _tokens(text: str) -> list[tuple[str, str, int]]:
    tokens = []
    position = 0
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None:
            line = text.count("\n", 0, position) + 1
            raise GaneshaSyntaxError(f"line {line}: unexpected {text[position]!r}")
        kind = match.lastgroup or ""
        if kind not in ("space", "comment"):
            tokens.append((kind, match.group(), position))
        position = match.end()
    return tokens


def unquote(value: str) -> str:
    return value[1:-1] if value.startswith('"') else value


def parse(text: str) -> Parsed:
    tokens = _tokens(text)
    root = Block("")
    includes: list[Path] = []
    stack = [root]
    index = 0

    def error(message: str, at: int) -> GaneshaSyntaxError:
        offset = tokens[at][2] if at < len(tokens) else len(text)
        return GaneshaSyntaxError(f"line {text.count(chr(10), 0, offset) + 1}: {message}")

    while index < len(tokens):
        kind, value, offset = tokens[index]
        if kind == "include":
            if index + 1 >= len(tokens) or tokens[index + 1][0] not in ("string", "word"):
                raise error("%include needs a file name", index)
            includes.append(Path(unquote(tokens[index + 1][1])))
            index += 2
        elif kind == "punct" and value == "}":
            if len(stack) == 1:
                raise error("'}' without a block", index)
            stack.pop().end = offset + 1
            index += 1
        elif kind == "word":
            nxt = tokens[index + 1][1] if index + 1 < len(tokens) else ""
            if nxt == "{":
                block = Block(value, start=offset)
                stack[-1].blocks.append(block)
                stack.append(block)
                index += 2
            elif nxt == "=":
                index = _parameter(tokens, index, stack[-1], error)
            else:
                raise error(f"expected '{{' or '=' after {value!r}", index + 1)
        else:
            raise error(f"unexpected {value!r}", index)
    if len(stack) > 1:
        raise GaneshaSyntaxError(f"block {stack[-1].name!r} is not closed")
    return Parsed(root.blocks, includes)


def _parameter(
    tokens: list[tuple[str, str, int]],
    index: int,
    block: Block,
    error: Callable[[str, int], GaneshaSyntaxError],
) -> int:
    key = tokens[index][1].lower()
    values: list[str] = []
    index += 2
    while True:
        if index >= len(tokens) or tokens[index][0] not in ("string", "word"):
            raise error(f"{key}: expected a value", index)
        values.append(unquote(tokens[index][1]))
        index += 1
        separator = tokens[index][1] if index < len(tokens) else ""
        if separator == ";":
            break
        if separator != ",":
            raise error(f"{key}: expected ',' or ';'", index)
        index += 1
    if key in block.params:
        raise error(f"{key} is set twice in {block.name or 'the file'}", index)
    block.params[key] = values
    return index + 1


def parse_with_includes(path: Path, seen: set[Path] | None = None) -> list[Block]:
    """Every top-level block of `path` and the files it %includes (recursively)."""
    seen = seen if seen is not None else set()
    resolved = path.resolve()
    if resolved in seen:
        raise GaneshaSyntaxError(f"{path} is included twice")
    seen.add(resolved)
    try:
        parsed = parse(path.read_text())
    except GaneshaSyntaxError as exc:
        raise GaneshaSyntaxError(f"{path}: {exc}") from None
    blocks = list(parsed.blocks)
    for included in parsed.includes:
        blocks += parse_with_includes(included, seen)
    return blocks
