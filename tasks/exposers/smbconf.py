"""Reading smb.conf files and writing share sections.

Only what storeflow needs: the sections of a file (with the lines they span,
so a share can be taken out of an admin's file leaving every other byte), the
`include` lines, and the text of a section built from checked values.
"""

import re
from dataclasses import dataclass, field
from pathlib import Path

_HEADER = re.compile(r"\s*\[(?P<name>[^\]]*)\]\s*")
_OPTION = re.compile(r"\s*(?P<key>[^=]+?)\s*=\s*(?P<value>.*?)\s*")


def parameter_key(key: str) -> str:
    """Samba ignores case and spacing in parameter names."""
    return re.sub(r"\s+", " ", key.strip().lower())


@dataclass
class Section:
    name: str
    options: dict[str, str] = field(default_factory=dict)
    first_line: int = 0  # the [name] line
    end_line: int = 0  # one past the last option line

    def get(self, key: str, default: str = "") -> str:
        return self.options.get(parameter_key(key), default)


def logical_lines(text: str) -> list[tuple[int, int, str]]:
    """(first physical line, one past the last, joined text) for each logical line:
    a line ending in a backslash continues on the next."""
    physical = text.splitlines()
    result = []
    index = 0
    while index < len(physical):
        start, joined = index, physical[index]
        while joined.endswith("\\") and index + 1 < len(physical):
            index += 1
            joined = joined[:-1] + physical[index]
        index += 1
        result.append((start, index, joined))
    return result


def parse(text: str) -> list[Section]:
    """The sections of an smb.conf text; options before any header go to section ''."""
    sections = [Section("")]
    for start, end, line in logical_lines(text):
        stripped = line.strip()
        if not stripped or stripped[0] in "#;":
            continue
        header = _HEADER.fullmatch(line)
        if header:
            sections.append(Section(header["name"].strip(), first_line=start, end_line=end))
            continue
        option = _OPTION.fullmatch(line)
        if option:
            current = sections[-1]
            current.options[parameter_key(option["key"])] = option["value"]
            current.end_line = end
    return sections


def includes(text: str) -> list[Path]:
    """Every `include = FILE` of the file (the parser keeps only the last per section)."""
    found = []
    for _, _, line in logical_lines(text):
        option = _OPTION.fullmatch(line)
        if option and parameter_key(option["key"]) == "include":
            found.append(Path(option["value"]))
    return found


def remove_section(text: str, section: Section) -> str:
    """`text` without the lines of `section`; every other byte is kept."""
    lines = text.splitlines(keepends=True)
    return "".join(lines[: section.first_line] + lines[section.end_line :])


def render_section(name: str, parameters: list[tuple[str, str]]) -> str:
    """A section from values already checked to hold no line break, bracket or '%'."""
    body = "".join(f"\t{key} = {value}\n" for key, value in parameters)
    return f"[{name}]\n{body}"
