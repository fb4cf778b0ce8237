"""StoreflowConfig: everything one flow run needs to know, in one Block.

Flows take the name of a saved StoreflowConfig document (parameter
`config`); without one they build it from the environment, so the CLI and
the tests need no Prefect API to find their configuration.  Its fields are
models/config.py's Config's, each part a Block (saved documents reference them).
"""

import os

from prefect.blocks.core import Block
from pydantic import Field

from storeflow.blocks.database import DatabaseBlock
from storeflow.blocks.hooks import HookDriversBlock
from storeflow.blocks.nfs import NfsBlock
from storeflow.blocks.samba import SambaBlock
from storeflow.blocks.storage import StorageBlock
from storeflow.models.config import Config
from storeflow.models.settings import CONFIG_BLOCK_ENV


class StoreflowConfig(Block, Config):
    _block_type_name = "Storeflow Config"
    _block_type_slug = "storeflow-config"
    _description = "Storage, database and hook drivers for storeflow's flows."

    storage: StorageBlock = Field(default_factory=StorageBlock)
    database: DatabaseBlock = Field(default_factory=DatabaseBlock)
    hooks: HookDriversBlock = Field(default_factory=HookDriversBlock)
    samba: SambaBlock = Field(default_factory=SambaBlock)
    nfs: NfsBlock = Field(default_factory=NfsBlock)


def resolve_config(name: str | None = None) -> StoreflowConfig:
    """The named Block document, else $STOREFLOW_CONFIG_BLOCK, else the environment."""
    name = name or os.environ.get(CONFIG_BLOCK_ENV)
    if name:
        loaded = StoreflowConfig.load(name)
        assert isinstance(loaded, StoreflowConfig)
        return loaded
    return StoreflowConfig()
