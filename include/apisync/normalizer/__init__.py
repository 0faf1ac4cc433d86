"""The normalizer: `<api>.changes` + `<api>.webhooks` → `<api>.records` / `<api>.events`, one writer per key."""

from apisync.normalizer.loop import (
    DEFAULT_BATCH_SIZE,
    DEFER_WAIT_S,
    Normalizer,
    NormalizerMetrics,
    NormalizerSetupError,
    NormalizerStats,
    known_collection,
    missing_topics,
    normalize,
    open_normalizer,
    opened_normalizer,
    output_topics,
    refetch_options,
    tune_gc,
)

__all__ = ["DEFAULT_BATCH_SIZE", "DEFER_WAIT_S", "Normalizer", "NormalizerMetrics", "NormalizerSetupError",
           "NormalizerStats", "known_collection", "missing_topics", "normalize", "open_normalizer",
           "opened_normalizer", "output_topics", "refetch_options", "tune_gc"]
