"""Salesforce webhooks: an Outbound Message (SOAP, one notification per stored message: see
`outbound_messaging`), or a Standard Webhooks JSON relay: `data.record`, version = `SystemModstamp` in ms,
`*.deleted` is a delete.
"""

from __future__ import annotations

from collections.abc import Mapping

from apisync.apis.salesforce.outbound_messaging import observation as outbound_observation
from apisync.events import Observation, ObservationError, iso_to_ms
from apisync.webhooks.payloads import json_object


def parse_salesforce(body: bytes, headers: Mapping[str, str], synced_at: str) -> Observation:
    """A Salesforce Outbound Message (XML) or Standard Webhooks delivery (JSON) → an observation."""
    if body.lstrip()[:1] == b"<":
        return outbound_observation(body, synced_at, headers)
    doc = json_object(body)
    kind, data = doc.get("type"), doc.get("data")
    if not isinstance(kind, str) or not isinstance(data, dict):
        raise ObservationError("Salesforce delivery lacks type or data")
    sobject, ident = data.get("sobject"), data.get("Id")
    if not isinstance(sobject, str) or not ident:
        raise ObservationError("Salesforce delivery lacks data.sobject or data.Id")
    record = data.get("record")
    deleted = kind.endswith(".deleted")
    if isinstance(record, dict) and record.get("SystemModstamp"):
        version = iso_to_ms(record["SystemModstamp"])
        return Observation("salesforce", sobject.lower(), str(ident), version, "webhook", synced_at,
                           record, deleted, reason=f"Salesforce {kind} delivery" if deleted else None)
    if not doc.get("timestamp"):
        raise ObservationError("Salesforce delivery has neither record.SystemModstamp nor timestamp")
    # no snapshot: the delivery time orders it and the normalizer re-fetches the record
    return Observation("salesforce", sobject.lower(), str(ident), iso_to_ms(doc["timestamp"]),
                       "webhook", synced_at, None, deleted, not deleted,
                       reason=f"Salesforce {kind} delivery" if deleted else None)
