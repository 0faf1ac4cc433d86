"""The sync engine: backfill, incremental, reconcile and audit runs of one API collection."""

from apisync.sync.audit import AuditOptions, AuditSummary, run_audit
from apisync.sync.progress import Progress, RunSummary
from apisync.sync.reconcile import TooManyDeletes, run_reconcile
from apisync.sync.runner import BackfillNotDone, run_backfill, run_incremental

__all__ = ["AuditOptions", "AuditSummary", "BackfillNotDone", "Progress", "RunSummary", "TooManyDeletes",
           "run_audit", "run_backfill", "run_incremental", "run_reconcile"]
