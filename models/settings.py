"""Where storeflow keeps its state when nothing else is configured.

Read from the environment when asked, never at import time.
"""

import os
from pathlib import Path

HOME_ENV = "STOREFLOW_HOME"
DATABASE_URL_ENV = "STOREFLOW_DATABASE_URL"
STORAGE_ROOT_ENV = "STOREFLOW_STORAGE_ROOT"
HOOK_DRIVERS_ENV = "STOREFLOW_HOOK_DRIVERS"
CONFIG_BLOCK_ENV = "STOREFLOW_CONFIG_BLOCK"


def storeflow_home() -> Path:
    """The storeflow home directory: $STOREFLOW_HOME, else ~/.storeflow."""
    return Path(os.environ.get(HOME_ENV) or Path.home() / ".storeflow").expanduser()


def default_database_url() -> str:
    return os.environ.get(DATABASE_URL_ENV) or f"sqlite:///{storeflow_home() / 'storeflow.db'}"


def default_storage_root() -> Path:
    return Path(os.environ.get(STORAGE_ROOT_ENV) or storeflow_home() / "storage").expanduser()


def default_hook_drivers() -> list[str]:
    raw = os.environ.get(HOOK_DRIVERS_ENV, "")
    return [part.strip() for part in raw.split(",") if part.strip()]
