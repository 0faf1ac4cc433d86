"""The sync engine: backfill, incremental and reconcile runs of one API collection."""

from apisync.sync.progress import Progress, RunSummary
from apisync.sync.reconcile import TooManyDeletes, run_reconcile
from apisync.sync.runner import BackfillNotDone, run_backfill, run_incremental

__all__ = ["BackfillNotDone", "Progress", "RunSummary", "TooManyDeletes", "run_backfill", "run_incremental",
           "run_reconcile"]
