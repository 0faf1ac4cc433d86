"""The DAG factory: schedules, Params, mapping, pools, lineage and the collection chooser."""

from __future__ import annotations

from datetime import timedelta

import pytest
from airflow.sdk.exceptions import AirflowFailException

from apisync.registry import APIS, COLLECTIONS
from apisync_airflow.factory import DagDefaults, api_dags, choose_collections, topics_dag
from apisync_airflow.pools import declared_pools


@pytest.fixture(scope="module")
def stripe():
    return api_dags("stripe", DagDefaults())


def test_backfill_form_and_shape(stripe):
    dag = stripe["stripe_backfill"]
    assert dag.schedule is None and dag.max_active_runs == 1
    params = dag.params.dump()
    # No fixed-time normalizing step: stripe_normalize (or the follow service) runs until idle instead.
    assert params == {"collections": list(COLLECTIONS["stripe"]), "start_date": None, "restart": False}
    order = [t.task_id for t in dag.topological_sort()]
    assert order == ["ensure_topics", "choose_collections", "backfill"]
    backfill = dag.get_task("backfill")
    assert backfill.pool == "apisync_stripe" and backfill.execution_timeout == timedelta(hours=6)
    assert [a.name for a in backfill.outlets] == ["stripe.changes"]
    normalize = stripe["stripe_normalize"].get_task("normalize")
    assert normalize.pool == "apisync_stripe_normalizer" and normalize.max_seconds is None
    assert {a.name for a in normalize.outlets} == {"stripe.records", "stripe.events"}


def test_backfill_params_reject_unknown_collections(stripe):
    from airflow.sdk.exceptions import ParamValidationError

    params = stripe["stripe_backfill"].params
    params["collections"] = ["customer"]
    with pytest.raises(ParamValidationError):
        params["collections"] = ["customer", "spaceship"]


def test_incremental_and_normalize_schedules_are_single_run(stripe):
    incremental, normalize = stripe["stripe_incremental"], stripe["stripe_normalize"]
    assert (incremental.schedule, incremental.max_active_runs, incremental.catchup) == ("*/5 * * * *", 1, False)
    assert normalize.max_active_runs == 1  # its asset schedule: test_normalize_assets
    assert normalize.get_task("normalize").max_seconds is None  # until idle


def test_reconcile_is_a_daily_capped_dry_run_by_default(stripe):
    dag = stripe["stripe_reconcile"]
    assert dag.schedule == "@daily"
    assert dag.params.dump() == {"dry_run": True, "max_delete_share": 0.05}


def test_audit_is_a_daily_report_per_collection_on_a_share_of_the_budget(stripe):
    dag = stripe["stripe_audit"]
    assert (dag.schedule, dag.max_active_runs) == ("@daily", 1)
    assert dag.params.dump() == {"sample_size": 0, "repair": False, "budget_share": 0.1, "max_drift_share": 0.01,
                                 "max_delete_share": 0.05}
    audit = dag.get_task("audit")
    assert audit.pool == "apisync_stripe" and audit.execution_timeout == timedelta(hours=6)
    assert [a.name for a in audit.inlets] == ["stripe.records"]
    assert [a.name for a in audit.outlets] == ["stripe.changes"]
    assert DagDefaults.from_env({"APISYNC_AUDIT_SCHEDULE": "@weekly"}).audit_schedule == "@weekly"


def test_env_configures_schedules_and_retries_but_never_below_two():
    defaults = DagDefaults.from_env({"APISYNC_RETRIES": "0", "APISYNC_RETRY_DELAY_S": "1",
                                     "APISYNC_INCREMENTAL_SCHEDULE": "*/15 * * * *"})
    assert (defaults.retries, defaults.retry_delay_s, defaults.incremental_schedule) == (2, 1.0, "*/15 * * * *")
    args = defaults.default_args()
    assert args["retry_delay"] == timedelta(seconds=1) and args["retry_exponential_backoff"] == 2.0


def test_every_pool_a_task_uses_is_declared():
    declared = {pool.name for pool in declared_pools()}
    used = {task.pool for api in APIS for dag in api_dags(api, DagDefaults()).values() for task in dag.tasks}
    used |= {task.pool for task in topics_dag(DagDefaults()).tasks}
    assert used - {"default_pool"} <= declared
    assert {p.slots for p in declared_pools() if p.name.endswith("_normalizer")} == {1}


def test_unknown_api_is_refused():
    with pytest.raises(ValueError, match="unknown api 'nope'"):
        api_dags("nope")


@pytest.mark.parametrize("chosen", [[], ["customer", "spaceship"]])
def test_choose_collections_refuses_empty_or_unknown(chosen):
    with pytest.raises(AirflowFailException, match="choose collections from customer"):
        choose_collections.function("stripe", params={"collections": chosen})


def test_choose_collections_keeps_the_chosen_order():
    chosen = choose_collections.function("stripe", params={"collections": ["invoice", "customer"]})
    assert chosen == ["invoice", "customer"]
