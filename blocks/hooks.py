"""Which hook drivers wrap every operation, and their Manila options, as a Block."""

from prefect.blocks.core import Block

from storeflow.models.config import HookSettings


class HookDriversBlock(Block, HookSettings):
    """Hook drivers, Manila style; the fields are models/config.py's HookSettings' own."""

    _block_type_name = "Storeflow Hook Drivers"
    _block_type_slug = "storeflow-hook-drivers"
    _description = "Hook drivers run before, after and periodically beside every operation."
