"""Outbound Messaging: SOAP parsed and checked, split per notification without SessionId, REST-shaped rows;
the sender checks (path secret, allow-list) and the clock ceiling on pushed SystemModstamps."""

from __future__ import annotations

import pytest

from apisync.apis.salesforce import outbound_messaging as om
from apisync.events import Observation, iso_to_ms
from apisync.webhooks.dispatch import parse_webhook, webhook_key
from apisync.webhooks.refetch import refreshed

ORG = "00D5g000004ApisAAA"
SESSION = "00D5g000004Apis!AQsessionsecret"
ROW = {"Id": "0015g0000000001AAA", "IsDeleted": "false", "Name": "Acme &amp; Co", "Type": "Prospect",
       "Industry": "Energy", "AnnualRevenue": "100000.0", "NumberOfEmployees": "12", "BillingCity": "Paris",
       "BillingCountry": "France", "Phone": None, "Website": "https://acme.example", "OwnerId": "005x",
       "CreatedDate": "2026-11-26T14:53:32.000Z", "CreatedById": "005x", "LastModifiedDate": "2026-11-26T14:53:32.000Z",
       "LastModifiedById": "005x", "SystemModstamp": "2026-11-26T14:53:33.000Z"}
RECEIVED = {"apisync-received-at": "2026-11-26T14:53:34.000Z"}  # the receiver's clock, a second later
SYNCED = "2026-11-26T14:53:40.000Z"


def sobject(fields: dict) -> str:
    inner = "".join(f'<sf:{k} xsi:nil="true"/>' if v is None else f"<sf:{k}>{v}</sf:{k}>" for k, v in fields.items())
    return f'<sObject xsi:type="sf:Account" xmlns:sf="urn:sobject.enterprise.soap.sforce.com">{inner}</sObject>'


def message(*objects: str, org: str = ORG) -> bytes:
    notes = "".join(f"<Notification><Id>04l5g00000000{i:02d}AAA</Id>{o}</Notification>" for i, o in enumerate(objects))
    return ('<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"'
            ' xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><soapenv:Body>'
            f'<notifications xmlns="http://soap.sforce.com/2005/09/outbound"><OrganizationId>{org}</OrganizationId>'
            f"<ActionId>04k5g000000ApisAAA</ActionId><SessionId>{SESSION}</SessionId>"
            "<EnterpriseUrl>https://x/services/Soap/c/61.0</EnterpriseUrl><PartnerUrl>https://x/services/Soap/u/61.0"
            f"</PartnerUrl>{notes}</notifications></soapenv:Body></soapenv:Envelope>").encode()


def test_each_notification_becomes_one_stored_message_without_the_session():
    parsed = om.parse_envelope(message(sobject(ROW), sobject({**ROW, "Id": "0015g0000000002AAA"})))
    assert (parsed.organization_id, len(parsed.notifications)) == (ORG, 2)
    bodies = [om.single_notification_body(parsed, note) for note in parsed.notifications]
    assert all(SESSION.encode() not in body and ORG.encode() in body for body in bodies)
    assert [webhook_key("salesforce", body, {}) for body in bodies] == [
        "salesforce.account.0015g0000000001AAA", "salesforce.account.0015g0000000002AAA"]


def test_a_full_notification_is_the_rest_row():
    body = om.single_notification_body(parsed := om.parse_envelope(message(sobject(ROW))), parsed.notifications[0])
    obs = parse_webhook("salesforce", body, {"content-type": om.CONTENT_TYPE, **RECEIVED}, SYNCED)
    assert (obs.key, obs.version, obs.thin, obs.deleted) == ("salesforce.account.0015g0000000001AAA",
                                                             1795704813000, False, False)
    url = "/services/data/v61.0/sobjects/Account/0015g0000000001AAA"
    assert obs.data["attributes"] == {"type": "Account", "url": url}
    assert (obs.data["Name"], obs.data["AnnualRevenue"], obs.data["NumberOfEmployees"], obs.data["Phone"],
            obs.data["IsDeleted"], obs.data["SystemModstamp"]) == (
        "Acme & Co", 100000.0, 12, None, False, "2026-11-26T14:53:33.000+0000")


def test_a_partial_notification_is_thin_and_one_without_modstamp_is_refused():
    partial = om.parse_envelope(message(sobject({"Id": ROW["Id"], "SystemModstamp": ROW["SystemModstamp"]})))
    obs = parse_webhook("salesforce", om.single_notification_body(partial, partial.notifications[0]), {}, SYNCED)
    assert (obs.thin, obs.data, obs.version) == (True, None, 1795704813000)
    bare = om.parse_envelope(message(sobject({"Id": ROW["Id"]})))
    with pytest.raises(om.ObservationError, match="SystemModstamp"):
        parse_webhook("salesforce", om.single_notification_body(bare, bare.notifications[0]), {}, SYNCED)


@pytest.mark.parametrize(("body", "says"), [
    (b"<x/>", "not a SOAP envelope"),
    (b"<soapenv:Envelope", "well-formed"),
    (b'<!DOCTYPE x [<!ENTITY a "b">]>' + message(sobject(ROW)), "document type"),
    (message(), "0 notifications"),
    (message(*[sobject(ROW)] * 101), "101 notifications"),
    (message(sobject(ROW)).replace(b"sObject", b"other"), "lacks its sObject"),
])
def test_malformed_messages_say_what_is_wrong(body, says):
    with pytest.raises(om.OutboundMessageError, match=says):
        om.parse_envelope(body)


@pytest.mark.parametrize(("given", "configured", "same"), [
    (ORG, (ORG,), True), (ORG, (ORG[:15],), True), (ORG, ("00D5g000004Apisaaa",), True),
    (ORG, ("00D5g000009EvilAAA",), False), ("00D", ("00D",), False), (ORG, (), False),
])
def test_organisation_check(given, configured, same):
    assert om.same_org(given, configured) is same


def test_ack_and_fault_bodies():
    assert b"<Ack>true</Ack>" in om.ack_body()
    fault = om.fault_body("Client", "bad <thing>")
    assert b"<faultcode>soapenv:Client</faultcode>" in fault and b"bad &lt;thing&gt;" in fault


def _stored(fields: dict) -> bytes:
    parsed = om.parse_envelope(message(sobject(fields)))
    return om.single_notification_body(parsed, parsed.notifications[0])


@pytest.mark.parametrize(("stamp", "headers", "synced_at", "trusted"), [
    # within the skew of the receiving clock (14:53:34): as pushed
    ("2026-11-26T14:58:34.000Z", RECEIVED, SYNCED, True),
    # a millisecond past it: re-fetched, however late the normalizer runs
    ("2026-11-26T14:58:34.001Z", RECEIVED, "2026-11-27T00:00:00.000Z", False),
    ("2099-01-01T00:00:00.000Z", RECEIVED, SYNCED, False),
    # no receive time stored: the normalizer's clock is the ceiling
    ("2026-11-26T14:58:40.000Z", {}, SYNCED, True),
    ("2026-11-26T14:58:40.001Z", {}, SYNCED, False),
    ("2026-11-26T14:53:33.000Z", {"Apisync-Received-At": "not a time"}, SYNCED, True),
    # no readable clock at all: nothing pushed is trusted
    ("2026-11-26T14:53:33.000Z", {}, "", False),
])
def test_a_stamp_beyond_the_receiving_clock_is_re_fetched_not_trusted(stamp, headers, synced_at, trusted):
    obs = parse_webhook("salesforce", _stored({**ROW, "SystemModstamp": stamp}), headers, synced_at)
    assert obs.key == "salesforce.account.0015g0000000001AAA" and not obs.deleted
    if trusted:
        assert (obs.thin, obs.version, obs.data["Name"]) == (False, iso_to_ms(stamp), "Acme & Co")
    else:  # nothing of the pushed content is kept, and the re-fetch's own version wins
        assert (obs.thin, obs.version, obs.data) == (True, om.UNCONFIRMED_VERSION, None)


def test_a_re_fetched_forged_stamp_takes_the_api_version():
    forged = parse_webhook("salesforce", _stored({**ROW, "Name": "Forged", "SystemModstamp": "2099-01-01T00:00:00Z"}),
                           RECEIVED, SYNCED)
    truth = Observation("salesforce", "account", ROW["Id"], 1795704813000, "reconcile", SYNCED, {"Name": "Acme"})
    fenced = refreshed(forged, truth)
    assert (fenced.version, fenced.data, fenced.thin) == (1795704813000, {"Name": "Acme"}, False)


@pytest.mark.parametrize(("given", "configured", "matches"), [
    ("s3cret-path", ("s3cret-path",), True),
    ("s3cret-path", ("old-secret", "s3cret-path"), True),  # a rotation: either one
    ("s3cret-pat", ("s3cret-path",), False),
    ("S3CRET-PATH", ("s3cret-path",), False),
    ("", ("s3cret-path",), False),
    ("", ("",), False),
    ("anything", (), False),
])
def test_path_secret(given, configured, matches):
    assert om.path_secret_matches(given, configured) is matches


@pytest.mark.parametrize(("host", "cidrs", "allowed"), [
    ("13.108.1.2", (), True),
    ("13.108.1.2", ("13.108.0.0/14", "204.14.232.0/21"), True),
    ("204.14.239.255", ("13.108.0.0/14", "204.14.232.0/21"), True),
    ("203.0.113.9", ("13.108.0.0/14", "204.14.232.0/21"), False),
    ("2605:6180::1", ("2605:6180::/32",), True),
    (None, ("13.108.0.0/14",), False),
    ("testclient", ("13.108.0.0/14",), False),
])
def test_sender_allow_list(host, cidrs, allowed):
    assert om.sender_allowed(host, om.allowed_networks(cidrs)) is allowed


def test_a_bad_allow_list_entry_is_named():
    with pytest.raises(ValueError, match="'13.108.0.0/33'"):
        om.allowed_networks(("13.108.0.0/14", "13.108.0.0/33"))
