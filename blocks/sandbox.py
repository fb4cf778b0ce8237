"""SandboxPolicy: how user callbacks are isolated and limited, as a Block.

The fields are storeflow.sandbox.settings.SandboxSettings' own (inherited, so the two
never drift), including its per-language sections and its acceptance of the older
per-language field names, so blocks saved before the sections existed still load.
The callback runner takes this Block or the plain settings.
"""

from prefect.blocks.core import Block

from storeflow.sandbox.settings import SandboxSettings


class SandboxPolicy(Block, SandboxSettings):
    """Timeouts, memory and output caps, per-language switches, hook directories
    and limits, and whether callbacks may run when a jail layer is missing."""

    _block_type_name = "Storeflow Sandbox Policy"
    _block_type_slug = "storeflow-sandbox-policy"
    _description = "Isolation and limits for user callbacks (Python and JavaScript)."
