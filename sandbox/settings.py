"""The sandbox policy as a plain pydantic model (no Prefect needed).

blocks/sandbox.py's SandboxPolicy Block has the same fields; `as_settings`
accepts either, or any object carrying these attributes.
"""

from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field


class SandboxSettings(BaseModel):
    python_enabled: bool = Field(True, description="The seed's python hooks plugin switch.")
    javascript_enabled: bool = Field(True, description="The seed's javascript hooks plugin switch.")
    python_hooks_dir: Path = Path("python-hooks")
    javascript_hooks_dir: Path = Path("javascript-hooks")
    call_timeout_s: float = Field(5.0, gt=0, description="Per call; the worker is replaced.")
    start_timeout_s: float = Field(15.0, gt=0, description="Starting a worker and loading code.")
    memory_limit_mb: int = Field(256, ge=32)
    output_limit_bytes: int = Field(64 * 1024, ge=1024, description="Captured stdout+stderr.")
    result_limit_bytes: int = Field(1024 * 1024, ge=1024, description="One answer frame.")
    scratch_size_mb: int = Field(16, ge=1, description="Private /tmp of a Python worker.")
    file_size_limit_mb: int = Field(8, ge=1)
    max_source_bytes: int = Field(1024 * 1024, ge=1)
    allow_weak_isolation: bool = Field(
        False, description="Run Python callbacks even when a jail layer is missing."
    )
    sandbox_uid: int = 65534
    sandbox_gid: int = 65534
    bwrap_path: str | None = Field(None, description="Default: bwrap on PATH.")


def as_settings(policy: Any = None) -> SandboxSettings:
    """SandboxSettings from None, itself, a SandboxPolicy Block, or a mapping."""
    if policy is None:
        return SandboxSettings()
    if type(policy) is SandboxSettings:
        return policy
    if isinstance(policy, dict):
        return SandboxSettings.model_validate(policy)
    fields = {
        name: getattr(policy, name)
        for name in SandboxSettings.model_fields
        if hasattr(policy, name)
    }
    return SandboxSettings.model_validate(fields)
