"""The resource database."""

from prefect.blocks.core import Block
from pydantic import Field, SecretStr

from storeflow.models.settings import default_database_url


def _default_url() -> SecretStr:
    return SecretStr(default_database_url())


class DatabaseBlock(Block):
    """SQLAlchemy URL of the resource database (SQLite file or PostgreSQL)."""

    _block_type_name = "Storeflow Database"
    _block_type_slug = "storeflow-database"
    _description = "SQLAlchemy URL of storeflow's resource database."

    # A secret: PostgreSQL URLs carry passwords.
    url: SecretStr = Field(default_factory=_default_url, description="SQLAlchemy database URL.")

    def url_value(self) -> str:
        return self.url.get_secret_value()
