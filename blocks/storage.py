"""Where spaces, templates and snapshots live on disk, as a Block."""

from prefect.blocks.core import Block

from storeflow.models.config import StorageSettings


class StorageBlock(Block, StorageSettings):
    """The filesystem storeflow manages: spaces, the template store, snapshots.

    The fields are models/config.py's StorageSettings' own (inherited, so the two
    never drift)."""

    _block_type_name = "Storeflow Storage"
    _block_type_slug = "storeflow-storage"
    _description = (
        "The filesystem root under which storeflow creates spaces, templates and snapshots."
    )
