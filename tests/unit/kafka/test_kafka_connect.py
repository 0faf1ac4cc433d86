"""The one-line message of a refused Kafka login: where, how, as whom, what the broker said; never a secret."""

from __future__ import annotations

from apisync.kafka.connect import authentication_message

CONF = {"bootstrap.servers": "127.0.0.1:9093", "security.protocol": "SASL_SSL", "sasl.mechanisms": "PLAIN",
        "sasl.username": "apisync", "sasl.password": "hunter2-secret"}


def test_the_message_names_the_broker_mechanism_and_user_in_one_line():
    reason = ("sasl_ssl://127.0.0.1:9093/bootstrap: SASL authentication error: Authentication failed: "
              "Invalid username or password (after 301ms in state AUTH_REQ)")
    assert authentication_message(CONF, reason) == (
        "Kafka at 127.0.0.1:9093 refused the login (SASL_SSL, PLAIN as user 'apisync'): SASL authentication "
        "error: Authentication failed: Invalid username or password; check the Kafka connection's credentials")


def test_a_secret_echoed_by_the_broker_is_masked():
    message = authentication_message(CONF, "line one hunter2-secret\nline two")
    assert "hunter2-secret" not in message and "***" in message and "\n" not in message
