"""`<api>_normalize` is scheduled on its input topics as Assets watched by the Kafka provider's shared-stream trigger.

Parsing builds the watchers' triggers but never connects: the trigger consumes in the triggerer.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from apisync.registry import APIS
from apisync_airflow.factory import DagDefaults, api_dags
from apisync_airflow.operators import NormalizeChangesOperator

DAG_FILE = Path(__file__).resolve().parents[2] / "dags" / "apisync_apis.py"
TRIGGER = "apisync_airflow.watchers.KafkaAnnounceTrigger"
ANNOUNCE_FUNCTION = "apisync_airflow.watchers.announce"


class KafkaAtParseTime(RuntimeError):
    """Something built a Kafka client, or looked up a connection, while the DAG file was parsed."""


@pytest.fixture
def no_kafka_at_parse_time(monkeypatch):
    """Every way the DAG file could reach Kafka (a client, the provider's hooks, a connection) raises."""
    import confluent_kafka
    import confluent_kafka.admin
    from airflow.providers.apache.kafka.hooks import base, consume
    from airflow.sdk.bases.hook import BaseHook

    attempts: list[str] = []

    def trap(what):
        def raiser(*_args, **_kwargs):
            attempts.append(what)
            raise KafkaAtParseTime(what)
        return raiser

    for module, name in ((confluent_kafka, "Consumer"), (confluent_kafka, "Producer"), (consume, "Consumer"),
                         (confluent_kafka.admin, "AdminClient"), (base, "AdminClient")):
        monkeypatch.setattr(module, name, trap(f"{module.__name__}.{name}"))
    monkeypatch.setattr(BaseHook, "get_connection", classmethod(trap("BaseHook.get_connection")))
    return attempts


def _watched(dag) -> dict[str, list]:
    """Asset name → its watchers, for the assets a DAG is scheduled on."""
    return {asset.name: asset.watchers for asset in dag.schedule.objects}


@pytest.mark.parametrize("api", APIS)
def test_normalize_is_scheduled_on_both_input_topics_with_kafka_watchers(api):
    dag = api_dags(api, DagDefaults())[f"{api}_normalize"]
    watched = _watched(dag)
    assert set(watched) == {f"{api}.changes", f"{api}.webhooks"}
    assert dag.max_active_runs == 1
    for topic, watchers in watched.items():
        assert len(watchers) == 1
        classpath, kwargs = watchers[0].trigger.serialize()
        assert classpath == TRIGGER
        # its own connection, hence its own consumer group: committing there never moves the normalizer
        assert (kwargs["topics"], kwargs["kafka_config_id"]) == ([topic], "kafka_watch")
    task = dag.get_task("normalize")
    assert task.max_seconds is None  # until idle, never a fixed time
    assert task.pool == f"apisync_{api}_normalizer"


def test_the_announce_function_is_importable_and_carries_no_payload():
    from airflow.providers.common.compat.module_loading import import_string

    announce = import_string(ANNOUNCE_FUNCTION)
    message = SimpleNamespace(topic=lambda: "stripe.webhooks", partition=lambda: 3, offset=lambda: 0,
                              value=lambda: b'{"secret": "x"}')
    event = announce(message)
    assert event == {"topic": "stripe.webhooks", "partition": 3, "offset": 0}
    assert event  # the provider's trigger fires only on a truthy result


def test_parsing_the_dag_file_builds_the_watchers_without_touching_kafka(no_kafka_at_parse_time):
    from airflow.dag_processing.collection import _find_all_assets
    from airflow.dag_processing.dagbag import DagBag
    from airflow.serialization.serialized_objects import LazyDeserializedDAG

    bag = DagBag(dag_folder=str(DAG_FILE), safe_mode=False)
    assert bag.import_errors == {}
    assert no_kafka_at_parse_time == []
    # What the DAG processor stores: one definition per asset, the last one met across every DAG and
    # task reference; the input topics must keep their watchers whichever reference comes last.
    serialized = [LazyDeserializedDAG.from_dag(dag) for dag in bag.dags.values()]
    assets = {asset.name: asset for asset in _find_all_assets(serialized)}
    for api in APIS:
        for topic in (f"{api}.changes", f"{api}.webhooks"):
            assert [w.name for w in assets[topic].watchers] == [f"{topic}.watcher"], topic
        assert not assets[f"{api}.records"].watchers
        assert bag.dags[f"{api}_normalize"].timetable.asset_condition is not None


def test_none_leaves_normalizing_to_the_follow_service():
    dags = api_dags("stripe", DagDefaults.from_env({"APISYNC_NORMALIZE_SCHEDULE": "none"}))
    assert dags["stripe_normalize"].schedule is None
    backfill = dags["stripe_backfill"]
    assert "normalize" not in backfill.task_ids and "normalize_seconds" not in backfill.params
    outlets = [a for dag in dags.values() for task in dag.tasks for a in task.outlets + task.inlets]
    assert not any(a.watchers for a in outlets)  # no trigger consumes anything


def test_a_cron_schedule_still_runs_until_idle():
    dag = api_dags("github", DagDefaults.from_env({"APISYNC_NORMALIZE_SCHEDULE": "*/2 * * * *"}))["github_normalize"]
    assert dag.schedule == "*/2 * * * *"
    assert dag.get_task("normalize").max_seconds is None


def test_the_watch_connection_is_configurable():
    defaults = DagDefaults.from_env({"APISYNC_KAFKA_WATCH_CONN_ID": "kafka_events"})
    dag = api_dags("stripe", defaults)["stripe_normalize"]
    kwargs = [w.trigger.serialize()[1] for ws in _watched(dag).values() for w in ws]
    assert {k["kafka_config_id"] for k in kwargs} == {"kafka_events"}


def test_the_operator_runs_until_idle_without_a_bound(connections, monkeypatch):
    from apisync.normalizer import NormalizerStats

    seen = {}

    def normalize(api, kafka_config, redis_url, max_seconds=None, api_settings=None, until_idle=False, metrics=None):
        seen.update(seconds=max_seconds, until_idle=until_idle)
        return NormalizerStats(batches=1, consumed=3, records=3, events=3)

    monkeypatch.setattr("apisync.normalizer.normalize", normalize)
    result = NormalizeChangesOperator(task_id="n", api="stripe").execute({})
    assert seen == {"seconds": None, "until_idle": True}
    assert result["consumed"] == 3
