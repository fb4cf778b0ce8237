"""SandboxPolicy: how user callbacks are isolated and limited, as a Block.

The fields are storeflow.sandbox.settings.SandboxSettings' own (inherited, so the two
never drift); the callback runner takes this Block or the plain settings.
"""

from prefect.blocks.core import Block

from storeflow.sandbox.settings import SandboxSettings


class SandboxPolicy(Block, SandboxSettings):
    """Timeouts, memory and output caps, language switches, hook directories,
    and whether Python callbacks may run when a jail layer is missing."""

    _block_type_name = "Storeflow Sandbox Policy"
    _block_type_slug = "storeflow-sandbox-policy"
    _description = "Isolation and limits for user callbacks (Python and JavaScript)."

    def to_settings(self) -> SandboxSettings:
        return SandboxSettings.model_validate(
            {name: getattr(self, name) for name in SandboxSettings.model_fields}
        )
