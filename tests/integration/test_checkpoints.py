"""Checkpoints on the real broker: committed with their page or not at all; load, load_all, reset; the CLI."""

import dataclasses
import uuid

import orjson
import pytest
from confluent_kafka.admin import AdminClient
from sync_helpers import settled_read

from apisync.checkpoints import CheckpointStore, PageWriter, checkpoint_key, checkpoint_value, transactional_id
from apisync.cli import main
from apisync.kafka.admin import ensure
from apisync.kafka.producer import Outgoing, TransactionError
from apisync.kafka.topics import CHECKPOINTS_TOPIC, Layout, checkpoints_topic

pytestmark = pytest.mark.integration


@pytest.fixture
def topics(kafka_config):
    """A private data topic and checkpoint topic (declared config) per test."""
    uid = uuid.uuid4().hex[:8]
    layout = Layout(partitions=3)
    data = dataclasses.replace(checkpoints_topic(layout), name=f"t{uid}.changes", partitions=3,
                               config={"cleanup.policy": "delete"})
    cursors = dataclasses.replace(checkpoints_topic(layout), name=f"t{uid}.checkpoints")
    ensure(AdminClient(kafka_config), [data, cursors])
    return data.name, cursors.name


def page(topic: str, page_no: int, size: int = 5) -> list[Outgoing]:
    return [Outgoing(topic, f"stripe.customer.cus_{page_no}_{i}", {"page": page_no, "i": i}) for i in range(size)]


def test_committed_page_makes_data_and_checkpoint_visible_together(kafka_config, topics):
    data, cursors = topics
    key = checkpoint_key("stripe", "backfill", "customer")
    writer = PageWriter.for_key(kafka_config, key, topic=cursors)

    writer.write_page(page(data, 1), key, checkpoint_value({"starting_after": "cus_1_4"}, pages=1))

    keys = sorted(m.key().decode() for m in settled_read(kafka_config, data))
    assert keys == [f"stripe.customer.cus_1_{i}" for i in range(5)]
    loaded = CheckpointStore(kafka_config, topic=cursors).load(key)
    assert (loaded["cursor"], loaded["pages"], loaded["done"]) == ({"starting_after": "cus_1_4"}, 1, False)
    assert loaded["updated_at"].endswith("Z")
    assert writer.transactional_id == transactional_id(key) == "apisync.stripe.backfill.customer"


def test_aborted_page_leaves_neither_data_nor_checkpoint(kafka_config, topics):
    data, cursors = topics
    key = checkpoint_key("github", "incremental", "issue")
    writer = PageWriter.for_key(kafka_config, key, topic=cursors)
    writer.write_page(page(data, 1), key, checkpoint_value({"since": "2026-11-01T00:00:00Z"}, pages=1))

    def crashing_page():
        yield from page(data, 2)[:3]
        raise ConnectionError("API died mid-page")

    with pytest.raises(ConnectionError):
        writer.write_page(crashing_page(), key, checkpoint_value({"since": "2026-11-02T00:00:00Z"}, pages=2))

    store = CheckpointStore(kafka_config, topic=cursors)
    assert store.load(key)["cursor"] == {"since": "2026-11-01T00:00:00Z"}
    assert {orjson.loads(m.value())["page"] for m in settled_read(kafka_config, data)} == {1}
    # The same writer goes on after an abort: the retried page commits.
    writer.write_page(page(data, 2), key, checkpoint_value({"since": "2026-11-02T00:00:00Z"}, pages=2))
    assert store.load(key)["cursor"] == {"since": "2026-11-02T00:00:00Z"}
    assert len(settled_read(kafka_config, data)) == 10


def test_reset_forgets_one_key_and_load_all_filters_by_prefix(kafka_config, topics):
    data, cursors = topics
    keys = [checkpoint_key("stripe", "backfill", c) for c in ("customer", "invoice")] + ["github.backfill.issue"]
    for n, key in enumerate(keys):
        PageWriter.for_key(kafka_config, key, topic=cursors).write_page(
            page(data, n, size=1), key, checkpoint_value({"page": n}, pages=n, done=n == 2))
    store = CheckpointStore(kafka_config, topic=cursors)
    assert list(store.load_all("stripe.")) == keys[:2]

    store.reset(keys[0])

    assert store.load(keys[0]) is None
    assert {k: v["cursor"] for k, v in store.load_all().items()} == {keys[1]: {"page": 1}, keys[2]: {"page": 2}}


def test_cli_cursor_show_and_reset_on_the_declared_topic(kafka_config, kafka_bootstrap, capsys):
    ensure(AdminClient(kafka_config), [checkpoints_topic(Layout())])
    key = checkpoint_key(f"cli{uuid.uuid4().hex[:6]}", "backfill", "customer")
    PageWriter.for_key(kafka_config, key).write_page([], key, checkpoint_value({"starting_after": "cus_9"}, pages=3))

    assert main(["--bootstrap", kafka_bootstrap, "cursor", "show", key.split(".")[0]]) == 0
    shown = capsys.readouterr().out
    assert shown.startswith(key + "\t") and '"starting_after":"cus_9"' in shown and '"pages":3' in shown

    assert main(["cursor", "reset", key, "--bootstrap", kafka_bootstrap]) == 0
    assert CheckpointStore(kafka_config, topic=CHECKPOINTS_TOPIC).load(key) is None
    assert main(["--bootstrap", kafka_bootstrap, "cursor", "show", key]) == 0
    assert "no checkpoints" in capsys.readouterr().out


def test_restarted_worker_fences_the_old_one_for_the_same_job(kafka_config, topics):
    data, cursors = topics
    key = checkpoint_key("salesforce", "backfill", "account")
    zombie = PageWriter.for_key(kafka_config, key, topic=cursors)
    PageWriter.for_key(kafka_config, key, topic=cursors).write_page(
        page(data, 1), key, checkpoint_value({"next": "/q/2"}, pages=1))

    with pytest.raises(TransactionError, match="fenced"):
        zombie.write_page(page(data, 9), key, checkpoint_value({"next": "/q/99"}, pages=9))

    assert CheckpointStore(kafka_config, topic=cursors).load(key)["cursor"] == {"next": "/q/2"}
    assert {orjson.loads(m.value())["page"] for m in settled_read(kafka_config, data)} == {1}
