"""The kernel NFS backend: one exports line per exposer in an exports.d file, made live
with `exportfs -ra` (which is also the server's only check of the file)."""

import re
from pathlib import Path
from typing import Any

from storeflow.models.errors import InvalidInput, Refused
from storeflow.models.exposers import check_host
from storeflow.tasks.exposers.backend import ConfigRejected, Foreign, run_tool
from storeflow.tasks.exposers.blocks import parse_blocks
from storeflow.tasks.exposers.configfile import ConfigEdit
from storeflow.tasks.exposers.nfs_base import SQUASH_OPTIONS, NfsBackend, foreign_name
from storeflow.tasks.exposers.smbconf import logical_lines

_PATH = re.compile(r'"(?P<path>/[^"\\\s#]*)"')
_CLIENT = re.compile(r"(?P<client>[^()\s]+)\((?P<options>[a-z0-9_=,]+)\)")
_FLAGS = {"rw", "ro", "sync", "async", "secure", "insecure", "no_subtree_check", *SQUASH_OPTIONS}
_NUMERIC = re.compile(r"(anonuid|anongid)=\d{1,5}")
_TOKEN = re.compile(r'"[^"]*"|\S+')


def client_options(rule: dict[str, Any]) -> list[str]:
    options = [
        rule["access"],
        "sync" if rule.get("sync", True) else "async",
        "secure" if rule.get("secure", True) else "insecure",
        rule["squash"],
        "no_subtree_check",
    ]
    options += [f"{key}={rule[key]}" for key in ("anonuid", "anongid") if rule.get(key) is not None]
    return options


class KernelNfsBackend(NfsBackend):
    what = "kernel NFS exports"

    @property
    def managed_path(self) -> Path:
        return self.block.exports_path

    def in_use(self) -> bool:
        return self.managed_path.parent.is_dir()

    def preflight(self) -> None:
        if not self.in_use():
            raise Refused(f"{self.managed_path.parent} does not exist: exportfs would not read it")

    def render(self, name: str, spec: dict[str, Any], path: Path, extra: dict[str, Any]) -> str:
        clients = spec.get("clients", [])
        if not clients:  # a line without clients would export to the world
            return f"# {name}: no clients, nothing exported\n"
        entries = " ".join(f"{c['client']}({','.join(client_options(c))})" for c in clients)
        return f'"{path}" {entries}\n'

    def validate(self, text: str) -> None:
        try:
            blocks = parse_blocks(text)
        except ValueError as exc:
            raise ConfigRejected(f"{self.managed_path}: {exc}") from None
        for name, block in blocks.items():
            lines = [line for line in block.splitlines() if line.strip()]
            if len(lines) == 1 and lines[0].startswith("#"):
                continue
            if len(lines) != 1:
                raise ConfigRejected(f"{self.managed_path}: block {name!r} is not one line")
            self._validate_line(name, lines[0])

    def _validate_line(self, name: str, line: str) -> None:
        where = f"{self.managed_path}: {name}"
        path, _, rest = line.partition(" ")
        if not _PATH.fullmatch(path) or not rest.strip():
            raise ConfigRejected(f"{where}: bad export path or no clients")
        for token in rest.split(" "):
            match = _CLIENT.fullmatch(token)
            if match is None:
                raise ConfigRejected(f"{where}: bad client entry {token!r}")
            try:
                check_host(match["client"])
            except ValueError as exc:
                raise ConfigRejected(f"{where}: {exc}") from None
            options = match["options"].split(",")
            bad = [o for o in options if o not in _FLAGS and not _NUMERIC.fullmatch(o)]
            if bad:
                raise ConfigRejected(f"{where}: option {bad[0]!r} is not allowed")
            squash = next((o for o in options if o in SQUASH_OPTIONS), "root_squash")
            self.check_client_policy(match["client"], squash, where)

    def check_config(self) -> None:
        """exportfs has no dry run: `exportfs -ra` in activate is the check (and a refusal
        there restores the previous file and exports it again)."""

    def activate(self, removed: list[str]) -> None:
        run_tool([str(self.block.exportfs), "-ra"], self.block.command_timeout, "exportfs -ra")

    # -- exports the admin wrote ----------------------------------------------------------

    def _admin_files(self) -> list[Path]:
        files = [p for p in self.block.main_exports if p.is_file()]
        if self.managed_path.parent.is_dir():
            files += sorted(
                p for p in self.managed_path.parent.glob("*.exports") if p != self.managed_path
            )
        return files

    def foreign(self) -> list[Foreign]:
        found: list[Foreign] = []
        taken: set[str] = set()
        for source in self._admin_files():
            for start, _end, line in logical_lines(source.read_text()):
                tokens = _TOKEN.findall(line.split("#", 1)[0])
                if not tokens:
                    continue
                path = Path(tokens[0].strip('"'))
                found.append(
                    Foreign(
                        name=foreign_name(path, taken),
                        source=source,
                        path=path,
                        options={"line": start, "clients": tokens[1:]},
                    )
                )
        return found

    def remove_foreign(self, edit: ConfigEdit, entry: Foreign) -> None:
        text = edit.read(entry.source)
        for start, end, line in logical_lines(text):
            tokens = _TOKEN.findall(line.split("#", 1)[0])
            if tokens and Path(tokens[0].strip('"')) == entry.path:
                lines = text.splitlines(keepends=True)
                edit.write(entry.source, "".join(lines[:start] + lines[end:]))
                return
        raise Refused(f"the export of {entry.path} is no longer in {entry.source}")

    def adopt_spec(self, entry: Foreign, space: str) -> dict[str, Any]:
        clients = []
        defaults: list[str] = []
        for token in entry.options.get("clients", []):
            if token.startswith("-"):
                defaults = token[1:].split(",")
                continue
            client, _, options = token.partition("(")
            clients.append(self._adopt_rule(entry, client, defaults + _options(options)))
        return {"name": entry.name, "space": space, "clients": clients}

    def _adopt_rule(self, entry: Foreign, client: str, options: list[str]) -> dict[str, Any]:
        rule: dict[str, Any] = {"client": client, "access": "ro", "squash": "root_squash"}
        for option in options:
            key, _, value = option.partition("=")
            if key in ("ro", "rw"):
                rule["access"] = key
            elif key in SQUASH_OPTIONS:
                rule["squash"] = key
            elif key in ("sync", "async", "secure", "insecure"):
                rule[key.removeprefix("a").removeprefix("in")] = not key.startswith(("a", "in"))
            elif key in ("anonuid", "anongid") and value.isdigit():
                rule[key] = int(value)
            elif key not in ("subtree_check", "no_subtree_check", "wdelay", "no_wdelay", ""):
                raise InvalidInput(
                    f"nfs-exposer.{entry.name}.{client}",
                    f"option {option!r} is not one storeflow manages; edit the export by hand",
                )
        return rule


def _options(text: str) -> list[str]:
    return [o for o in text.rstrip(")").split(",") if o]
