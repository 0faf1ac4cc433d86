"""Salesforce Outbound Messaging: the SOAP `notifications` message in, one Kafka message per notification.

Shape (SOAP API Developer Guide, "Understanding the Outbound Messaging WSDL"): a SOAP 1.1 envelope
whose body holds `notifications` (namespace http://soap.sforce.com/2005/09/outbound) with
`OrganizationId`, `ActionId`, `SessionId` (nillable), `EnterpriseUrl`, `PartnerUrl` and up to 100
`Notification` elements, each an `Id` (stable across retries: "use this ID to track ... resent"
notifications) and an `sObject` (`xsi:type="sf:Account"`, namespace urn:sobject.enterprise.soap.sforce.com)
holding the fields chosen when the message was set up. The listener acknowledges with
`notificationsResponse/Ack = true`; without it Salesforce retries the whole message (for up to 24 h).

The receiver splits a message into single-notification documents so the normalizer keeps its
one-message-one-observation contract, and drops `SessionId` on the way: it is a live Salesforce
session and must not be stored in Kafka. A SOAP message must not contain a DTD (SOAP 1.1, §3), so a
body declaring one is refused before parsing (no entity expansion).

Who sent it ("Considerations for Security", SOAP API Developer Guide,
https://developer.salesforce.com/docs/atlas.en-us.api.meta/api/sforce_api_om_outboundmessaging_security.htm):
a message is unsigned and `OrganizationId` is no secret, so Salesforce asks the listener to make sure no
third party can post while pretending to be Salesforce: accept only Salesforce's IP ranges (Help article
000321501; that proves Salesforce sent it, not which org), validate the Salesforce client certificate at
the TLS layer (the TLS terminator's job, in front of the receiver), and check the organisation. The one
secret an Outbound Message can carry is its endpoint URL, so the receiver requires a secret path segment
(`path_secret_matches`), optionally an IP allow-list (`sender_allowed`), besides the organisation.
"Send Session ID" stays off: the session is not needed.

What it says is still not trusted beyond the server's clock: a pushed `SystemModstamp` later than the
receiving server's clock (its `apisync-received-at` header, else the normalizer's) plus
`MAX_CLOCK_SKEW_S` would outrank every real update of that record for as long as the clock takes to get
there. Such a notification becomes thin: the object is re-fetched from the API and fenced at the version
the API gives (`UNCONFIRMED_VERSION` never outranks it).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from apisync.apis.salesforce.source import COLLECTION_OF_TYPE, row_from_soap
from apisync.events import Observation, ObservationError, iso_to_ms

SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
OUTBOUND = "http://soap.sforce.com/2005/09/outbound"
SOBJECT = "urn:sobject.enterprise.soap.sforce.com"
XSI = "http://www.w3.org/2001/XMLSchema-instance"
MAX_NOTIFICATIONS = 100  # the WSDL's maxOccurs
CONTENT_TYPE = "text/xml; charset=utf-8"
RECEIVED_AT_HEADER = "apisync-received-at"  # the receiving server's clock, set by the receiver
# How far a pushed SystemModstamp may run ahead of the receiving clock: two NTP-synced servers stay far
# closer, and an honest stamp is never later than the moment Salesforce sends it.
MAX_CLOCK_SKEW_S = 300
# The version of a notification whose stamp is not trusted: below any real stamp, so the re-fetched
# object keeps the API's own version (`refetch.refreshed` keeps the higher one). A re-fetch that finds
# the object gone yields a delete at this version, which the fence finds stale: deletes are left to
# polling and reconcile, as for every Outbound Message (rules fire on create and edit only).
UNCONFIRMED_VERSION = 0

log = logging.getLogger("apisync.webhooks")

for _prefix, _uri in (("soapenv", SOAP_ENV), ("", OUTBOUND), ("sf", SOBJECT), ("xsi", XSI)):
    ET.register_namespace(_prefix, _uri)


class OutboundMessageError(ObservationError):
    """A body that is not a usable Outbound Message; the receiver answers 400 with a SOAP fault."""


@dataclass(frozen=True, slots=True)
class Notification:
    """One notification: its Id, the sObject type and id, and the raw element (for re-serializing)."""

    id: str
    sobject: str
    object_id: str
    element: ET.Element

    @property
    def record_key(self) -> str | None:
        """`salesforce.<collection>.<Id>` for a synced type, else None."""
        collection = COLLECTION_OF_TYPE.get(self.sobject)
        return f"salesforce.{collection}.{self.object_id}" if collection else None


@dataclass(frozen=True, slots=True)
class OutboundMessage:
    """The parsed `notifications` element."""

    organization_id: str
    action_id: str
    notifications: tuple[Notification, ...]
    header: tuple[ET.Element, ...]  # OrganizationId, ActionId, EnterpriseUrl, PartnerUrl (no SessionId)


def _q(ns: str, name: str) -> str:
    return f"{{{ns}}}{name}"


def _text(parent: ET.Element, ns: str, name: str) -> str:
    child = parent.find(_q(ns, name))
    if child is None or not (child.text or "").strip():
        raise OutboundMessageError(f"Outbound Message lacks {name}")
    return child.text.strip()


def parse_envelope(body: bytes) -> OutboundMessage:
    """Parse and check a SOAP Outbound Message (OutboundMessageError says what is wrong)."""
    if b"<!doctype" in body[:4096].lower() or b"<!entity" in body.lower():
        raise OutboundMessageError("a SOAP message must not contain a document type declaration")
    try:
        root = ET.fromstring(body)
    except ET.ParseError as exc:
        raise OutboundMessageError(f"body is not well-formed XML ({exc})") from None
    notifications = root.find(f"{_q(SOAP_ENV, 'Body')}/{_q(OUTBOUND, 'notifications')}")
    if root.tag != _q(SOAP_ENV, "Envelope") or notifications is None:
        raise OutboundMessageError("body is not a SOAP envelope holding an Outbound Messaging notifications element")
    items = tuple(_notification(n) for n in notifications.findall(_q(OUTBOUND, "Notification")))
    if not 1 <= len(items) <= MAX_NOTIFICATIONS:
        raise OutboundMessageError(f"Outbound Message holds {len(items)} notifications (1 to 100 allowed)")
    header = tuple(child for child in notifications if child.tag in
                   {_q(OUTBOUND, n) for n in ("OrganizationId", "ActionId", "EnterpriseUrl", "PartnerUrl")})
    return OutboundMessage(_text(notifications, OUTBOUND, "OrganizationId"),
                           _text(notifications, OUTBOUND, "ActionId"), items, header)


def _notification(element: ET.Element) -> Notification:
    sobject = element.find(_q(OUTBOUND, "sObject"))
    if sobject is None:
        raise OutboundMessageError("a Notification lacks its sObject")
    kind = sobject.get(_q(XSI, "type"), "")
    return Notification(_text(element, OUTBOUND, "Id"), kind.rpartition(":")[2],
                        _text(sobject, SOBJECT, "Id"), element)


def same_org(given: str, configured: tuple[str, ...]) -> bool:
    """True if `given` is one of the configured organisations (18-char ids extend the 15-char ones)."""
    return any(len(given) >= 15 and len(org) >= 15 and given[:15] == org[:15] for org in configured)


def single_notification_body(message: OutboundMessage, notification: Notification) -> bytes:
    """A SOAP document like the original but with this one notification and no SessionId."""
    envelope = ET.Element(_q(SOAP_ENV, "Envelope"))
    notifications = ET.SubElement(ET.SubElement(envelope, _q(SOAP_ENV, "Body")), _q(OUTBOUND, "notifications"))
    notifications.extend(message.header)
    notifications.append(notification.element)
    return ET.tostring(envelope, encoding="utf-8", xml_declaration=True)


def observation(body: bytes, synced_at: str, headers: Mapping[str, str] | None = None) -> Observation:
    """One stored single-notification message → an observation (thin unless every declared field is there
    and its SystemModstamp is not later than the receiving clock allows)."""
    message = parse_envelope(body)
    if len(message.notifications) != 1:
        raise ObservationError("a stored Outbound Message must hold exactly one notification (the receiver splits)")
    note = message.notifications[0]
    collection = COLLECTION_OF_TYPE.get(note.sobject)
    if collection is None:
        raise ObservationError(f"Outbound Message for sObject {note.sobject!r}, which is not synced")
    values = _values(note.element.find(_q(OUTBOUND, "sObject")))
    if not values.get("SystemModstamp"):
        raise ObservationError("Outbound Message lacks SystemModstamp: add it to the message's fields")
    version = iso_to_ms(values["SystemModstamp"])
    ceiling = clock_ceiling_ms(received_at(headers), synced_at)
    if ceiling is None or version > ceiling:
        log.warning("Salesforce Outbound Message for salesforce.%s.%s stamps SystemModstamp %r, past the "
                    "receiving clock + %d s (or no clock known): re-fetching the object instead", collection,
                    note.object_id, values["SystemModstamp"][:40], MAX_CLOCK_SKEW_S)
        return Observation("salesforce", collection, note.object_id, UNCONFIRMED_VERSION, "webhook", synced_at,
                           None, False, True)
    row = row_from_soap(collection, note.object_id, values)
    # Outbound Messages come from create/edit rules only (never deletes); a partial one is re-fetched
    return Observation("salesforce", collection, note.object_id, version, "webhook", synced_at, row,
                       False, row is None)


def received_at(headers: Mapping[str, str] | None) -> str | None:
    """The receiver's `apisync-received-at` header (any case), if the message has one."""
    for name, value in (headers or {}).items():
        if name.lower() == RECEIVED_AT_HEADER:
            return value
    return None


def clock_ceiling_ms(received: str | None, synced_at: str) -> int | None:
    """The latest SystemModstamp (ms) trusted: the receiving server's clock at receipt, else the
    normalizer's, plus MAX_CLOCK_SKEW_S; None when neither time is readable (nothing is trusted then)."""
    for moment in (received, synced_at):
        try:
            return iso_to_ms(moment) + MAX_CLOCK_SKEW_S * 1000
        except ObservationError:
            continue
    return None


def path_secret_matches(given: str, configured: Sequence[str]) -> bool:
    """True if `given` is one of the configured path secrets; every one is compared, in constant time
    over digests, so neither the timing nor the length of the answer says how close a guess came."""
    digest = hashlib.sha256(given.encode()).digest()
    found = False
    for secret in configured:  # no short-circuit
        found |= hmac.compare_digest(digest, hashlib.sha256(secret.encode()).digest())
    return found and bool(given)


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def allowed_networks(cidrs: Sequence[str]) -> tuple[Network, ...]:
    """The allow-list's networks (e.g. Salesforce's published ranges); ValueError names a bad entry."""
    networks = []
    for cidr in cidrs:
        try:
            networks.append(ipaddress.ip_network(cidr.strip(), strict=False))
        except ValueError:
            raise ValueError(f"not an IP network: {cidr!r}") from None
    return tuple(networks)


def sender_allowed(host: str | None, networks: Sequence[Network]) -> bool:
    """True without an allow-list, else only for an address inside one of its networks."""
    if not networks:
        return True
    try:
        address = ipaddress.ip_address(host or "")
    except ValueError:  # no peer address (e.g. a Unix socket): not provably from an allowed network
        return False
    return any(address in network for network in networks)


def _values(sobject: ET.Element) -> dict[str, str | None]:
    """Field name → text, None for `xsi:nil="true"`."""
    values: dict[str, str | None] = {}
    for child in sobject:
        name = child.tag.rpartition("}")[2]
        values[name] = None if child.get(_q(XSI, "nil")) == "true" else (child.text or "")
    return values


def ack_body() -> bytes:
    """The acknowledgement Salesforce waits for (`notificationsResponse`, `Ack` true)."""
    envelope = ET.Element(_q(SOAP_ENV, "Envelope"))
    response = ET.SubElement(ET.SubElement(envelope, _q(SOAP_ENV, "Body")), _q(OUTBOUND, "notificationsResponse"))
    ET.SubElement(response, _q(OUTBOUND, "Ack")).text = "true"
    return ET.tostring(envelope, encoding="utf-8", xml_declaration=True)


def fault_body(code: str, message: str) -> bytes:
    """A SOAP 1.1 Fault (`faultcode` soapenv:Client or soapenv:Server) with a one-line reason."""
    envelope = ET.Element(_q(SOAP_ENV, "Envelope"))
    fault = ET.SubElement(ET.SubElement(envelope, _q(SOAP_ENV, "Body")), _q(SOAP_ENV, "Fault"))
    ET.SubElement(fault, "faultcode").text = f"soapenv:{code}"
    ET.SubElement(fault, "faultstring").text = message
    return ET.tostring(envelope, encoding="utf-8", xml_declaration=True)
