"""Open Task Framework transfer definitions: the pydantic models and the file loader.

A definition is OTF's transfer JSON/YAML, unchanged: ``type: transfer``, one ``source``
and a list of ``destination`` entries, each naming its ``protocol``.  Every model forbids
unknown fields, so a misspelt key is an error that names it, and the JSON Schema of the
whole definition comes from :func:`definition_json_schema`.

The protocols are not listed here: a source or destination is validated by the models
its protocol's handler names (see tasks/transfer/registry.py), so a protocol installed
from another package is as valid, and as documented in the schema, as a built-in one.

Deliberate differences from OTF (its known traps, fixed on purpose):

- ``fileRegex`` must match the WHOLE file name (``re.fullmatch``).  OTF's ``re.match``
  anchors only at the start, so ``.*\\.txt`` also picked ``a.txt.tmp``.  Patterns are
  compiled with DOTALL, so ``.`` also matches a newline inside a file name.
- ``conditionals.size.gt: 0`` excludes empty files.  OTF tested the bound for truth, so a
  bound of 0 was silently ignored; here any bound that is present applies.
- A ``fileWatch`` succeeds only once the watched files have stopped growing (same size
  and mtime on two consecutive polls), so a file still being written is never taken.
- Directories are never descended into and a symlink is followed only when its target
  stays inside the source directory; a link pointing out of the tree is skipped.
- A destination ``rename`` (and a ``postCopyAction`` rename) must produce a plain file
  name: a result containing ``/``, ``\\``, NUL, or equal to ``.``/``..`` is refused, so a
  rename can never leave its directory.  Two files renamed to the same name are refused
  before anything is copied.
- ``postCopyAction`` is checked before anything moves: a missing ``move`` target
  directory is created up front (or the transfer is refused), and the action runs only
  after every destination holds every file under its final name.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    GetJsonSchemaHandler,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import core_schema

from storeflow.models.bounds import (
    MAX_DOCUMENT_BYTES,
    BoundError,
    check_document,
    parse_document,
)
from storeflow.models.errors import StoreflowError


class DefinitionError(StoreflowError, ValueError):
    """A transfer definition was rejected; ``problems`` lists ``(field path, reason)``."""

    def __init__(self, source: str, problems: list[tuple[str, str]]) -> None:
        self.source = source
        self.problems = problems
        lines = "; ".join(f"{field}: {reason}" for field, reason in problems)
        super().__init__(f"invalid transfer definition {source}: {lines}")


class _Model(BaseModel):
    """OTF spells fields in camelCase; Python code may use the snake_case names."""

    model_config = ConfigDict(
        extra="forbid",
        alias_generator=to_camel,
        validate_by_name=True,
        validate_by_alias=True,
        serialize_by_alias=True,
        frozen=True,
    )


def _check_regex(value: str) -> str:
    try:
        re.compile(value)
    except re.error as exc:
        raise ValueError(f"not a valid regular expression: {exc}") from exc
    return value


Regex = Annotated[str, Field(min_length=1)]


# -- source ------------------------------------------------------------------------------


class Bounds(_Model):
    """Exclusive bounds: ``gt`` (greater than) and ``lt`` (less than)."""

    gt: int | None = Field(None, ge=0)
    lt: int | None = Field(None, ge=0)

    def admits(self, value: float) -> bool:
        if self.gt is not None and not value > self.gt:
            return False
        return self.lt is None or value < self.lt


class CountBounds(_Model):
    min_count: int | None = Field(None, ge=0)
    max_count: int | None = Field(None, ge=0)

    @model_validator(mode="after")
    def _ordered(self) -> CountBounds:
        if (
            self.min_count is not None
            and self.max_count is not None
            and self.min_count > self.max_count
        ):
            raise ValueError("minCount is greater than maxCount")
        return self


class Conditionals(_Model):
    """``size`` in bytes, ``age`` in seconds since last modification, ``count`` of files."""

    size: Bounds | None = None
    age: Bounds | None = None
    count: CountBounds | None = None
    check_during_filewatch: bool = Field(
        False,
        description="Apply the conditionals while watching: the watch waits until the "
        "files meet them (OTF); otherwise the first matching file ends the watch and the "
        "conditionals apply afterwards",
    )


#: OTF's fileWatch timeout when none is given (seconds).
FILE_WATCH_TIMEOUT = 60


class FileWatch(_Model):
    """Wait (up to ``timeout`` seconds, OTF's 60 by default) for a file to appear and stop
    growing.

    ``directory``/``fileRegex`` default to the source's: give them to watch a separate
    trigger file.  ``watchOnly`` ends the transfer once the watch succeeds.
    """

    timeout: float = Field(FILE_WATCH_TIMEOUT, gt=0)
    directory: str | None = None
    file_regex: Regex | None = None
    watch_only: bool = False

    @field_validator("file_regex")
    @classmethod
    def _regex(cls, value: str | None) -> str | None:
        return value if value is None else _check_regex(value)


class PostCopyAction(_Model):
    """What happens to the source files once every destination has them.

    Destinations read as OTF reads them: ``move`` puts each file INTO ``destination``
    (with or without a trailing slash); ``rename`` puts the renamed file in the directory
    PART of ``destination`` (``/src/archive/`` is the folder ``archive``, ``/src/archive``
    is ``/src``), or in the source directory when no destination is given.
    """

    action: Literal["move", "delete", "rename"]
    destination: str | None = None
    pattern: Regex | None = None
    sub: str | None = None

    @model_validator(mode="after")
    def _complete(self) -> PostCopyAction:
        if self.action == "move" and not self.destination:
            raise ValueError("action 'move' needs 'destination'")
        if self.action == "rename" and (self.pattern is None or self.sub is None):
            raise ValueError("action 'rename' needs 'pattern' and 'sub'")
        if self.action == "delete" and (self.destination or self.pattern or self.sub):
            raise ValueError("action 'delete' takes no destination, pattern or sub")
        if self.pattern is not None:
            _check_regex(self.pattern)
        if self.action == "rename" and self.destination and not posixpath.dirname(self.destination):
            # OTF would rename to "/<name>" (the filesystem root): refuse instead.
            raise ValueError(
                f"rename destination {self.destination!r} has no directory part "
                "(OTF renames into the directory part: write 'DIR/')"
            )
        return self

    def target_directory(self, source_directory: str) -> str:
        """The directory the source files end up in (OTF's reading of ``destination``)."""
        if self.action == "rename":
            return posixpath.dirname(self.destination) if self.destination else source_directory
        return self.destination or source_directory


class Rename(_Model):
    """``re.sub(pattern, sub, name)`` applied to each delivered file's name."""

    pattern: Regex
    sub: str

    @field_validator("pattern")
    @classmethod
    def _regex(cls, value: str) -> str:
        return _check_regex(value)


class Encryption(_Model):
    """OTF's GPG ``encryption`` block: accepted by its schema, refused here (see below)."""

    model_config = ConfigDict(extra="allow")

    encrypt: bool = False
    decrypt: bool = False

    @model_validator(mode="after")
    def _unsupported(self) -> Encryption:
        raise ValueError(
            "GPG encryption is not supported by storeflow (encrypt or decrypt the files "
            "in a callback or an execution task)"
        )


class Permissions(_Model):
    """OTF's ``permissions`` object: ``mode``, the same as the destination's ``mode``."""

    mode: str


class Flags(_Model):
    """``fullPath``: a flag file written on the destination once delivery is complete."""

    full_path: str = Field(min_length=1)


# -- protocols ---------------------------------------------------------------------------
#
# The set of protocols is open: each one is a TransferHandler registered in the
# ``storeflow.protocols`` entry point group (see tasks/transfer/registry.py), and its
# handler names the models below (or its own subclasses of them) for its ``protocol``
# block, its source and its destination.  The definition's unions are built from what is
# registered when a definition is first validated, so a protocol installed from another
# package validates, shows in the JSON Schema and runs without a change here.


class ProtocolBlock(_Model):
    """A source's or destination's ``protocol`` object; each protocol extends it."""

    name: str = Field(min_length=1)


class SourceSpec(_Model):
    """What every protocol's source holds; a protocol narrows ``protocol`` (and may add)."""

    directory: str = Field(min_length=1)
    file_regex: Regex
    conditionals: Conditionals | None = None
    file_watch: FileWatch | None = None
    post_copy_action: PostCopyAction | None = None
    error: bool = Field(
        True,
        description="Fail when no valid file is found (none matches, count not met, file "
        "watch timed out); false: succeed quietly, as OTF does",
    )
    encryption: Encryption | None = None
    protocol: ProtocolBlock

    @field_validator("file_regex")
    @classmethod
    def _regex(cls, value: str) -> str:
        return _check_regex(value)


class DestinationSpec(_Model):
    """What every protocol's destination holds; ``mode`` only where the protocol has it."""

    directory: str = Field(min_length=1)
    create_directory_if_not_exists: bool = False
    rename: Rename | None = None
    flags: Flags | None = None
    transfer_type: Literal["push", "pull", "proxy"] | None = Field(
        None,
        description="OTF's choice of which host moves the data; storeflow always streams "
        "through the worker (OTF's 'proxy'), so every value delivers the same files",
    )
    encryption: Encryption | None = None
    protocol: ProtocolBlock

    @property
    def mode_bits(self) -> int | None:
        """Permissions for delivered files; None: the protocol's default."""
        return None


class DestinationWithMode(DestinationSpec):
    """A destination on a protocol with POSIX permissions: ``mode`` is accepted."""

    mode: str | None = Field(None, description="Octal permissions for delivered files, '0644'")
    permissions: Permissions | None = Field(
        None, description="OTF's other spelling of mode: {mode: '0644'}"
    )

    @field_validator("mode")
    @classmethod
    def _octal(cls, value: str | None) -> str | None:
        return value if value is None else _check_mode(value)

    @field_validator("permissions")
    @classmethod
    def _octal_permissions(cls, value: Permissions | None) -> Permissions | None:
        if value is not None:
            _check_mode(value.mode)
        return value

    @model_validator(mode="after")
    def _one_mode(self) -> DestinationWithMode:
        if self.mode and self.permissions and int(self.mode, 8) != int(self.permissions.mode, 8):
            raise ValueError("mode and permissions.mode differ: give one")
        return self

    @property
    def mode_bits(self) -> int | None:
        mode = self.mode or (self.permissions.mode if self.permissions else None)
        return None if mode is None else int(mode, 8)


def _check_mode(value: str) -> str:
    if not re.fullmatch(r"0?[0-7]{3,4}", value):
        raise ValueError(f"mode {value!r} is not octal permissions like '0644'")
    return value


# -- the built-in protocols' models (their handlers in tasks/transfer/ name them) ----------


class LocalProtocol(ProtocolBlock):
    name: Literal["local", "opentaskpy.remotehandlers.local.LocalTransfer"]


class LocalSource(SourceSpec):
    protocol: LocalProtocol


class LocalDestination(DestinationWithMode):
    protocol: LocalProtocol


class SMBCredentials(_Model):
    """Where and as whom to connect; the same fields as the ``SMBRemote`` block."""

    host: str = Field(min_length=1)
    port: int = Field(445, gt=0, lt=65536)
    share: str = Field(min_length=1)
    username: str = Field(min_length=1)
    password: SecretStr


class SMBProtocol(ProtocolBlock):
    """``credentials`` inline, or ``block``: the name of a saved ``SMBRemote`` block."""

    name: Literal["smb"]
    credentials: SMBCredentials | None = None
    block: str | None = None

    @model_validator(mode="after")
    def _one_source(self) -> SMBProtocol:
        if (self.credentials is None) == (self.block is None):
            raise ValueError("give exactly one of 'credentials' or 'block'")
        return self


class SMBSource(SourceSpec):
    protocol: SMBProtocol


class SMBDestination(DestinationSpec):
    """SMB has no POSIX permissions: ``mode`` is refused rather than silently ignored."""

    protocol: SMBProtocol


class NFSServer(_Model):
    """An NFSv4 export reached with libnfs (no kernel mount); same fields as ``NFSRemote``."""

    host: str = Field(min_length=1)
    port: int = Field(2049, gt=0, lt=65536)
    export: str = Field(min_length=1, description="Export (pseudo) path, e.g. /share")
    uid: int | None = Field(None, ge=0, description="AUTH_SYS uid to present")
    gid: int | None = Field(None, ge=0, description="AUTH_SYS gid to present")


class NFSProtocol(ProtocolBlock):
    """``server`` inline, or ``block``: the name of a saved ``NFSRemote`` block."""

    name: Literal["nfs"]
    server: NFSServer | None = None
    block: str | None = None

    @model_validator(mode="after")
    def _one_source(self) -> NFSProtocol:
        if (self.server is None) == (self.block is None):
            raise ValueError("give exactly one of 'server' or 'block'")
        return self


class NFSSource(SourceSpec):
    protocol: NFSProtocol


class NFSDestination(DestinationWithMode):
    protocol: NFSProtocol


# -- the definition, over every registered protocol ----------------------------------------


def protocol_name(value: Any) -> str | None:
    """The ``protocol.name`` a source/destination (a mapping or a model) gives, if any."""
    if isinstance(value, Mapping):
        protocol = value.get("protocol")
        name = protocol.get("name") if isinstance(protocol, Mapping) else None
    else:
        name = getattr(getattr(value, "protocol", None), "name", None)
    return name if isinstance(name, str) else None


def protocol_kind(value: Any) -> str | None:
    """The registered protocol (its canonical name, e.g. ``local`` for OTF's long local
    name) a source/destination names; None when it names none."""
    from storeflow.models.protocols import registry  # its handlers import this module

    name = protocol_name(value)
    return None if name is None else registry().canonical(name)


@dataclass(frozen=True)
class _AnyRegistered:
    """Marks a source or destination field: a union over the registered protocols, tagged
    by ``protocol.name``, built when pydantic first needs the schema (not at import: the
    handlers that name the models import this module)."""

    side: Literal["source", "destination"]

    def __get_pydantic_core_schema__(
        self, source_type: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        from storeflow.models.protocols import registry

        found = registry()
        if not found.protocols:
            raise StoreflowError(
                f"no transfer protocol is registered (entry point group {found.group!r}): "
                "is storeflow installed?"
            )
        return core_schema.tagged_union_schema(
            {p.name: handler.generate_schema(p.model(self.side)) for p in found.protocols},
            discriminator=protocol_kind,
            custom_error_type="unknown_protocol",
            custom_error_message=f"protocol.name must be one of: {found.describe()}",
        )

    def __get_pydantic_json_schema__(
        self, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        """The union's ``oneOf`` (each branch's ``protocol.name`` is its own protocol's
        names), and the discriminator that says so: every registered name (aliases too)
        -> its branch.  OpenAPI's ``discriminator`` names a top-level property; here the
        tag is the nested ``protocol.name``, so ``propertyName`` is that path (JSON
        Schema validators ignore the keyword; readers and form builders get the map)."""
        from storeflow.models.protocols import registry

        generated = handler(schema)
        if schema["type"] != "tagged-union":  # pragma: no cover - built above
            return generated
        # Each branch is a $ref to its model's definition: known by the model's title.
        branch_of = {
            handler.resolve_ref_schema(branch).get("title"): branch["$ref"]
            for branch in generated.get("oneOf", [])
            if "$ref" in branch
        }
        mapping: dict[str, str] = {}
        for protocol in registry().protocols:
            title = handler(schema["choices"][protocol.name]).get("title")
            if title in branch_of:
                mapping.update(dict.fromkeys(protocol.names, branch_of[title]))
        generated["discriminator"] = {"propertyName": "protocol.name", "mapping": mapping}
        return generated


#: A source of any registered protocol (statically: the common fields).
Source = Annotated[SourceSpec, _AnyRegistered("source")]
#: A destination of any registered protocol.
Destination = Annotated[DestinationSpec, _AnyRegistered("destination")]


class TransferDefinition(_Model):
    """One OTF transfer: a source and the destinations its files go to.

    As in OTF, ``destination`` may be empty: the files are found (watched, checked
    against the conditionals) and the post-copy action runs, nothing is copied.
    """

    # The protocol unions read the entry points: build on first use, not at import.
    model_config = ConfigDict(defer_build=True)

    type: Literal["transfer"]
    source: Source
    destination: list[Destination] = Field(default_factory=list)
    variables: dict[str, Any] | None = Field(
        None,
        description="OTF's task-level variables: used when the definition is rendered "
        "from a config directory, inert once it is",
    )


def definition_json_schema() -> dict[str, Any]:
    """JSON Schema (draft 2020-12) of a transfer definition, with OTF's field names."""
    return TransferDefinition.model_json_schema(by_alias=True)


def _loc(loc: tuple[int | str, ...]) -> str:
    # Drop the protocol tag pydantic inserts after a source or a destination's index
    # ("source.local.fileRegex" -> "source.fileRegex").
    parts: list[str] = []
    for index, part in enumerate(loc):
        before = loc[:index]
        if before == ("source",) or (
            len(before) == 2 and before[0] == "destination" and isinstance(before[1], int)
        ):
            continue
        parts.append(str(part))
    out = ""
    for part in parts:
        out += f"[{part}]" if part.isdigit() else (f".{part}" if out else part)
    return out or "(definition)"


def _problems(exc: ValidationError) -> list[tuple[str, str]]:
    problems = []
    for err in exc.errors():
        if err["type"] == "extra_forbidden":
            reason = "unknown field (misspelt?)"
        else:
            reason = err["msg"].removeprefix("Value error, ")
        problems.append((_loc(err["loc"]), reason))
    return problems


def parse_definition(data: Any, source: str = "<definition>") -> TransferDefinition:
    """Validate already-parsed JSON/YAML; raise DefinitionError naming every bad field."""
    try:
        check_document(data)
    except BoundError as exc:
        raise DefinitionError(source, [(exc.field or "(definition)", exc.reason)]) from None
    try:
        return TransferDefinition.model_validate(data)
    except ValidationError as exc:
        raise DefinitionError(source, _problems(exc)) from None


def read_definition_file(path: str | Path) -> Any:
    """The JSON/YAML of a ``.json``, ``.yaml`` or ``.yml`` file, as written (not validated),
    within the bounds of models/bounds.py (size, depth, UTF-8, printable, 64-bit)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".json", ".yaml", ".yml"):
        raise DefinitionError(str(path), [("(file)", "expected a .json, .yaml or .yml")])
    try:
        with path.open("rb") as file:
            raw = file.read(MAX_DOCUMENT_BYTES + 1)  # never more than the bound
    except OSError as exc:
        raise DefinitionError(str(path), [("(file)", exc.strerror or str(exc))]) from None
    try:
        return parse_document(raw, "json" if suffix == ".json" else "yaml")
    except BoundError as exc:
        raise DefinitionError(str(path), [(exc.field or "(file)", exc.reason)]) from None


def load_definition(path: str | Path) -> TransferDefinition:
    """Read and validate a ``.json``, ``.yaml`` or ``.yml`` transfer definition file."""
    return parse_definition(read_definition_file(path), str(path))
