"""The Samba backend: share sections in an include file, testparm, smbcontrol."""

import re
from pathlib import Path
from typing import Any

from storeflow.blocks.samba import SambaBlock
from storeflow.models.errors import InvalidInput, NameTaken, Refused
from storeflow.models.exposers import (
    CIFS_FIELD_PARAMETERS,
    CIFS_OPTIONS,
    RESERVED_SHARE_NAMES,
    MigrationMode,
    check_share_name,
    option_key,
)
from storeflow.tasks.exposers import smbconf
from storeflow.tasks.exposers.backend import Backend, ConfigRejected, Foreign, run_tool
from storeflow.tasks.exposers.blocks import parse_blocks
from storeflow.tasks.exposers.configfile import ConfigEdit

KIND = "cifs-exposer"
# What a rendered value may hold: no line break, bracket, '%' (Samba substitutes
# %U and friends) or comment character; paths also allow '/'.
_SAFE_VALUE = re.compile(r"[A-Za-z0-9 _.,:()/+@-]*")


def yes_no(value: bool) -> str:
    return "yes" if value else "no"


def option_text(value: bool | int | str) -> str:
    return yes_no(value) if isinstance(value, bool) else str(value)


def _words(value: str) -> list[str]:
    return [w for w in re.split(r"[\s,]+", value) if w]


class SambaBackend(Backend):
    kind = KIND
    what = "Samba shares (included from smb.conf)"

    def __init__(self, block: SambaBlock) -> None:
        self.block = block

    @property
    def managed_path(self) -> Path:
        return self.block.include_path

    @property
    def migration_mode(self) -> MigrationMode:
        return self.block.migration_mode

    # -- set-up checks ----------------------------------------------------------------

    def _main_text(self) -> str:
        try:
            return self.block.config_path.read_text()
        except FileNotFoundError:
            return ""

    def in_use(self) -> bool:
        include = self.managed_path.resolve()
        return any(p.resolve() == include for p in smbconf.includes(self._main_text()))

    def preflight(self) -> None:
        if not self.block.config_path.is_file():
            raise Refused(f"Samba configuration {self.block.config_path} does not exist")
        if not self.in_use():
            raise Refused(
                f"{self.block.config_path} does not include {self.managed_path}: add "
                f"'include = {self.managed_path}' at the end of its [global] section"
            )

    def check_rule_policy(self, spec: dict[str, Any]) -> None:
        if spec.get("guest_ok") and not self.block.allow_guest:
            raise InvalidInput("cifs-exposer.guest_ok", "guest access is not allowed here")

    # -- the section ---------------------------------------------------------------------

    def render(self, name: str, spec: dict[str, Any], path: Path, extra: dict[str, Any]) -> str:
        read_only = bool(spec.get("read_only"))
        rules = spec.get("access", [])
        params: list[tuple[str, str]] = [("path", str(path))]
        if spec.get("comment"):
            params.append(("comment", spec["comment"]))
        params += [
            ("read only", yes_no(read_only)),
            ("browseable", yes_no(spec.get("browseable", True))),
            ("guest ok", yes_no(bool(spec.get("guest_ok")))),
        ]
        if rules:
            params.append(("valid users", " ".join(r["to"] for r in rules)))
        if spec.get("denied"):
            params.append(("invalid users", " ".join(spec["denied"])))
        # A read-only share is read-only for everyone; on a writable one, ro rules are
        # the 'read list'.
        read_list = [r["to"] for r in rules if r["level"] == "ro"]
        if read_list and not read_only:
            params.append(("read list", " ".join(read_list)))
        for key in ("hosts_allow", "hosts_deny"):
            if spec.get(key):
                params.append((key.replace("_", " "), " ".join(spec[key])))
        params += [(key, option_text(value)) for key, value in spec.get("options", {}).items()]
        return smbconf.render_section(name, params)

    def validate(self, text: str) -> None:
        """Every block is exactly one share section of allowed parameters and safe values."""
        allowed = set(CIFS_OPTIONS) | set(CIFS_FIELD_PARAMETERS)
        try:
            blocks = parse_blocks(text)
        except ValueError as exc:
            raise ConfigRejected(f"{self.managed_path}: {exc}") from None
        for name, block in blocks.items():
            sections = [s for s in smbconf.parse(block) if s.name or s.options]
            if len(sections) != 1 or sections[0].name != name:
                raise ConfigRejected(f"{self.managed_path}: block {name!r} is not one section")
            try:
                check_share_name(name)
            except ValueError as exc:
                raise ConfigRejected(f"{self.managed_path}: {exc}") from None
            for key, value in sections[0].options.items():
                if key not in allowed or not _SAFE_VALUE.fullmatch(value):
                    raise ConfigRejected(
                        f"{self.managed_path}: [{name}] {key} = {value!r} is not allowed"
                    )
            body = block.splitlines()[1:]
            if any(line.count("=") != 1 or "[" in line or "]" in line for line in body):
                raise ConfigRejected(f"{self.managed_path}: [{name}] has a malformed line")

    def check_config(self) -> None:
        run_tool(
            [str(self.block.testparm), "-s", str(self.block.config_path)],
            self.block.command_timeout,
            "testparm",
        )

    def activate(self, removed: list[str]) -> None:
        base = [str(self.block.smbcontrol), "-s", str(self.block.config_path), "smbd"]
        timeout = self.block.command_timeout
        run_tool([*base, "reload-config"], timeout, "smbcontrol reload-config")
        for name in removed:  # reload keeps open sessions; close-share ends them
            run_tool([*base, "close-share", name], timeout, "smbcontrol close-share")

    # -- shares the admin wrote -------------------------------------------------------------

    def foreign(self) -> list[Foreign]:
        found = []
        for section in smbconf.parse(self._main_text()):
            if not section.name or section.name.lower() in RESERVED_SHARE_NAMES:
                continue
            path = section.get("path")
            found.append(
                Foreign(
                    name=section.name,
                    source=self.block.config_path,
                    path=Path(path) if path else None,
                    options=dict(section.options),
                )
            )
        return found

    def remove_foreign(self, edit: ConfigEdit, entry: Foreign) -> None:
        text = edit.read(self.block.config_path)
        for section in smbconf.parse(text):
            if section.name.lower() == entry.name.lower():
                edit.write(self.block.config_path, smbconf.remove_section(text, section))
                return
        raise Refused(f"share {entry.name!r} is no longer in {self.block.config_path}")

    def adopt_spec(self, entry: Foreign, space: str) -> dict[str, Any]:
        """The share as a CIFS exposer spec; a parameter storeflow cannot express refuses."""
        spec: dict[str, Any] = {"name": entry.name, "space": space, "options": {}}
        opts = dict(entry.options)
        opts.pop("path", None)
        valid, read_list = _words(opts.pop("valid users", "")), _words(opts.pop("read list", ""))
        if opts.get("write list"):
            raise InvalidInput(
                f"cifs-exposer.{entry.name}.write list",
                "not expressible (storeflow's read-only shares are read-only for all); "
                "edit the share by hand",
            )
        for key, value in opts.items():
            field = f"cifs-exposer.{entry.name}.{key}"
            try:
                canonical = option_key(key)
            except ValueError as exc:
                raise InvalidInput(field, f"{exc}; edit or remove the share by hand") from None
            if canonical in ("read only", "writable", "writeable"):
                ro = value.lower() in ("yes", "true", "1")
                spec["read_only"] = ro if canonical == "read only" else not ro
            elif canonical in ("browseable", "browsable", "guest ok"):
                key_name = "guest_ok" if canonical == "guest ok" else "browseable"
                spec[key_name] = value.lower() in ("yes", "true", "1")
            elif canonical == "comment":
                spec["comment"] = value
            elif canonical == "invalid users":
                spec["denied"] = _words(value)
            elif canonical in ("hosts allow", "hosts deny"):
                spec[canonical.replace(" ", "_")] = _words(value)
            else:
                spec["options"][canonical] = value
        read_only = spec.get("read_only", True)  # Samba's default
        spec["read_only"] = read_only
        spec["access"] = [
            {"to": who, "level": "ro" if who in read_list or read_only else "rw"} for who in valid
        ]
        return spec

    def clashes(self, name: str, spec: dict[str, Any], others: dict[str, dict[str, Any]]) -> None:
        # smbd matches share names case-insensitively: Data and data are one share.
        for other in others:
            if other.lower() == name.lower():
                raise NameTaken(f"a share named {other!r} already exists")
