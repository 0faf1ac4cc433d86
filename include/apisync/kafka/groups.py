"""Consumer group names: one place, so the normalizers, the ledger's rebuild and the audit name the same group."""

from __future__ import annotations


def normalizer_group(api: str, namespace: str = "") -> str:
    """The consumer group of the normalizers of `api` (`apisync.kafka.normalizer_clients.consumer_config` uses it)."""
    return f"{namespace}apisync.normalizer.{api}"
