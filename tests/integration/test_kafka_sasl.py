"""SASL/PLAIN end to end: a broker with a SASL_PLAINTEXT listener (devstack, loopback), an Airflow `kafka`
connection in the provider's JSON-extra form, read through apisync's hook; a real backfill produces through
it and the normalizer reads it back. A wrong password fails at once, in one line, and no password is ever
printed or logged."""

from __future__ import annotations

import json
import logging
import secrets

import pytest
import redis
from airflow.sdk.exceptions import AirflowFailException
from sync_helpers import normalize_until_consumed, settled_read

from apisync.kafka.admin import admin_client, ensure
from apisync.kafka.connect import KafkaAuthenticationError
from apisync.kafka.topics import declared_topics
from apisync.normalizer import open_normalizer
from apisync_airflow.hooks import KafkaConfigHook
from apisync_airflow.operators import BackfillApiToKafkaOperator
from devstack.airflow import connection_env
from devstack.kafka import KafkaCluster

pytestmark = pytest.mark.integration
PASSWORD = f"sasl-{secrets.token_hex(8)}"  # random: an assertion cannot pass by luck
WRONG = f"wrong-{secrets.token_hex(8)}"


@pytest.fixture(scope="module")
def sasl_cluster(tmp_path_factory):
    """A one-node broker whose clients must log in with SASL/PLAIN (about 5 s to start on an idle machine)."""
    # One partition for the group and transaction logs: their default 50 take seconds to create on first use.
    small = {"offsets.topic.num.partitions": 1, "transaction.state.log.num.partitions": 1}
    cluster = KafkaCluster(tmp_path_factory.mktemp("kafka-sasl"), sasl_users={"apisync": PASSWORD},
                           properties=small).start()
    yield cluster
    cluster.stop()


def use_connections(monkeypatch, cluster, redis_url, simulator_url, password) -> None:
    """`kafka_default` as the Kafka provider's connection: the client config in its JSON extra."""
    for name, value in connection_env(cluster.sasl_bootstrap, redis_url, simulator_url).items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AIRFLOW_CONN_KAFKA_DEFAULT", json.dumps({"conn_type": "kafka", "extra": {
        "bootstrap.servers": cluster.sasl_bootstrap, "security.protocol": "SASL_PLAINTEXT",
        "sasl.mechanisms": "PLAIN", "sasl.username": "apisync", "sasl.password": password}}))


def test_a_sasl_plain_connection_carries_a_backfill_to_the_normalizer(monkeypatch, sasl_cluster, clean_slate,
                                                                      redis_url, simulator_url):
    clean_slate(seed=31, objects=60, topics=False)  # Redis and the simulator; this test has its own broker
    use_connections(monkeypatch, sasl_cluster, redis_url, simulator_url, PASSWORD)
    config = KafkaConfigHook("kafka_default").get_config()
    assert (config["security.protocol"], config["bootstrap.servers"]) == ("SASL_PLAINTEXT", sasl_cluster.sasl_bootstrap)
    ensure(admin_client(config), declared_topics(apis=("stripe",)))

    result = BackfillApiToKafkaOperator(task_id="b", api="stripe", collection="customer").execute({})
    assert result["records"] == 60

    consumed = normalize_until_consumed("stripe", config, redis.Redis.from_url(redis_url), expected=60)
    assert consumed == 60
    records = settled_read(config, "stripe.records")
    assert len({m.key() for m in records}) == 60


def test_a_wrong_password_fails_at_once_in_one_line_without_the_password(monkeypatch, sasl_cluster, redis_url,
                                                                         simulator_url, caplog, capfd):
    use_connections(monkeypatch, sasl_cluster, redis_url, simulator_url, WRONG)
    caplog.set_level(logging.DEBUG)
    with pytest.raises(AirflowFailException) as failed:  # fatal: a retry with the same password cannot help
        BackfillApiToKafkaOperator(task_id="b", api="stripe", collection="customer").execute({})
    message = str(failed.value)
    assert "\n" not in message
    assert f"Kafka at {sasl_cluster.sasl_bootstrap} refused the login (SASL_PLAINTEXT, PLAIN as user 'apisync')" \
        in message
    assert "Invalid username or password" in message

    config = KafkaConfigHook("kafka_default").get_config()
    with pytest.raises(KafkaAuthenticationError, match="refused the login"):
        open_normalizer("stripe", config, redis.Redis.from_url(redis_url))

    out, err = capfd.readouterr()
    for secret in (WRONG, PASSWORD):
        assert secret not in message
        assert secret not in caplog.text
        assert secret not in out + err
