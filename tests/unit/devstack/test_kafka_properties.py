"""The broker properties devstack writes: the default stays PLAINTEXT only; sasl_users adds a SASL/PLAIN listener."""

from __future__ import annotations

import stat

import pytest

from devstack.errors import StackError
from devstack.kafka import KafkaCluster


def properties(cluster: KafkaCluster) -> dict[str, str]:
    node = cluster.nodes[0]
    cluster._write_properties(node)
    text = (node.data_dir / "server.properties").read_text()
    return dict(line.split("=", 1) for line in text.splitlines())


def test_the_default_broker_has_no_sasl_listener(tmp_path):
    cluster = KafkaCluster(tmp_path, ports=[19092])
    props = properties(cluster)
    assert props["listeners"] == f"PLAINTEXT://127.0.0.1:19092,CONTROLLER://127.0.0.1:{cluster.nodes[0].controller_port}"
    assert "sasl.enabled.mechanisms" not in props
    with pytest.raises(StackError, match="without sasl_users"):
        cluster.sasl_bootstrap  # noqa: B018


def test_sasl_users_add_a_loopback_sasl_plain_listener(tmp_path):
    cluster = KafkaCluster(tmp_path, sasl_users={"apisync": "pw-1", "other": "pw-2"})
    node, props = cluster.nodes[0], properties(cluster)
    assert f"SASL_PLAINTEXT://127.0.0.1:{node.sasl_port}" in props["listeners"].split(",")
    assert all("127.0.0.1:" in listener for listener in props["listeners"].split(","))  # loopback only
    assert props["advertised.listeners"].endswith(f"SASL_PLAINTEXT://127.0.0.1:{node.sasl_port}")
    assert props["inter.broker.listener.name"] == "PLAINTEXT"
    assert props["sasl.enabled.mechanisms"] == "PLAIN"
    jaas = props["listener.name.sasl_plaintext.plain.sasl.jaas.config"]
    assert jaas == ('org.apache.kafka.common.security.plain.PlainLoginModule required '
                    'user_apisync="pw-1" user_other="pw-2";')
    assert cluster.sasl_bootstrap == f"127.0.0.1:{node.sasl_port}"
    mode = stat.S_IMODE((node.data_dir / "server.properties").stat().st_mode)
    assert mode == 0o600  # it holds the passwords


@pytest.mark.parametrize("users", [{"a b": "pw"}, {"apisync": 'p"w'}])
def test_users_that_would_break_the_jaas_line_are_refused(tmp_path, users):
    with pytest.raises(StackError, match="SASL user"):
        properties(KafkaCluster(tmp_path, sasl_users=users))
