"""The normalizer: `<api>.changes` + `<api>.webhooks` → `<api>.records` / `<api>.events`, one writer per key.

Each batch is ONE Kafka transaction: consume (read_committed) → parse → version fence (Redis,
`apisync.fence`) → records, tombstones, events and dead letters, produced chunk by chunk as Redis
judges them, together with the consumed offsets (`send_offsets_to_transaction`) → commit. The
consumer group gives each partition one owner; the `range` assignor keeps partition N of both input
topics on the same member (both topics have the same partition count and murmur2 placement, so a key
lives on the same N in both). A static `group.instance.id` lets a restarted worker take its partitions
back at once, and reusing the transactional.id makes `init_transactions` abort whatever the dead
worker left open.

By job: `setup` opens a normalizer (Kafka clients from `apisync.kafka.normalizer_clients`, the output-topic
check, the ledger, the re-fetch client) and holds the entry points; `loop` is the batch loop and its
transaction; `prepare` parses a batch and makes its re-fetches before the transaction; `ties` settles
equal-version ties; `deferrals` writes back messages whose re-fetch failed transiently; `partitions` keeps
the assigned partitions' positions, committed offsets and owner epochs; `batch` is a batch's working
state; `stats` what a run did and its metrics.
"""

from apisync.normalizer.deferrals import DEFER_WAIT_S
from apisync.normalizer.loop import DEFAULT_BATCH_SIZE, Normalizer, known_collection
from apisync.normalizer.setup import (
    NormalizerSetupError,
    missing_topics,
    normalize,
    open_normalizer,
    opened_normalizer,
    output_topics,
    refetch_options,
    tune_gc,
)
from apisync.normalizer.stats import NormalizerMetrics, NormalizerStats

__all__ = ["DEFAULT_BATCH_SIZE", "DEFER_WAIT_S", "Normalizer", "NormalizerMetrics", "NormalizerSetupError",
           "NormalizerStats", "known_collection", "missing_topics", "normalize", "open_normalizer",
           "opened_normalizer", "output_topics", "refetch_options", "tune_gc"]
