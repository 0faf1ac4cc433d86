"""The Kafka client config for processes outside Airflow: file (JSON, properties, a connection export),
APISYNC_KAFKA_* variables and --bootstrap, layered; callbacks imported; MSK IAM's token callback added;
no error or description ever carries a secret value."""

from __future__ import annotations

import json
import sys
import types

import pytest

from apisync.cli import build_parser, kafka_config, main
from apisync.kafka.config_loader import (
    KafkaConfigError,
    describe,
    load_kafka_config,
    msk_iam_token,
    setting_name,
)
from apisync.kafka.producer import redacted

SECRET = "s3cr3t-Pa55word-9f1c"
MSK = "b-1.demo.abcde1.c2.kafka.eu-west-1.amazonaws.com:9098"


def token_callback(_config: str) -> tuple[str, float]:
    """An oauth_cb named by dotted path in the tests' configs."""
    return "token", 0.0


@pytest.fixture
def write(tmp_path):
    def write(name: str, text: str):
        path = tmp_path / name
        path.write_text(text)
        return path
    return write


SASL = {"bootstrap.servers": "k:9093", "security.protocol": "SASL_SSL", "sasl.mechanisms": "SCRAM-SHA-512",
        "sasl.username": "apisync", "sasl.password": SECRET, "ssl.ca.location": "/etc/ca.pem"}
PROPERTIES = f"""# a client.properties
bootstrap.servers=k:9093
security.protocol = SASL_SSL
! a Java-style comment
sasl.mechanisms: SCRAM-SHA-512
sasl.username=apisync
sasl.password={SECRET}
ssl.ca.location=/etc/\\
  ca.pem
"""


@pytest.mark.parametrize("name, text", [
    ("kafka.json", json.dumps(SASL)),
    ("client.properties", PROPERTIES),
    ("conn.json", json.dumps({"conn_type": "kafka", "extra": SASL})),  # an Airflow connection, exported
    ("conn-string-extra.json", json.dumps({"conn_type": "kafka", "extra": json.dumps(SASL)})),
])
def test_every_file_form_gives_the_full_client_config(write, name, text):
    assert load_kafka_config(write(name, text), env={}) == SASL


def test_variables_override_the_file_and_bootstrap_overrides_both(write):
    path = write("kafka.json", json.dumps({**SASL, "sasl.password": "placeholder"}))
    env = {"APISYNC_KAFKA_CONFIG": str(path), "APISYNC_KAFKA_SASL_PASSWORD": SECRET,
           "APISYNC_KAFKA_BOOTSTRAP": "env:1", "APISYNC_KAFKA_WATCH_CONN_ID": "kafka_watch"}
    assert load_kafka_config(env=env) == {**SASL, "bootstrap.servers": "env:1"}
    assert load_kafka_config(env=env, bootstrap="flag:2")["bootstrap.servers"] == "flag:2"


@pytest.mark.parametrize("tail, name", [
    ("SASL_MECHANISMS", "sasl.mechanisms"),
    ("SSL_ENDPOINT_IDENTIFICATION_ALGORITHM", "ssl.endpoint.identification.algorithm"),
    ("OAUTH__CB", "oauth_cb"),
])
def test_variable_names_follow_the_confluent_image_convention(tail, name):
    assert setting_name(tail) == name


def test_the_cli_takes_kafka_config_before_or_after_the_command(write, monkeypatch):
    monkeypatch.delenv("APISYNC_KAFKA_BOOTSTRAP", raising=False)
    monkeypatch.delenv("APISYNC_KAFKA_CONFIG", raising=False)
    path = write("kafka.json", json.dumps(SASL))
    for argv in (["--kafka-config", str(path), "topics", "check"],
                 ["normalize", "stripe", "--kafka-config", str(path)]):
        assert kafka_config(build_parser().parse_args(argv)) == SASL


def test_a_config_without_bootstrap_says_where_to_set_it():
    with pytest.raises(KafkaConfigError, match="APISYNC_KAFKA_CONFIG's file, APISYNC_KAFKA_BOOTSTRAP or --bootstrap"):
        load_kafka_config(env={"APISYNC_KAFKA_SASL_USERNAME": "u"})


@pytest.mark.parametrize("name, text, said", [
    ("broken.properties", f"bootstrap.servers=k:1\n{SECRET}\n", "line 2: expected key=value"),
    ("broken.json", f'{{"sasl.password": "{SECRET}",,}}', "not valid JSON (line 1)"),
    ("nested.json", json.dumps({"sasl.password": SECRET, "x": {"y": SECRET}}), "expected an object of librdkafka"),
])
def test_unreadable_files_are_one_line_naming_the_place_never_the_value(write, capsys, name, text, said):
    path = write(name, text)
    with pytest.raises(KafkaConfigError) as failed:
        load_kafka_config(path, env={})
    assert said in str(failed.value) and SECRET not in str(failed.value)
    assert main(["--kafka-config", str(path), "topics", "check"]) == 2  # the CLI: one line, exit 2
    err = capsys.readouterr().err
    assert said in err and SECRET not in err and "Traceback" not in err


def test_dotted_callbacks_are_imported(write):
    path = write("kafka.json", json.dumps({"bootstrap.servers": "k:1", "oauth_cb": f"{__name__}.token_callback"}))
    assert load_kafka_config(path, env={})["oauth_cb"] is token_callback
    with pytest.raises(KafkaConfigError, match="oauth_cb: cannot import 'nowhere.cb'"):
        load_kafka_config(env={"APISYNC_KAFKA_BOOTSTRAP": "k:1", "APISYNC_KAFKA_OAUTH__CB": "nowhere.cb"})


@pytest.fixture
def msk_signer(monkeypatch):
    """The AWS signer's module, answering (token, expiry in epoch milliseconds) for the region asked."""
    asked: list[str] = []
    signer = types.ModuleType("aws_msk_iam_sasl_signer")

    class MSKAuthTokenProvider:
        @staticmethod
        def generate_auth_token(region):
            asked.append(region)
            return "msk-token", 1_700_000_000_000

    signer.MSKAuthTokenProvider = MSKAuthTokenProvider
    monkeypatch.setitem(sys.modules, "aws_msk_iam_sasl_signer", signer)
    return asked


def test_msk_iam_gets_the_token_callback_for_its_region(msk_signer):
    config = load_kafka_config(env={"APISYNC_KAFKA_BOOTSTRAP": MSK, "APISYNC_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
                                    "APISYNC_KAFKA_SASL_MECHANISM": "OAUTHBEARER"})
    assert config["oauth_cb"]("ignored") == ("msk-token", 1_700_000_000.0)
    assert msk_signer == ["eu-west-1"]
    assert msk_iam_token("us-east-1", "") == ("msk-token", 1_700_000_000.0)


@pytest.mark.parametrize("extra", [
    {"APISYNC_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512"},  # MSK with SCRAM needs no token
    {"APISYNC_KAFKA_SASL_MECHANISM": "OAUTHBEARER", "APISYNC_KAFKA_OAUTH__CB": f"{__name__}.token_callback"},
])
def test_msk_iam_callback_is_added_only_when_needed_and_never_replaces_one(msk_signer, extra):
    config = load_kafka_config(env={"APISYNC_KAFKA_BOOTSTRAP": MSK, **extra})
    assert config.get("oauth_cb") in (None, token_callback)
    assert msk_signer == []


def test_msk_iam_without_the_signer_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "aws_msk_iam_sasl_signer", None)  # import fails
    with pytest.raises(KafkaConfigError, match="pip install aws-msk-iam-sasl-signer-python"):
        load_kafka_config(env={"APISYNC_KAFKA_BOOTSTRAP": MSK, "APISYNC_KAFKA_SASL_MECHANISMS": "OAUTHBEARER"})


def test_describe_and_redacted_show_no_secret():
    config = {**SASL, "ssl.key.password": SECRET, "sasl.oauthbearer.config": f"clientSecret={SECRET}",
              "sasl.oauthbearer.client.secret": SECRET, "oauth_cb": token_callback}
    line = describe(config)
    assert line.startswith("Kafka at k:9093 (SASL_SSL; SCRAM-SHA-512 as user 'apisync'; token callback; secrets set:")
    assert SECRET not in line and SECRET not in repr(redacted(config))
