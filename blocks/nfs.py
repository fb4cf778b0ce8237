"""The NFS server storeflow manages (kernel NFS or nfs-ganesha), as a Block."""

from prefect.blocks.core import Block

from storeflow.models.config import NfsBackend, NfsSettings

__all__ = ["NfsBackend", "NfsBlock"]


class NfsBlock(Block, NfsSettings):
    """Where exports live and how they are made live; the fields are models/config.py's
    NfsSettings' own."""

    _block_type_name = "Storeflow NFS"
    _block_type_slug = "storeflow-nfs"
    _description = "The NFS server whose exports storeflow's NFS exposers manage."
