"""The sync engine: backfill, incremental and reconcile runs of one API collection."""

from apisync.sync.progress import Progress, RunSummary
from apisync.sync.runner import BackfillNotDone, run_backfill, run_incremental

__all__ = ["BackfillNotDone", "Progress", "RunSummary", "run_backfill", "run_incremental"]
