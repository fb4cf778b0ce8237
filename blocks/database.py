"""The resource database, as a Block."""

from prefect.blocks.core import Block

from storeflow.models.config import DatabaseSettings


class DatabaseBlock(Block, DatabaseSettings):
    """SQLAlchemy URL of the resource database (SQLite file or PostgreSQL); the fields
    are models/config.py's DatabaseSettings' own."""

    _block_type_name = "Storeflow Database"
    _block_type_slug = "storeflow-database"
    _description = "SQLAlchemy URL of storeflow's resource database."
