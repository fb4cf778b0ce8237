"""What users ask for when they expose a space over CIFS (Samba) or NFS.

Everything here ends up in a server configuration file, where one stray
character is an injected section or export. So every value is checked
against a strict, ASCII-only pattern or a typed allow-list *before* any file
is touched, and the checks live in the types: a spec that validates can be
rendered without further escaping. Checks that need the configuration (is
`*` allowed? does the name clash with a share the admin wrote?) are made by
the operations in tasks/exposers.
"""

import ipaddress
import re
from collections.abc import Callable
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, field_validator, model_validator

# MigrationMode is a setting of the exposer backends (models/config.py); kept importable here.
from storeflow.models.config import MigrationMode as MigrationMode
from storeflow.models.names import ResourceName, check_name
from storeflow.models.schemas import Spec

# -- names ----------------------------------------------------------------------------

# Samba treats these sections specially; a share may not take their name, in any case.
RESERVED_SHARE_NAMES = frozenset({"global", "homes", "printers", "ipc$", "print$"})


def check_share_name(value: str) -> str:
    check_name(value)
    if value.lower() in RESERVED_SHARE_NAMES:
        raise ValueError(f"{value!r} is reserved by Samba and cannot name a share")
    return value


ShareName = Annotated[str, AfterValidator(check_share_name)]

_PRINCIPAL = re.compile(r"@?[A-Za-z_][A-Za-z0-9_.-]{0,31}")


def check_principal(value: str) -> str:
    if not _PRINCIPAL.fullmatch(value):
        raise ValueError(
            f"{value!r} is not a user or @group: use ASCII letters, digits, '_', '.', '-' "
            "(at most 32), starting with a letter or '_'"
        )
    return value


Principal = Annotated[str, AfterValidator(check_principal)]

_HOSTNAME = re.compile(
    r"(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*"
)
EVERYONE = "*"


def check_host(value: str) -> str:
    """An IP address, a network (CIDR), a host name, or `*` (allowed only where the
    block says so); normalised, so `10.0.0.0/255.0.0.0` and `10.0.0.0/8` are one."""
    if value == EVERYONE:
        return value
    try:
        if "/" in value:
            return str(ipaddress.ip_network(value, strict=True))
        return str(ipaddress.ip_address(value))
    except ValueError:
        pass
    if _HOSTNAME.fullmatch(value) and not value.replace(".", "").isdigit():
        return value.lower()
    raise ValueError(f"{value!r} is not an IP address, a network like 10.0.0.0/24, or a host name")


Host = Annotated[str, AfterValidator(check_host)]

_TEXT = re.compile(r"[A-Za-z0-9 ._,:()/+-]{0,200}")


def check_text(value: str) -> str:
    if not _TEXT.fullmatch(value) or value != value.strip():
        raise ValueError(
            "use at most 200 ASCII letters, digits, spaces and . _ , : ( ) / + -; "
            "no line breaks, brackets, '%', ';' or '#'"
        )
    return value


Text = Annotated[str, AfterValidator(check_text)]


def unique(values: list[str], what: str) -> list[str]:
    seen: set[str] = set()
    for value in values:
        if value.lower() in seen:
            raise ValueError(f"{what} {value!r} is given twice")
        seen.add(value.lower())
    return values


# -- CIFS option allow-list ---------------------------------------------------------------


def _yes_no(value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in (
        "yes",
        "true",
        "on",
        "1",
        "no",
        "false",
        "off",
        "0",
    ):
        return value.lower() in ("yes", "true", "on", "1")
    raise ValueError("must be yes or no")


def _mode(value: object) -> str:
    text = str(value) if isinstance(value, str | int) and not isinstance(value, bool) else ""
    if not re.fullmatch(r"0?[0-7]{3,4}", text, re.ASCII) or int(text, 8) > 0o7777:
        raise ValueError("must be an octal mode like 0660")
    return f"{int(text, 8):04o}"


def _int_range(low: int, high: int) -> Callable[[object], int]:
    def parse(value: object) -> int:
        if isinstance(value, bool) or not isinstance(value, int | str):
            raise ValueError(f"must be a whole number from {low} to {high}")
        text = str(value)
        # ASCII digits only (str.isdigit takes '²' and Arabic-Indic digits too).
        if not (text.isascii() and text.isdigit()) or not low <= int(text) <= high:
            raise ValueError(f"must be a whole number from {low} to {high}")
        return int(text)

    return parse


def _one_of(*choices: str) -> Callable[[object], str]:
    def parse(value: object) -> str:
        if not isinstance(value, str) or value.lower() not in choices:
            raise ValueError(f"must be one of {', '.join(choices)}")
        return value.lower()

    return parse


def _name_value(value: object) -> str:
    if not isinstance(value, str):
        raise ValueError("must be a user or group name")
    return check_principal(value.removeprefix("@"))


# The share parameters an admin may set, each with its type. Anything that runs
# commands, changes the path, includes files or loads modules is absent on purpose;
# first-class fields (read only, browseable, ...) have their own spec fields.
CIFS_OPTIONS: dict[str, Callable[[object], bool | int | str]] = {
    "create mask": _mode,
    "directory mask": _mode,
    "force create mode": _mode,
    "force directory mode": _mode,
    "force user": _name_value,
    "force group": _name_value,
    "inherit permissions": _yes_no,
    "inherit acls": _yes_no,
    "inherit owner": _one_of("no", "windows and unix", "unix only"),
    "ea support": _yes_no,
    "store dos attributes": _yes_no,
    "nt acl support": _yes_no,
    "map archive": _yes_no,
    "map hidden": _yes_no,
    "map system": _yes_no,
    "map readonly": _one_of("yes", "no", "permissions"),
    "oplocks": _yes_no,
    "level2 oplocks": _yes_no,
    "strict locking": _one_of("auto", "yes", "no"),
    "strict sync": _yes_no,
    "case sensitive": _one_of("auto", "yes", "no"),
    "preserve case": _yes_no,
    "hide dot files": _yes_no,
    "hide unreadable": _yes_no,
    "access based share enum": _yes_no,
    "max connections": _int_range(0, 65535),
    "smb encrypt": _one_of("default", "off", "if_required", "desired", "required"),
    "csc policy": _one_of("manual", "documents", "programs", "disable"),
}
# Spec fields that render a parameter themselves: setting them as options is refused.
CIFS_FIELD_PARAMETERS = {
    "path": "space",
    "read only": "read_only",
    "writable": "read_only",
    "writeable": "read_only",
    "browseable": "browseable",
    "browsable": "browseable",
    "comment": "comment",
    "valid users": "access",
    "invalid users": "access",
    "read list": "access",
    "write list": "access",
    "hosts allow": "hosts_allow",
    "hosts deny": "hosts_deny",
    "guest ok": "guest_ok",
}


def option_key(key: str) -> str:
    """Samba ignores case, spaces and underscores in parameter names: so do we."""
    squashed = re.sub(r"[\s_]+", "", key).lower()
    for known in (*CIFS_OPTIONS, *CIFS_FIELD_PARAMETERS):
        if known.replace(" ", "") == squashed:
            return known
    raise ValueError(f"{key!r} is not a share parameter storeflow manages")


OptionValue = bool | int | str


def check_cifs_options(options: dict[str, Any], allow_none: bool) -> dict[str, Any]:
    checked: dict[str, Any] = {}
    for raw_key, value in options.items():
        if not isinstance(raw_key, str) or not raw_key.isascii() or len(raw_key) > 64:
            raise ValueError(f"{raw_key!r} is not a share parameter storeflow manages")
        key = option_key(raw_key)
        if key in CIFS_FIELD_PARAMETERS:
            raise ValueError(f"{key!r} is set with the {CIFS_FIELD_PARAMETERS[key]!r} field")
        if key in checked:
            raise ValueError(f"{key!r} is given twice")
        if value is None and allow_none:
            checked[key] = None  # the seed's updater: None unsets the option
            continue
        try:
            checked[key] = CIFS_OPTIONS[key](value)
        except ValueError as exc:
            raise ValueError(f"option {key!r}: {exc}") from None
    return checked


# -- CIFS specs -----------------------------------------------------------------------------

AccessLevel = Literal["ro", "rw"]


class CifsAccessRule(Spec):
    """Manila's allow_access for a CIFS share: a user or @group, read-only or read-write."""

    to: Principal = Field(description="User name, or @group.")
    level: AccessLevel = Field("rw", description="ro or rw.")


def _rules_unique(rules: list[Any], what: str) -> list[Any]:
    unique([rule.to if hasattr(rule, "to") else rule.client for rule in rules], what)
    return rules


class CifsExposerSpec(Spec):
    name: ShareName = Field(description="Share name (unique, case-insensitively).")
    space: ResourceName = Field(description="The space whose directory is shared.")
    comment: Text = Field("", description="Shown to clients browsing the server.")
    read_only: bool = Field(False, description="Refuse every write.")
    browseable: bool = Field(True, description="Listed when clients browse the server.")
    guest_ok: bool = Field(False, description="Guests may connect (only if the block allows).")
    access: list[CifsAccessRule] = Field(
        default_factory=list,
        description="Who may connect ('valid users'); empty: every authenticated user.",
    )
    denied: list[Principal] = Field(default_factory=list, description="'invalid users'.")
    hosts_allow: list[Host] = Field(default_factory=list, description="'hosts allow'.")
    hosts_deny: list[Host] = Field(default_factory=list, description="'hosts deny'.")
    options: dict[str, OptionValue] = Field(
        default_factory=dict, description="Other share parameters, from an allow-list."
    )

    @field_validator("access")
    @classmethod
    def _access_unique(cls, value: list[CifsAccessRule]) -> list[CifsAccessRule]:
        return _rules_unique(value, "access rule for")

    @field_validator("denied", "hosts_allow", "hosts_deny")
    @classmethod
    def _unique(cls, value: list[str]) -> list[str]:
        return unique(value, "entry")

    @field_validator("hosts_allow", "hosts_deny")
    @classmethod
    def _no_everyone(cls, value: list[str]) -> list[str]:
        if EVERYONE in value:
            raise ValueError("'*' is not a host; leave hosts_allow empty to allow every host")
        return value

    @field_validator("options", mode="before")
    @classmethod
    def _options(cls, value: Any) -> Any:
        return check_cifs_options(value, allow_none=False) if isinstance(value, dict) else value

    @model_validator(mode="after")
    def _not_both(self) -> "CifsExposerSpec":
        both = {r.to.lower() for r in self.access} & {d.lower() for d in self.denied}
        if both:
            raise ValueError(f"{sorted(both)[0]!r} is both allowed and denied")
        return self


class CifsExposerUpdate(Spec):
    """Changes to a share; fields left out stay as they are (None in options unsets)."""

    rename: ShareName | None = None
    comment: Text | None = None
    read_only: bool | None = None
    browseable: bool | None = None
    guest_ok: bool | None = None
    hosts_allow: list[Host] | None = None
    hosts_deny: list[Host] | None = None
    options: dict[str, OptionValue | None] | None = None

    @field_validator("options", mode="before")
    @classmethod
    def _options(cls, value: Any) -> Any:
        return check_cifs_options(value, allow_none=True) if isinstance(value, dict) else value


# -- NFS specs ---------------------------------------------------------------------------

Squash = Literal["root_squash", "no_root_squash", "all_squash"]
_PSEUDO = re.compile(r"(/[A-Za-z0-9][A-Za-z0-9_.-]{0,62}){1,8}")


class NfsClientRule(Spec):
    """One client of an export and its options (Manila's allow_access for NFS)."""

    client: Host = Field(description="IP, network (CIDR) or host name; '*' if allowed.")
    access: AccessLevel = Field("ro", description="ro or rw.")
    squash: Squash = Field("root_squash", description="no_root_squash only if allowed.")
    sync: bool = Field(True, description="Kernel backend: sync (else async).")
    secure: bool = Field(True, description="Kernel backend: require a port below 1024.")
    anonuid: Annotated[int, Field(ge=0, le=65535)] | None = None
    anongid: Annotated[int, Field(ge=0, le=65535)] | None = None


def check_pseudo(value: str) -> str:
    if not _PSEUDO.fullmatch(value) or any(p in ("..", ".") for p in value.split("/")):
        raise ValueError(f"{value!r} is not a pseudo path like /projects/alpha")
    return value


PseudoPath = Annotated[str, AfterValidator(check_pseudo)]


class NfsExposerSpec(Spec):
    name: ResourceName = Field(description="Exposer name.")
    space: ResourceName = Field(description="The space whose directory is exported.")
    clients: list[NfsClientRule] = Field(
        default_factory=list, description="Who may mount it; empty: nobody."
    )
    pseudo: PseudoPath | None = Field(None, description="ganesha: NFSv4 path; default /NAME.")

    @field_validator("clients")
    @classmethod
    def _clients_unique(cls, value: list[NfsClientRule]) -> list[NfsClientRule]:
        return _rules_unique(value, "client")


class NfsExposerUpdate(Spec):
    rename: ResourceName | None = None
    clients: list[NfsClientRule] | None = None
    pseudo: PseudoPath | None = None

    @field_validator("clients")
    @classmethod
    def _clients_unique(cls, value: list[NfsClientRule] | None) -> list[NfsClientRule] | None:
        return None if value is None else _rules_unique(value, "client")


# Spelled like the CLI and the flows name them.
Protocol = Literal["cifs", "nfs"]
