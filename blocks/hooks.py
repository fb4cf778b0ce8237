"""Which hook drivers wrap every operation, and their Manila options."""

from typing import Any

from prefect.blocks.core import Block
from pydantic import Field

from storeflow.models.settings import default_hook_drivers


class HookDriversBlock(Block):
    """Hook drivers, Manila style: `hook_drivers=path.to:Class,path.to:Other`.

    Unlike Manila, hooks are enabled by default: naming a driver is the
    operator's way of asking for it to run.
    """

    _block_type_name = "Storeflow Hook Drivers"
    _block_type_slug = "storeflow-hook-drivers"
    _description = "Hook drivers run before, after and periodically beside every operation."

    hook_drivers: list[str] = Field(
        default_factory=default_hook_drivers,
        description="Driver classes as 'module.path:ClassName', run in this order.",
    )
    enable_pre_hooks: bool = True
    enable_post_hooks: bool = True
    enable_periodic_hooks: bool = True
    suppress_pre_hooks_errors: bool = False
    suppress_post_hooks_errors: bool = False
    periodic_hooks_interval: float = Field(300.0, gt=0, description="Seconds between runs.")
    options: dict[str, Any] = Field(
        default_factory=dict, description="Further options the drivers read by name."
    )

    def safe_get(self, key: str) -> Any:
        """Manila's configuration lookup: a named option, or None."""
        if key in type(self).model_fields:
            return getattr(self, key)
        return self.options.get(key)
