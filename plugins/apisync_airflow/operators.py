"""Thin operators over include/apisync: constructors store plain arguments, all I/O happens in execute.

Each sync operator logs progress lines while it runs and returns RunSummary.as_dict() (counts and
cursors, never payloads), which Airflow stores as the task's XCom. Library imports happen inside
execute so that parsing a DAG never needs Kafka, Redis, the API or even the sync engine.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections.abc import Mapping, Sequence
from typing import Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowSkipException

from apisync_airflow.errors import UnrepairedDrift, airflow_errors
from apisync_airflow.hooks import ApiConnectionHook, KafkaConfigHook, RedisUrlHook
from apisync_airflow.metrics import AirflowStatsMetrics
from apisync_airflow.notifiers import Alert, alert_from_context, channels_from_env
from apisync_airflow.progress import ProgressLogger, summary_line

log = logging.getLogger("apisync.airflow")


def as_bool(value: Any) -> bool:
    """A templated flag: real bools pass, strings like 'true'/'False' are read as people mean them."""
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1", "yes", "on")
    return bool(value)


def as_optional_str(value: Any) -> str | None:
    """A templated optional string: None, '' and 'None' all mean unset."""
    if value is None:
        return None
    text = str(value).strip()
    return None if text in ("", "None", "null") else text


def keep_partial_summary(context: Any, exc: Exception) -> None:
    """A run that synced what answered, then failed for the rest (IncompleteRun), still stores its summary as
    the task's XCom: what was synced and which parts were refused stay visible in the UI beside the error."""
    summary = getattr(exc, "summary", None)
    ti = context.get("ti") if hasattr(context, "get") else None
    if summary is not None and hasattr(summary, "as_dict") and hasattr(ti, "xcom_push"):
        ti.xcom_push(key="return_value", value=summary.as_dict())


class _KafkaRedisOperator(BaseOperator):
    """Shared connection handling: Kafka config and Redis URL from their Airflow connections."""

    def __init__(self, *, kafka_conn_id: str = "kafka_default", redis_conn_id: str = "redis_default",
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.kafka_conn_id = kafka_conn_id
        self.redis_conn_id = redis_conn_id

    def kafka_config(self) -> dict[str, Any]:
        return KafkaConfigHook(self.kafka_conn_id).get_config()

    def redis_url(self) -> str:
        return RedisUrlHook(self.redis_conn_id).get_url()


class _SyncOperator(_KafkaRedisOperator):
    """One collection of one API, read through the sync engine into `<api>.changes`."""

    job = "sync"
    template_fields: Sequence[str] = ("collection",)

    def __init__(self, *, api: str, collection: str, api_conn_id: str | None = None,
                 progress_interval_s: float = 5.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.api = api
        self.collection = collection
        self.api_conn_id = api_conn_id
        self.progress_interval_s = progress_interval_s

    def sync_settings(self):
        """SyncSettings from the three connections (looked up now, at run time)."""
        from apisync.settings import SyncSettings

        api = ApiConnectionHook(self.api, self.api_conn_id).get_settings()
        return SyncSettings(kafka=self.kafka_config(), redis_url=self.redis_url(), api=api)

    def progress(self) -> ProgressLogger:
        return ProgressLogger(f"{self.api}.{self.collection} {self.job}", self.progress_interval_s)

    def execute(self, context: Any) -> dict[str, Any]:
        label = f"{self.api} {self.job} of {self.collection}"
        with airflow_errors(label):
            try:
                summary = self.run(self.sync_settings())
            except Exception as exc:
                keep_partial_summary(context, exc)
                raise
        result = summary.as_dict()
        log.info("%s finished: %s", label, summary_line(result))
        return result

    def run(self, settings: Any) -> Any:
        raise NotImplementedError


class BackfillApiToKafkaOperator(_SyncOperator):
    """Full historical load of one collection, resumable from its checkpoint (or restarted)."""

    job = "backfill"
    template_fields: Sequence[str] = ("collection", "restart", "start_from")

    def __init__(self, *, restart: Any = False, start_from: Any = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.restart = restart
        self.start_from = start_from
        self._retrying = False

    def execute(self, context: Any) -> dict[str, Any]:
        # "Restart from scratch" applies to the first try only: a retry after a crash resumes the
        # restarted backfill from its new checkpoint instead of throwing that progress away.
        ti = context.get("ti") if hasattr(context, "get") else None
        self._retrying = bool(ti and getattr(ti, "try_number", 1) > 1)
        return super().execute(context)

    def run(self, settings: Any) -> Any:
        from apisync.sync import run_backfill

        restart, start = as_bool(self.restart) and not self._retrying, as_optional_str(self.start_from)
        if restart:
            log.info("%s.%s: restarting the backfill from scratch (checkpoint ignored)", self.api, self.collection)
        return run_backfill(settings, self.collection, restart=restart, start_date=start, on_progress=self.progress(),
                            metrics=AirflowStatsMetrics())


class SyncChangesToKafkaOperator(_SyncOperator):
    """Incremental sync of one collection from its cursor; skipped until its backfill has finished."""

    job = "incremental"

    def run(self, settings: Any) -> Any:
        from apisync.sync import BackfillNotDone, run_incremental

        try:
            return run_incremental(settings, self.collection, on_progress=self.progress(),
                                   metrics=AirflowStatsMetrics())
        except BackfillNotDone as exc:
            log.info("%s.%s: skipping incremental sync, the backfill has not finished yet (%s)",
                     self.api, self.collection, exc)
            raise AirflowSkipException(f"backfill of {self.api}.{self.collection} not finished yet") from None


class ReconcileDeletesToKafkaOperator(_SyncOperator):
    """Find objects deleted upstream but still live in Kafka; dry run by default, deletes capped."""

    job = "reconcile"
    template_fields: Sequence[str] = ("collection", "dry_run", "max_delete_share")

    def __init__(self, *, dry_run: Any = True, max_delete_share: Any = 0.05, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.dry_run = dry_run
        self.max_delete_share = max_delete_share

    def run(self, settings: Any) -> Any:
        from apisync.sync import run_reconcile

        dry_run, share = as_bool(self.dry_run), float(self.max_delete_share)
        if not 0.0 <= share <= 1.0:
            raise ValueError(f"max_delete_share must be between 0 and 1, got {share}")
        log.info("%s.%s: reconciling deletes (dry_run=%s, max_delete_share=%s)", self.api, self.collection,
                 dry_run, share)
        return run_reconcile(settings, self.collection, dry_run=dry_run, max_delete_share=share,
                             on_progress=self.progress())


class AuditKafkaAgainstApiOperator(_SyncOperator):
    """Compare one collection's records with the API: report drift, alert above a share, repair on demand."""

    job = "audit"
    template_fields: Sequence[str] = ("collection", "sample_size", "repair", "budget_share", "max_drift_share",
                                      "max_delete_share")

    def __init__(self, *, sample_size: Any = 0, repair: Any = False, budget_share: Any = 0.1,
                 max_drift_share: Any = 0.01, max_delete_share: Any = 0.05, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.sample_size = sample_size
        self.repair = repair
        self.budget_share = budget_share
        self.max_drift_share = max_drift_share
        self.max_delete_share = max_delete_share

    def execute(self, context: Any) -> dict[str, Any]:
        label = f"{self.api} audit of {self.collection}"
        with airflow_errors(label):
            summary = self.run(self.sync_settings())
        for line in summary.lines():
            log.info("%s", line)
        result = summary.as_dict()
        audit_metrics(result)
        if result["breaker_tripped"] or result["drift_share"] > float(self.max_drift_share):
            send_drift_alert(context, summary.lines()[0])
        return result

    def run(self, settings: Any) -> Any:
        from apisync.sync import AuditOptions, run_audit

        sample = int(self.sample_size or 0)
        options = AuditOptions(sample=sample or None, repair=as_bool(self.repair),
                               budget_share=float(self.budget_share), max_delete_share=float(self.max_delete_share))
        if sample < 0 or not 0 < options.budget_share <= 1 or not 0 <= options.max_delete_share <= 1:
            raise ValueError(f"sample_size must be >= 0, budget_share in (0, 1], max_delete_share in [0, 1]; "
                             f"got {sample}, {options.budget_share}, {options.max_delete_share}")
        log.info("%s.%s: auditing (%s, repair=%s, budget share %s)", self.api, self.collection,
                 f"sample of {sample}" if sample else "full listing", options.repair, options.budget_share)
        return run_audit(settings, self.collection, options, on_progress=self.progress())


AUDIT_METRICS = ("audited", "drift", "missing", "stale", "zombie", "in_flight", "repaired", "deletes", "requests")


def audit_metrics(result: Mapping[str, Any]) -> None:
    """Gauges `apisync.audit.<api>.<collection>.<count>` through Airflow's metrics (StatsD/OTel when enabled)."""
    from apisync.metrics import metric_name

    metrics, api, collection = AirflowStatsMetrics(), result["api"], result["collection"]
    for name in AUDIT_METRICS:
        metrics.gauge(metric_name("audit", api, collection, name), result[name], {"api": api, "collection": collection})


@dataclasses.dataclass(frozen=True, slots=True)
class DriftAlert(Alert):
    """An audit that found more drift than allowed: the task succeeded, but a person should look."""

    def text(self) -> str:
        where = self.task_id if self.map_index < 0 else f"{self.task_id}[{self.map_index}]"
        return (f"apisync alert: {self.dag_id}.{where} found drift (run {self.run_id}): {self.error} "
                f"| log: {self.log_url}")


def send_drift_alert(context: Any, report: str, env: Mapping[str, str] | None = None) -> None:
    """The audit's report line to every alert channel (the same ones as failure alerts)."""
    alert = DriftAlert(**{**dataclasses.asdict(alert_from_context(context or {})), "error": report})
    for name, send in channels_from_env(os.environ if env is None else env):
        try:
            send(alert)
        except Exception as exc:  # one broken channel must not keep the alert from the others
            log.warning("alert channel %s failed: %s", name, exc)


class NormalizeChangesOperator(_KafkaRedisOperator):
    """Run the normalizer of one API: changes + webhooks → records + events.

    For `max_seconds` seconds, or (max_seconds None) until every partition it owns is read to its end:
    what an asset-triggered run does, so it holds its worker slot only while there is work.
    """

    template_fields: Sequence[str] = ("max_seconds",)

    def __init__(self, *, api: str, max_seconds: Any = None, api_conn_id: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.api = api
        self.max_seconds = max_seconds
        self.api_conn_id = api_conn_id

    def execute(self, context: Any) -> dict[str, Any]:
        from apisync.normalizer import normalize

        label = f"{self.api} normalizer"
        bound = as_optional_str(self.max_seconds)
        with airflow_errors(label):
            kafka, redis_url = self.kafka_config(), self.redis_url()
            seconds = None if bound is None else float(bound)
            # The API connection lets the normalizer re-fetch thin webhooks and settle equal-version ties.
            api = ApiConnectionHook(self.api, self.api_conn_id).get_settings()
            started = time.monotonic()
            log.info("%s: %s", label, "until idle" if seconds is None else f"for {seconds:.0f}s")
            stats = normalize(self.api, kafka, redis_url, max_seconds=seconds, api_settings=api,
                              until_idle=seconds is None, metrics=AirflowStatsMetrics())
        result = {"api": self.api, **dataclasses.asdict(stats), "seconds": round(time.monotonic() - started, 1)}
        log.info("%s finished: %s", label, summary_line(result))
        return result


class EnsureKafkaTopicsOperator(_KafkaRedisOperator):
    """Create missing topics with their declared configs and set drifted configs back."""

    template_fields: Sequence[str] = ("apis",)

    def __init__(self, *, apis: Sequence[str] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.apis = apis

    def execute(self, context: Any) -> dict[str, Any]:
        from apisync import registry
        from apisync.kafka.admin import admin_client, ensure
        from apisync.kafka.topics import declared_topics

        apis = tuple(self.apis or registry.APIS)
        with airflow_errors("topic contracts"):
            specs = declared_topics(apis=apis)
            report = ensure(admin_client(self.kafka_config()), specs)
            for line in report.describe():
                log.info("topics: %s", line)
            if report.unrepaired:
                lines = [line for drift in report.unrepaired for line in drift.describe()]
                raise UnrepairedDrift(f"{len(lines)} topic difference(s) need an operator: {'; '.join(lines)}")
        return {"topics": len(specs), "created": list(report.created),
                "altered": {k: list(v) for k, v in report.altered.items()}}
