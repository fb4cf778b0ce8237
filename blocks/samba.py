"""The Samba server storeflow manages, as a Block."""

from prefect.blocks.core import Block

from storeflow.models.config import SambaSettings


class SambaBlock(Block, SambaSettings):
    """smbd's configuration and tools; the fields are models/config.py's SambaSettings'
    own."""

    _block_type_name = "Storeflow Samba"
    _block_type_slug = "storeflow-samba"
    _description = "The Samba server whose shares storeflow's CIFS exposers manage."
