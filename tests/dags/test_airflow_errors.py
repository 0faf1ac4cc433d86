"""Errors map to Airflow by family: a FatalError fails the task at once, anything else is retried as it is."""

from __future__ import annotations

import pytest
from airflow.sdk.exceptions import AirflowFailException, AirflowNotFoundException, AirflowSkipException

from apisync.errors import FatalError, RetriableError
from apisync.http import FatalError as HttpFatalError
from apisync.http import RetriableError as HttpRetriableError
from apisync.kafka.connect import KafkaAuthenticationError
from apisync.kafka.producer import DeliveryError, ProducerConfigError
from apisync.sync import TooManyDeletes
from apisync_airflow.errors import UnrepairedDrift, airflow_errors
from apisync_airflow.hooks import ConnectionConfigError
from apisync_airflow.webhook_app import WebhookConfigError
from error_families import exception_classes, outside_the_families


class SomeFatal(FatalError):
    """A fatal error the mapping has never heard of by name."""


class SomeRetriable(RetriableError):
    """A retriable error the mapping has never heard of by name."""


def test_every_plugin_error_is_in_exactly_one_family():
    classes = exception_classes("apisync_airflow")
    assert "apisync_airflow.hooks.ConnectionConfigError" in classes  # not vacuous
    assert outside_the_families(classes, set()) == {}


@pytest.mark.parametrize("error", [
    SomeFatal("unrepairable"),
    HttpFatalError("stripe", "GET", "/v1/customers", 401, "Invalid API key"),
    KafkaAuthenticationError("Kafka at k:9092 refused the login"),
    ProducerConfigError("Kafka client config has no 'bootstrap.servers'"),
    ConnectionConfigError("connection 'stripe_default': no API token"),
    UnrepairedDrift("1 topic difference(s) need an operator"),
    WebhookConfigError("no Kafka for webhooks"),
    AirflowNotFoundException("The conn_id `stripe_default` isn't defined"),
    ImportError("no module named 'aws_msk_iam_sasl_signer'"),
], ids=lambda error: type(error).__name__)
def test_a_fatal_error_fails_the_task_at_once(error):
    with pytest.raises(AirflowFailException) as raised, airflow_errors("stripe backfill of customer"):
        raise error
    assert raised.value.__cause__ is error
    assert str(raised.value) == f"stripe backfill of customer: {error}"


@pytest.mark.parametrize("error", [
    SomeRetriable("try again"),
    HttpRetriableError("stripe", "GET", "/v1/customers", 503, "Service Unavailable"),
    DeliveryError("delivery to topic stripe.changes failed"),
    TooManyDeletes("stripe customer: 9 of 10 known objects are missing"),
    RuntimeError("not apisync's: retried too"),
    AirflowSkipException("backfill not finished yet"),
], ids=lambda error: type(error).__name__)
def test_anything_else_is_raised_as_it_is(error):  # Airflow retries it (a skip stays a skip)
    with pytest.raises(type(error)) as raised, airflow_errors("stripe backfill of customer"):
        raise error
    assert raised.value is error
