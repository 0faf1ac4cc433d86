"""Build every apisync DAG from the registry: the thin files in dags/ call these functions.

Parse time reads only the process environment (schedules, retry timing) and the registry: no
connection, variable or metadata-DB lookups, and no Kafka (an asset watcher's trigger connects in the
triggerer, never while parsing). Per API: `<api>_backfill`, `<api>_incremental`, `<api>_normalize`,
`<api>_reconcile`, `<api>_audit`; plus `kafka_topics`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from airflow.sdk import DAG, Asset, AssetWatcher, Param, task
from airflow.sdk.exceptions import AirflowFailException

from apisync.registry import APIS, COLLECTIONS
from apisync_airflow.notifiers import ApisyncAlertNotifier
from apisync_airflow.operators import (
    AuditKafkaAgainstApiOperator,
    BackfillApiToKafkaOperator,
    EnsureKafkaTopicsOperator,
    NormalizeChangesOperator,
    ReconcileDeletesToKafkaOperator,
    SyncChangesToKafkaOperator,
)
from apisync_airflow.pools import normalizer_pool, sync_pool
from apisync_airflow.watchers import watch_trigger

START = datetime(2025, 1, 1, tzinfo=UTC)
MIN_RETRIES = 2
CLUSTER = "apisync"  # logical Kafka cluster name in asset URIs (the real bootstrap is a run-time secret)
ASSETS, NONE = "assets", "none"  # the normalize schedules that are not cron expressions


@dataclass(frozen=True, slots=True)
class DagDefaults:
    """Schedules and retry timing, from APISYNC_* environment variables with safe defaults."""

    retries: int = 3
    retry_delay_s: float = 60.0
    max_retry_delay_s: float = 1800.0
    incremental_schedule: str = "*/5 * * * *"
    normalize_schedule: str = ASSETS  # or "none" (the follow service normalizes), or a cron expression
    watch_conn_id: str = "kafka_watch"  # the asset watchers' Kafka connection (their own consumer group)
    reconcile_schedule: str = "@daily"
    audit_schedule: str = "@daily"
    topics_schedule: str = "@hourly"
    backfill_timeout_s: float = 6 * 3600.0
    sync_timeout_s: float = 1800.0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> DagDefaults:
        """APISYNC_RETRIES (>= 2), APISYNC_RETRY_DELAY_S, APISYNC_MAX_RETRY_DELAY_S, APISYNC_*_SCHEDULE, ..."""
        env = os.environ if env is None else env
        base = cls()

        def num(name: str, default: float) -> float:
            raw = env.get(name, "").strip()
            return float(raw) if raw else default

        return cls(
            retries=max(MIN_RETRIES, int(num("APISYNC_RETRIES", base.retries))),
            retry_delay_s=num("APISYNC_RETRY_DELAY_S", base.retry_delay_s),
            max_retry_delay_s=num("APISYNC_MAX_RETRY_DELAY_S", base.max_retry_delay_s),
            incremental_schedule=env.get("APISYNC_INCREMENTAL_SCHEDULE") or base.incremental_schedule,
            normalize_schedule=(env.get("APISYNC_NORMALIZE_SCHEDULE") or base.normalize_schedule).strip(),
            watch_conn_id=env.get("APISYNC_KAFKA_WATCH_CONN_ID") or base.watch_conn_id,
            reconcile_schedule=env.get("APISYNC_RECONCILE_SCHEDULE") or base.reconcile_schedule,
            audit_schedule=env.get("APISYNC_AUDIT_SCHEDULE") or base.audit_schedule,
            topics_schedule=env.get("APISYNC_TOPICS_SCHEDULE") or base.topics_schedule,
            backfill_timeout_s=num("APISYNC_BACKFILL_TIMEOUT_S", base.backfill_timeout_s),
            sync_timeout_s=num("APISYNC_SYNC_TIMEOUT_S", base.sync_timeout_s),
        )

    @property
    def watch_inputs(self) -> str | None:
        """The watchers' connection id when normalize runs are triggered by input messages, else None."""
        return self.watch_conn_id if self.normalize_schedule == ASSETS else None

    def default_args(self) -> dict[str, Any]:
        """Retries with exponential backoff and the failure alert, for every task."""
        return {
            "owner": "apisync",
            "retries": self.retries,
            "retry_delay": timedelta(seconds=self.retry_delay_s),
            "retry_exponential_backoff": 2.0,
            "max_retry_delay": timedelta(seconds=self.max_retry_delay_s),
            "execution_timeout": timedelta(seconds=self.sync_timeout_s),
            "on_failure_callback": [ApisyncAlertNotifier()],
        }


def topic_asset(topic: str, watch_conn_id: str | None = None) -> Asset:
    """A Kafka topic as an Airflow Asset, for lineage in the UI; with `watch_conn_id`, watched for messages.

    Every reference to a watched topic must carry the watcher (the DAG processor keeps one definition
    per asset, the last it meets), so the DAG builders pass it wherever an input topic appears.
    """
    if watch_conn_id is None:
        return Asset(name=topic, uri=f"kafka://{CLUSTER}/{topic}", group="kafka")
    # One shared consumer in the connection's own group (never the normalizer's), one event per message,
    # each offset committed only after its asset event is saved (apisync_airflow.watchers).
    trigger = watch_trigger(topic, watch_conn_id)
    return Asset(name=topic, uri=f"kafka://{CLUSTER}/{topic}", group="kafka",
                 watchers=[AssetWatcher(name=f"{topic}.watcher", trigger=trigger)])


def _dag(dag_id: str, defaults: DagDefaults, *, doc: str, tags: list[str], **kwargs: Any) -> DAG:
    kwargs.setdefault("catchup", False)
    return DAG(dag_id, start_date=START, default_args=defaults.default_args(), doc_md=doc,
               tags=["apisync", *tags], render_template_as_native_obj=True, **kwargs)


@task(task_id="choose_collections")
def choose_collections(api: str, params: dict | None = None) -> list[str]:
    """The collections picked in the trigger form, validated against the registry."""
    chosen = list((params or {}).get("collections") or [])
    unknown = sorted(set(chosen) - set(COLLECTIONS[api]))
    if unknown or not chosen:
        raise AirflowFailException(f"choose collections from {', '.join(COLLECTIONS[api])}; got {chosen or 'none'}")
    return chosen


def _collections_param(api: str) -> Param:
    return Param(list(COLLECTIONS[api]), type="array", items={"type": "string", "enum": list(COLLECTIONS[api])},
                 uniqueItems=True, minItems=1, title="Collections", description="Collections to backfill.")


def backfill_dag(api: str, defaults: DagDefaults) -> DAG:
    """`<api>_backfill`: manual, resumable full load (one mapped task per collection), then normalizing."""
    params = {
        "collections": _collections_param(api),
        "start_date": Param(None, type=["null", "string"], format="date", title="Start date",
                            description="Only objects created on or after this day (YYYY-MM-DD); empty = all."),
        "restart": Param(False, type="boolean", title="Restart from scratch",
                         description="Ignore the saved checkpoint and load everything again."),
    }
    doc = (f"### {api} backfill\nFull historical load of every chosen {api} collection into `{api}.changes`, "
           "page by page; re-triggering resumes from the checkpoint unless *Restart from scratch* is set. "
           f"`{api}_normalize` (or the follow service) turns the changes into records and events as they "
           "arrive. The incremental DAG starts syncing each collection once its backfill has finished.")
    # One run at a time: two backfills of a collection would share (and fence) one transactional.id.
    with _dag(f"{api}_backfill", defaults, schedule=None, max_active_runs=1, params=params, doc=doc,
              tags=[api, "backfill"]) as dag:
        topics = EnsureKafkaTopicsOperator(task_id="ensure_topics", apis=[api])
        chosen = choose_collections(api)
        BackfillApiToKafkaOperator.partial(
            task_id="backfill", api=api, pool=sync_pool(api), restart="{{ params.restart }}",
            start_from="{{ params.start_date }}", outlets=[topic_asset(f"{api}.changes", defaults.watch_inputs)],
            execution_timeout=timedelta(seconds=defaults.backfill_timeout_s),
        ).expand(collection=chosen)
        topics >> chosen
    return dag


def _normalize_task(api: str, defaults: DagDefaults) -> NormalizeChangesOperator:
    """The normalizer until every partition it owns is read to its end."""
    watch = defaults.watch_inputs
    return NormalizeChangesOperator(
        task_id="normalize", api=api, pool=normalizer_pool(api),
        execution_timeout=timedelta(seconds=defaults.sync_timeout_s),
        inlets=[topic_asset(f"{api}.changes", watch), topic_asset(f"{api}.webhooks", watch)],
        outlets=[topic_asset(f"{api}.records"), topic_asset(f"{api}.events")],
    )


def incremental_dag(api: str, defaults: DagDefaults) -> DAG:
    """`<api>_incremental`: scheduled change sync per collection; skips until its backfill finished."""
    doc = (f"### {api} incremental\nEvery run reads each {api} collection's changes since its cursor into "
           f"`{api}.changes`. A collection whose backfill has not finished is skipped (the log says so). "
           f"Schedule `{defaults.incremental_schedule}` (env APISYNC_INCREMENTAL_SCHEDULE).")
    with _dag(f"{api}_incremental", defaults, schedule=defaults.incremental_schedule, max_active_runs=1,
              doc=doc, tags=[api, "incremental"]) as dag:
        SyncChangesToKafkaOperator.partial(
            task_id="incremental", api=api, pool=sync_pool(api),
            outlets=[topic_asset(f"{api}.changes", defaults.watch_inputs)],
        ).expand(collection=list(COLLECTIONS[api]))
    return dag


def normalize_dag(api: str, defaults: DagDefaults) -> DAG:
    """`<api>_normalize`: the normalizer until idle, one run at a time, started by input messages by default."""
    mode, watch = defaults.normalize_schedule, defaults.watch_inputs
    if mode == ASSETS:
        schedule: Any = topic_asset(f"{api}.changes", watch) | topic_asset(f"{api}.webhooks", watch)
        when = (f"when a message arrives on `{api}.changes` or `{api}.webhooks` (asset watchers on the "
                f"Kafka connection `{watch}`, in the triggerer)")
    elif mode == NONE:
        schedule, when = None, "only when triggered (the `--follow` service normalizes; never run both)"
    else:
        schedule, when = mode, f"on the schedule `{mode}`"
    doc = (f"### {api} normalize\nRuns the {api} normalizer until it has read every input partition to its "
           f"end: `{api}.changes` and `{api}.webhooks` become `{api}.records` (latest copy, compacted) and "
           f"`{api}.events`. Starts {when} (env APISYNC_NORMALIZE_SCHEDULE: `assets`, `none` or a cron). "
           f"One run at a time (pool `{normalizer_pool(api)}` has one slot).")
    with _dag(f"{api}_normalize", defaults, schedule=schedule, max_active_runs=1,
              doc=doc, tags=[api, "normalize"]) as dag:
        # Until idle, bounded only by the task timeout: a run holds its slot while there is work.
        _normalize_task(api, defaults)
    return dag


def reconcile_dag(api: str, defaults: DagDefaults) -> DAG:
    """`<api>_reconcile`: daily delete sweep per collection, dry run by default, deletes capped."""
    params = {
        "dry_run": Param(True, type="boolean", title="Dry run", description="Only report what would be deleted."),
        "max_delete_share": Param(0.05, type="number", minimum=0, maximum=1, title="Max share deleted",
                                  description="Refuse to delete more than this share of a collection."),
    }
    doc = (f"### {api} reconcile\nCompares the ids {api} still has with the records in Kafka and deletes "
           "(deleted event + tombstone) those gone upstream. Dry run by default; a run that would delete "
           "more than *Max share deleted* of a collection stops instead.")
    with _dag(f"{api}_reconcile", defaults, schedule=defaults.reconcile_schedule, max_active_runs=1,
              params=params, doc=doc, tags=[api, "reconcile"]) as dag:
        ReconcileDeletesToKafkaOperator.partial(
            task_id="reconcile", api=api, pool=sync_pool(api), dry_run="{{ params.dry_run }}",
            max_delete_share="{{ params.max_delete_share }}",
            outlets=[topic_asset(f"{api}.changes", defaults.watch_inputs)],
        ).expand(collection=list(COLLECTIONS[api]))
    return dag


def audit_dag(api: str, defaults: DagDefaults) -> DAG:
    """`<api>_audit`: daily comparison of every collection's records with the API, on a share of its budget."""
    params = {
        "sample_size": Param(0, type="integer", minimum=0, title="Sample size",
                             description="Fetch this many random known records one by one; 0 walks the whole listing."),
        "repair": Param(False, type="boolean", title="Repair",
                        description="Send a fresh observation for every drifted record: the normalizer fixes it "
                                    "through the version fence and emits its events."),
        "budget_share": Param(0.1, type="number", exclusiveMinimum=0, maximum=1, title="Budget share",
                              description="The most of the API account's request budget the audit may take."),
        "max_drift_share": Param(0.01, type="number", minimum=0, maximum=1, title="Alert threshold",
                                 description="Alert when more than this share of the audited records drifted."),
        "max_delete_share": Param(0.05, type="number", minimum=0, maximum=1, title="Max share deleted",
                                  description="Zombies are not deleted when more than this share is gone."),
    }
    doc = (f"### {api} audit\nIs Kafka still equal to {api}? Compares each collection's records on `{api}.records` "
           "with the API (the whole listing, or a random sample fetched one by one) on the lowest rate-limit lane "
           "and at most *Budget share* of the account's budget. Reports missing, stale and zombie records (counts "
           "and up to 20 keys each) in the log, the XCom and metrics, and alerts above *Alert threshold*. With "
           f"*Repair*, fresh observations go to `{api}.changes`. Schedule `{defaults.audit_schedule}` "
           "(env APISYNC_AUDIT_SCHEDULE).")
    with _dag(f"{api}_audit", defaults, schedule=defaults.audit_schedule, max_active_runs=1, params=params,
              doc=doc, tags=[api, "audit"]) as dag:
        AuditKafkaAgainstApiOperator.partial(
            task_id="audit", api=api, pool=sync_pool(api), sample_size="{{ params.sample_size }}",
            repair="{{ params.repair }}", budget_share="{{ params.budget_share }}",
            max_drift_share="{{ params.max_drift_share }}", max_delete_share="{{ params.max_delete_share }}",
            inlets=[topic_asset(f"{api}.records")], outlets=[topic_asset(f"{api}.changes", defaults.watch_inputs)],
            # a small share of the budget makes a full listing slow: sized like a backfill
            execution_timeout=timedelta(seconds=defaults.backfill_timeout_s),
        ).expand(collection=list(COLLECTIONS[api]))
    return dag


def topics_dag(defaults: DagDefaults) -> DAG:
    """`kafka_topics`: create missing topics and repair drifted configs; fail on what needs a person."""
    doc = ("### Kafka topic contracts\nCreates every declared apisync topic with its configs and sets drifted "
           "configs back. Drift it cannot repair (too few partitions) fails the task so the alert fires.")
    with _dag("kafka_topics", defaults, schedule=defaults.topics_schedule, max_active_runs=1,
              doc=doc, tags=["kafka"]) as dag:
        EnsureKafkaTopicsOperator(task_id="ensure_topics", apis=list(APIS))
    return dag


def api_dags(api: str, defaults: DagDefaults | None = None) -> dict[str, DAG]:
    """The five DAGs of one API, by dag_id."""
    if api not in COLLECTIONS:
        raise ValueError(f"unknown api {api!r}; known: {', '.join(APIS)}")
    defaults = defaults or DagDefaults.from_env()
    dags = (backfill_dag(api, defaults), incremental_dag(api, defaults), normalize_dag(api, defaults),
            reconcile_dag(api, defaults), audit_dag(api, defaults))
    return {dag.dag_id: dag for dag in dags}


def all_dags(defaults: DagDefaults | None = None) -> dict[str, DAG]:
    """Every apisync DAG by dag_id: each registered API's five and `kafka_topics` (a dags/ file's whole job)."""
    defaults = defaults or DagDefaults.from_env()
    dags = {dag_id: dag for api in APIS for dag_id, dag in api_dags(api, defaults).items()}
    dags["kafka_topics"] = topics_dag(defaults)
    return dags
