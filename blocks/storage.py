"""Where spaces, templates and snapshots live on disk."""

from pathlib import Path

from prefect.blocks.core import Block
from pydantic import Field

from storeflow.models.names import Size
from storeflow.models.settings import default_storage_root


class StorageBlock(Block):
    """The filesystem storeflow manages: spaces, the template store, snapshots."""

    _block_type_name = "Storeflow Storage"
    _block_type_slug = "storeflow-storage"
    _description = (
        "The filesystem root under which storeflow creates spaces, templates and snapshots."
    )

    root: Path = Field(default_factory=default_storage_root, description="Filesystem root.")
    template_store: Path | None = Field(
        None, description="Template store; defaults to ROOT/templates."
    )
    template_max_size: Size = Field(
        10 * 1024**3, description="Largest template accepted (TemplateTooBig beyond it)."
    )

    @property
    def spaces_dir(self) -> Path:
        return self.root / "spaces"

    @property
    def templates_dir(self) -> Path:
        return self.template_store or self.root / "templates"

    @property
    def snapshots_dir(self) -> Path:
        return self.root / ".snapshots"

    def ensure_layout(self) -> None:
        for path in (self.spaces_dir, self.templates_dir, self.snapshots_dir):
            path.mkdir(parents=True, exist_ok=True)
