"""A malformed page fails the run with one line naming API, endpoint and cursor; the checkpoint stays.
A malformed checkpoint fails it at once, naming the key and the reset that recovers."""

from __future__ import annotations

import httpx
import pytest
from sync_helpers import settings_for

from apisync.checkpoints import CheckpointStore, MalformedCheckpoint
from apisync.http import ApiError, MalformedResponseError, RetriableError
from apisync.kafka.producer import Producer, client_config
from apisync.kafka.topics import CHECKPOINTS_TOPIC
from apisync.registry import build_source
from apisync.sync import run_backfill

pytestmark = pytest.mark.integration


@pytest.mark.parametrize(("fault", "error"), [("malformed_json", MalformedResponseError),
                                              ("truncated", RetriableError)])
def test_bad_page_after_a_good_one_keeps_the_checkpoint(fault, error, clean_slate, kafka_config, redis_url,
                                                       simulator_url):
    clean_slate(seed=3, objects=30)
    settings = settings_for("stripe", kafka_config, redis_url, simulator_url, page_size=10)
    source = build_source(settings.api)

    class BreaksAfterPageOne:
        """The real source; the API breaks once its first page is in hand (the backfill fetches ahead of
        its commits, so a fault switched on from on_progress would land pages too late)."""

        api, collections, incremental_start = source.api, source.collections, source.incremental_start

        def backfill(self, *args):
            for number, batch in enumerate(source.backfill(*args), 1):
                if number == 1:
                    httpx.post(f"{simulator_url}/_admin/faults",
                               json={"kind": fault, "api": "stripe", "path_prefix": "/v1/customers", "count": None})
                yield batch

    with pytest.raises(ApiError) as raised:
        run_backfill(settings, "customer", source=BreaksAfterPageOne())
    assert isinstance(raised.value, error)  # a truncated body is a broken connection to httpx
    message = str(raised.value)
    assert "\n" not in message
    assert "stripe GET /v1/customers" in message and "starting_after=cus_" in message
    assert "sk_test_apisync" not in message
    checkpoint = CheckpointStore(kafka_config).load("stripe.backfill.customer")
    assert checkpoint["pages"] == 1 and not checkpoint["done"]
    assert checkpoint["cursor"]["page"]["after"] in message  # the failed request started at the checkpoint

    httpx.delete(f"{simulator_url}/_admin/faults")
    resumed = run_backfill(settings, "customer")
    assert resumed.pages == 2 and resumed.records == 20  # pages 2 and 3 only


def test_a_malformed_checkpoint_fails_the_run_at_once_and_a_reset_recovers(clean_slate, kafka_config, redis_url,
                                                                           simulator_url):
    clean_slate(seed=3, objects=30)
    settings = settings_for("stripe", kafka_config, redis_url, simulator_url, page_size=10)
    key = "stripe.backfill.customer"
    garbage = Producer(client_config(kafka_config))
    garbage.produce(CHECKPOINTS_TOPIC, key, b'{"pages": 2}')  # e.g. a hand-written value without a cursor
    garbage.flush(30)

    with pytest.raises(MalformedCheckpoint) as raised:
        run_backfill(settings, "customer")
    assert str(raised.value) == (f"checkpoint '{key}' has no cursor object; "
                                 f"`python -m apisync cursor reset {key}` makes the next run re-read the collection")

    CheckpointStore(kafka_config).reset(key)
    recovered = run_backfill(settings, "customer")
    assert recovered.records == 30 and CheckpointStore(kafka_config).load(key)["done"]
