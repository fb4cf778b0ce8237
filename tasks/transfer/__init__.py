"""Transfers: Open Task Framework definitions run over local, SMB and NFS.

The engine API a flow calls is :func:`plan_transfer`, :func:`deliver`, :func:`finalize`
(or :func:`run_transfer` for all three); protocols are handlers found by name through the
``storeflow.protocols`` entry points.
"""

from storeflow.tasks.transfer.engine import (
    CopyCounters,
    Delivery,
    FileResult,
    PlannedFile,
    TransferPlan,
    TransferResult,
    deliver,
    finalize,
    plan_transfer,
    run_transfer,
)
from storeflow.tasks.transfer.entries import Entry, Kind
from storeflow.tasks.transfer.errors import TransferError
from storeflow.tasks.transfer.handler import TransferHandler

__all__ = [
    "CopyCounters",
    "Delivery",
    "Entry",
    "FileResult",
    "Kind",
    "PlannedFile",
    "TransferError",
    "TransferHandler",
    "TransferPlan",
    "TransferResult",
    "deliver",
    "finalize",
    "plan_transfer",
    "run_transfer",
]
