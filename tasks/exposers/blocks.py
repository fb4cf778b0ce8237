"""The files storeflow owns: one block per exposer, each under a marker line.

    # Managed by storeflow ...
    # storeflow-exposer: NAME
    <the block: an smb.conf section, an exports line or a ganesha EXPORT block>

The marker is a comment in all three formats, so the file stays a valid
configuration file while storeflow can still tell whose each block is. An
access-rule change replaces one block and leaves every other byte alone.
"""

MARKER = "# storeflow-exposer: "


class ManagedFileError(ValueError):
    """The managed file was edited by hand into something storeflow cannot read."""


def header(what: str) -> str:
    return (
        f"# Managed by storeflow: {what}, one block per exposer.\n"
        "# Do not edit: storeflow rewrites this file from its database (reconcile).\n"
    )


def parse_blocks(text: str) -> dict[str, str]:
    """Marker name -> block text (ending in one newline), in file order."""
    blocks: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in text.splitlines(keepends=True):
        if line.startswith(MARKER):
            name = line[len(MARKER) :].strip()
            if not name or name in blocks:
                raise ManagedFileError(f"bad or repeated marker line {line.strip()!r}")
            current = blocks[name] = []
        elif current is not None:
            current.append(line)
        elif line.strip() and not line.startswith("#"):
            raise ManagedFileError(f"text outside any block: {line.strip()!r}")
    return {name: "".join(lines).rstrip("\n") + "\n" for name, lines in blocks.items()}


def render_blocks(what: str, blocks: dict[str, str]) -> str:
    body = "".join(f"\n{MARKER}{name}\n{block}" for name, block in blocks.items())
    return header(what) + body
