"""The nfs-ganesha backend: EXPORT blocks in a file the main ganesha.conf %includes,
checked by storeflow's own parser (ganesha has no check) and made live with SIGHUP."""

import os
import signal
from pathlib import Path
from typing import Any

from storeflow.models.errors import InvalidInput, Refused
from storeflow.models.exposers import check_host, check_pseudo
from storeflow.tasks.exposers import ganesha_conf
from storeflow.tasks.exposers.backend import ActivationFailed, ConfigRejected, Foreign
from storeflow.tasks.exposers.blocks import parse_blocks
from storeflow.tasks.exposers.configfile import ConfigEdit
from storeflow.tasks.exposers.ganesha_conf import Block, GaneshaSyntaxError
from storeflow.tasks.exposers.nfs_base import NfsBackend, foreign_name

SQUASH = {
    "root_squash": "Root_Squash",
    "no_root_squash": "No_Root_Squash",
    "all_squash": "All_Squash",
}
ACCESS = {"ro": "RO", "rw": "RW"}
# What storeflow writes, and so all its validator accepts: key -> allowed values (None: checked
# separately).
_EXPORT_KEYS: dict[str, set[str] | None] = {
    "export_id": None,
    "path": None,
    "pseudo": None,
    "access_type": {"None"},
    "squash": {"Root_Squash"},
    "protocols": {"4"},
    "transports": {"TCP"},
    "sectype": {"sys"},
}
_CLIENT_KEYS: dict[str, set[str] | None] = {
    "clients": None,
    "access_type": set(ACCESS.values()),
    "squash": set(SQUASH.values()),
    "anonymous_uid": None,
    "anonymous_gid": None,
}


def pseudo_of(name: str, spec: dict[str, Any]) -> str:
    return str(spec.get("pseudo") or f"/{name}")


class GaneshaBackend(NfsBackend):
    what = "nfs-ganesha EXPORT blocks (included from ganesha.conf)"

    @property
    def managed_path(self) -> Path:
        return self.block.ganesha_exports_path

    def in_use(self) -> bool:
        try:
            parsed = ganesha_conf.parse(self.block.ganesha_config.read_text())
        except (OSError, GaneshaSyntaxError):
            return False
        include = self.managed_path.resolve()
        return any(p.resolve() == include for p in parsed.includes)

    def preflight(self) -> None:
        if not self.in_use():
            raise Refused(
                f"{self.block.ganesha_config} does not %include {self.managed_path}: add "
                f'%include "{self.managed_path}" to it'
            )

    def clash_key(self, name: str, spec: dict[str, Any]) -> str:
        return pseudo_of(name, spec)

    # -- blocks -------------------------------------------------------------------------

    def _all_ids(self, blocks: dict[str, str]) -> set[int]:
        ids = set()
        for block in self._main_exports():
            if (value := block.value("export_id")) and value.isdigit():
                ids.add(int(value))
        for text in blocks.values():
            ids |= {int(v) for v in _export_ids(text)}
        return ids

    def prepare(
        self, spec: dict[str, Any], blocks: dict[str, str], previous: str | None
    ) -> dict[str, Any]:
        # An export keeps its Export_Id: NFS file handles carry it, so mounts survive updates.
        kept = _export_ids(previous) if previous else []
        if kept:
            return {"export_id": int(kept[0])}
        taken = self._all_ids(blocks)
        export_id = self.block.first_export_id
        while export_id in taken:
            export_id += 1
        return {"export_id": export_id}

    def render(self, name: str, spec: dict[str, Any], path: Path, extra: dict[str, Any]) -> str:
        lines = [
            "EXPORT {",
            f"\tExport_Id = {extra['export_id']};",
            f'\tPath = "{path}";',
            f'\tPseudo = "{pseudo_of(name, spec)}";',
            "\tAccess_Type = None;",  # nobody but the clients below
            "\tSquash = Root_Squash;",
            "\tProtocols = 4;",
            "\tTransports = TCP;",
            "\tSecType = sys;",
            "\tFSAL { Name = VFS; }",
        ]
        for rule in spec.get("clients", []):
            lines += [
                "\tCLIENT {",
                f"\t\tClients = {rule['client']};",
                f"\t\tAccess_Type = {ACCESS[rule['access']]};",
                f"\t\tSquash = {SQUASH[rule['squash']]};",
            ]
            if rule.get("anonuid") is not None:
                lines.append(f"\t\tAnonymous_Uid = {rule['anonuid']};")
            if rule.get("anongid") is not None:
                lines.append(f"\t\tAnonymous_Gid = {rule['anongid']};")
            lines.append("\t}")
        return "\n".join([*lines, "}"]) + "\n"

    def validate(self, text: str) -> None:
        """Each block is one EXPORT with only what storeflow writes, values checked again."""
        try:
            blocks = parse_blocks(text)
        except ValueError as exc:
            raise ConfigRejected(f"{self.managed_path}: {exc}") from None
        for name, block_text in blocks.items():
            where = f"{self.managed_path}: {name}"
            try:
                parsed = ganesha_conf.parse(block_text)
            except GaneshaSyntaxError as exc:
                raise ConfigRejected(f"{where}: {exc}") from None
            if len(parsed.blocks) != 1 or parsed.blocks[0].name != "EXPORT" or parsed.includes:
                raise ConfigRejected(f"{where}: not exactly one EXPORT block")
            self._validate_export(parsed.blocks[0], where)

    def _validate_export(self, export: Block, where: str) -> None:
        _check_keys(export, _EXPORT_KEYS, where)
        export_id, path, pseudo = (export.value(k) or "" for k in ("export_id", "path", "pseudo"))
        if not export_id.isdigit() or not 0 < int(export_id) < 65536:
            raise ConfigRejected(f"{where}: bad Export_Id {export_id!r}")
        if not path.startswith("/") or any(c in path for c in '\n\r\0"\\{};#'):
            raise ConfigRejected(f"{where}: bad Path {path!r}")
        try:
            check_pseudo(pseudo)
        except ValueError as exc:
            raise ConfigRejected(f"{where}: {exc}") from None
        fsal = export.children("FSAL")
        if len(fsal) != 1 or fsal[0].params != {"name": ["VFS"]} or fsal[0].blocks:
            raise ConfigRejected(f"{where}: FSAL must be VFS")
        for client in export.children("CLIENT"):
            _check_keys(client, _CLIENT_KEYS, where)
            for host in client.params.get("clients", []):
                try:
                    check_host(host)
                except ValueError as exc:
                    raise ConfigRejected(f"{where}: {exc}") from None
                self.check_client_policy(host, client.value("squash") or "", where)
            for key in ("anonymous_uid", "anonymous_gid"):
                value = client.value(key)
                if value is not None and not (value.isdigit() and int(value) <= 65535):
                    raise ConfigRejected(f"{where}: bad {key} {value!r}")
        if len(export.blocks) != 1 + len(export.children("CLIENT")):
            raise ConfigRejected(f"{where}: unexpected sub-block")

    def check_config(self) -> None:
        """Parse everything ganesha will read; Export_Id and Pseudo must be unique."""
        try:
            blocks = ganesha_conf.parse_with_includes(self.block.ganesha_config)
        except (OSError, GaneshaSyntaxError) as exc:
            raise ConfigRejected(f"ganesha configuration: {exc}") from None
        seen: dict[str, str] = {}
        for export in (b for b in blocks if b.name.upper() == "EXPORT"):
            for key in ("export_id", "pseudo"):
                value = f"{key}={export.value(key)}"
                if value in seen:
                    raise ConfigRejected(f"ganesha configuration: {value} is used twice")
                seen[value] = key

    def activate(self, removed: list[str]) -> None:
        pidfile = self.block.ganesha_pidfile
        try:
            pid = int(pidfile.read_text().strip())
            os.kill(pid, signal.SIGHUP)
        except (OSError, ValueError) as exc:
            raise ActivationFailed(f"cannot signal ganesha (pid file {pidfile}): {exc}") from None

    # -- exports the admin wrote ----------------------------------------------------------

    def _main_exports(self) -> list[Block]:
        try:
            parsed = ganesha_conf.parse(self.block.ganesha_config.read_text())
        except (OSError, GaneshaSyntaxError):
            return []
        return [b for b in parsed.blocks if b.name.upper() == "EXPORT"]

    def foreign(self) -> list[Foreign]:
        taken: set[str] = set()
        found = []
        for block in self._main_exports():
            pseudo, path = block.value("pseudo"), block.value("path")
            found.append(
                Foreign(
                    name=foreign_name(pseudo or path or "export", taken),
                    source=self.block.ganesha_config,
                    path=Path(path) if path else None,
                    options={"export_id": block.value("export_id"), "pseudo": pseudo},
                )
            )
        return found

    def remove_foreign(self, edit: ConfigEdit, entry: Foreign) -> None:
        text = edit.read(entry.source)
        for block in ganesha_conf.parse(text).blocks:
            if block.name.upper() == "EXPORT" and block.value("export_id") == entry.options.get(
                "export_id"
            ):
                end = block.end + 1 if text[block.end : block.end + 1] == "\n" else block.end
                edit.write(entry.source, text[: block.start] + text[end:])
                return
        raise Refused(f"export {entry.name!r} is no longer in {entry.source}")

    def adopt_spec(self, entry: Foreign, space: str) -> dict[str, Any]:
        block = next(
            (
                b
                for b in self._main_exports()
                if b.value("export_id") == entry.options.get("export_id")
            ),
            None,
        )
        if block is None:
            raise Refused(f"export {entry.name!r} is no longer in {entry.source}")
        clients = []
        default_access = (block.value("access_type") or "None").upper()
        default_squash = (block.value("squash") or "Root_Squash").lower()
        for client in block.children("CLIENT"):
            access = (client.value("access_type") or default_access).lower()
            squash = (client.value("squash") or default_squash).lower()
            if access not in ACCESS or squash not in SQUASH:
                raise InvalidInput(
                    f"nfs-exposer.{entry.name}.CLIENT",
                    f"Access_Type {access!r} / Squash {squash!r} cannot be expressed; "
                    "edit the export by hand",
                )
            for host in client.params.get("clients", []):
                clients.append({"client": host, "access": access, "squash": squash})
        return {
            "name": entry.name,
            "space": space,
            "clients": clients,
            "pseudo": entry.options["pseudo"],
        }


def _export_ids(text: str) -> list[str]:
    try:
        parsed = ganesha_conf.parse(text)
    except GaneshaSyntaxError:
        return []
    return [v for b in parsed.blocks if (v := b.value("export_id"))]


def _check_keys(block: Block, allowed: dict[str, set[str] | None], where: str) -> None:
    for key, values in block.params.items():
        if key not in allowed:
            raise ConfigRejected(f"{where}: {block.name} parameter {key!r} is not allowed")
        choices = allowed[key]
        if choices is not None and (len(values) != 1 or values[0] not in choices):
            raise ConfigRejected(f"{where}: {block.name} {key} = {values!r} is not allowed")
