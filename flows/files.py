"""The `file-scan` deployment: register what arrived in the spaces without storeflow
seeing it (files written through CIFS or NFS exposers), one event per new or changed
file.  Schedule it in prefect.yaml or the UI as the catalog's safety net."""

from pathlib import Path
from typing import Any

from prefect import flow, task
from prefect.artifacts import create_table_artifact
from prefect.states import Completed, Failed, State

from storeflow.blocks.config import resolve_config
from storeflow.flows.common import note_run_name
from storeflow.models.errors import StoreflowError
from storeflow.tasks.catalog import ScanCounts, scan


@task(name="scan")
def scan_tree(root: str, checksum: bool, config: str | None) -> ScanCounts:
    return scan(resolve_config(config), Path(root), checksum=checksum)


@flow(name="file-scan", flow_run_name="file-scan/{space}", persist_result=False)
def file_scan(
    space: str = "", path: str | None = None, checksum: bool = False, config: str | None = None
) -> State[Any]:
    """Scan one space (or every space when `space` is empty), or any folder (`path`)."""
    note_run_name()
    settings = resolve_config(config)
    root = path or str(
        settings.storage.spaces_dir / space if space else settings.storage.spaces_dir
    )
    try:
        counts = scan_tree(root, checksum, config)
    except StoreflowError as exc:
        return Failed(name="Refused", message=str(exc))
    create_table_artifact(
        [{"root": root, **{k: str(v) for k, v in vars(counts).items()}}],
        description="file-scan",
    )
    return Completed(name="Scanned", message=counts.summary(), data=vars(counts))
