"""StoreflowConfig: everything one flow run needs to know, in one Block.

Flows take the name of a saved StoreflowConfig document (parameter
`config`); without one they build it from the environment, so the CLI and
the tests need no Prefect API to find their configuration.  Its fields are
models/config.py's Config's, each part a Block (saved documents reference them).
"""

import os
from typing import Any

from prefect.blocks.core import Block, schema_extra
from prefect.exceptions import ObjectNotFound
from pydantic import ConfigDict, Field

from storeflow.blocks.database import DatabaseBlock
from storeflow.blocks.hooks import HookDriversBlock
from storeflow.blocks.nfs import NfsBlock
from storeflow.blocks.samba import SambaBlock
from storeflow.blocks.storage import StorageBlock
from storeflow.models.config import Config
from storeflow.models.settings import CONFIG_BLOCK_ENV


def _parts_required(schema: dict[str, Any], model: type[Block]) -> None:
    """Prefect's own schema extras, and the five parts required: a saved document always
    holds them, and a block reference ({"$ref": ...}, what the UI's picker and the API
    send) then matches only the reference branch of the server's parameter check
    (with every field optional it matched both, and a oneOf refused it)."""
    schema_extra(schema, model)
    schema["required"] = ["storage", "database", "hooks", "samba", "nfs"]


class StoreflowConfig(Block, Config):
    model_config = ConfigDict(extra="allow", json_schema_extra=_parts_required)

    _block_type_name = "Storeflow Config"
    _block_type_slug = "storeflow-config"
    _description = "Storage, database and hook drivers for storeflow's flows."

    storage: StorageBlock = Field(default_factory=StorageBlock)
    database: DatabaseBlock = Field(default_factory=DatabaseBlock)
    hooks: HookDriversBlock = Field(default_factory=HookDriversBlock)
    samba: SambaBlock = Field(default_factory=SambaBlock)
    nfs: NfsBlock = Field(default_factory=NfsBlock)


class ConfigNotFound(ValueError):
    """No saved StoreflowConfig document by that name (or id)."""


def load_config(name: str) -> StoreflowConfig:
    """The saved StoreflowConfig document `name`; a missing one is one clear line."""
    try:
        loaded = StoreflowConfig.load(name)
    except (ValueError, ObjectNotFound) as exc:
        raise ConfigNotFound(
            f"no saved StoreflowConfig block named {name!r} (Blocks in the UI, or "
            "`prefect block ls`)"
        ) from exc
    assert isinstance(loaded, StoreflowConfig)
    return loaded


def config_reference(config: StoreflowConfig | None) -> dict[str, Any] | None:
    """How a run's parameters name a saved config: a block reference, which the Prefect
    UI shows as the document it points at and which survives a rename of the document;
    None for a config built from the environment (a worker reads its own)."""
    if config is None or config._block_document_id is None:
        return None
    return {"$ref": {"block_document_id": str(config._block_document_id)}}


def reference_by_name(name: str) -> dict[str, Any]:
    """A block reference to the saved config `name`, for a run created through the API."""
    reference = config_reference(load_config(name))
    assert reference is not None  # a loaded document has an id
    return reference


def resolve_config(
    config: "StoreflowConfig | str | dict[str, Any] | None" = None,
) -> StoreflowConfig:
    """The config a run works with: the document itself (a flow parameter already
    hydrated), a saved document by name or by block reference ({"$ref": ...}, as a
    flow run's stored parameters hold it), else $STOREFLOW_CONFIG_BLOCK, else the
    environment."""
    if isinstance(config, StoreflowConfig):
        return config
    if isinstance(config, dict):
        ref = config.get("$ref")
        if not isinstance(ref, dict):
            raise ConfigNotFound(f"config: not a block reference: {config!r}")
        try:
            loaded = StoreflowConfig.load_from_ref(ref)
        except (ValueError, ObjectNotFound) as exc:
            raise ConfigNotFound(f"config: no saved StoreflowConfig block {ref}") from exc
        assert isinstance(loaded, StoreflowConfig)
        return loaded
    name = config or os.environ.get(CONFIG_BLOCK_ENV)
    if name:
        return load_config(name)
    return StoreflowConfig()
