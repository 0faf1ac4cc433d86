"""PageWriter.write_pages: several pages in one transaction, the checkpoint last, failpoints per page."""

import orjson
import pytest

from apisync import checkpoints
from apisync.checkpoints import PageWriter
from apisync.kafka.producer import Outgoing, Producer


class FakeClient:
    def __init__(self, conf):
        self.conf, self.log = conf, []

    def init_transactions(self, timeout): self.log.append("init")
    def begin_transaction(self): self.log.append("begin")
    def commit_transaction(self, timeout): self.log.append("commit")
    def abort_transaction(self, timeout): self.log.append("abort")
    def poll(self, timeout=0): return 0
    def flush(self, timeout=None): return 0
    def __len__(self): return 0

    # confluent-kafka's order: apisync passes value and key positionally
    def produce(self, topic, value=None, key=None, partition=-1, on_delivery=None, timestamp=0, headers=None):
        self.log.append((topic, key, value))


@pytest.fixture
def writer(monkeypatch):
    passes = []
    monkeypatch.setattr(checkpoints, "failpoint", lambda name: passes.append(name))
    holder = {}

    def factory(conf):
        holder["client"] = FakeClient(conf)
        return holder["client"]

    producer = Producer({"bootstrap.servers": "x:1", "transactional.id": "t"}, client_factory=factory)
    return PageWriter(producer, topic="cp"), holder["client"], passes


def test_pages_and_the_last_checkpoint_go_in_one_transaction(writer):
    page_writer, client, passes = writer
    pages = [[Outgoing("stripe.changes", f"k{p}{i}", {"p": p}) for i in range(2)] for p in (1, 2, 3)]
    page_writer.write_pages(pages, "stripe.backfill.customer", {"cursor": {"page": 3}, "pages": 3})
    entries = [entry for entry in client.log if entry != "init"]
    assert entries[0] == "begin" and entries[-1] == "commit" and entries.count("begin") == 1
    produced = [entry for entry in entries if isinstance(entry, tuple)]
    assert [key for _t, key, _v in produced] == [b"k10", b"k11", b"k20", b"k21", b"k30", b"k31",
                                                 b"stripe.backfill.customer"]
    assert orjson.loads(produced[-1][2])["cursor"] == {"page": 3}
    # each page passes its failpoints: "page N produced, not committed" keeps its meaning when grouped
    assert passes == ["page.before_produce", "page.after_produce"] * 3 + ["page.after_commit"] * 3


def test_one_page_is_the_old_write_page(writer):
    page_writer, client, passes = writer
    page_writer.write_page([Outgoing("stripe.changes", "k", {"a": 1})], "key", {"cursor": {}})
    assert passes == ["page.before_produce", "page.after_produce", "page.after_commit"]
    assert [e for e in client.log if e in ("begin", "commit")] == ["begin", "commit"]


def test_a_failure_mid_group_aborts_the_whole_transaction(writer):
    page_writer, client, _passes = writer

    def broken():
        yield Outgoing("stripe.changes", "k", {"a": 1})
        raise RuntimeError("page 2 could not be built")

    with pytest.raises(RuntimeError, match="page 2"):
        page_writer.write_pages([[Outgoing("stripe.changes", "k0", {})], broken()], "key", {"cursor": {}})
    assert "abort" in client.log and "commit" not in client.log
    assert not any(isinstance(e, tuple) and e[1] == b"key" for e in client.log)  # no checkpoint produced
