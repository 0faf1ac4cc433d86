"""Salesforce Outbound Messaging as the org sends it: SOAP `notifications`, up to 100 per message.

Shape from the SOAP API Developer Guide ("Understanding the Outbound Messaging WSDL"): SOAP 1.1
envelope, `notifications` in namespace http://soap.sforce.com/2005/09/outbound with OrganizationId,
ActionId, SessionId (nil unless "Send Session ID" is ticked), EnterpriseUrl, PartnerUrl and
`Notification` elements (`Id` + `sObject xsi:type="sf:<Type>"`, fields in
urn:sobject.enterprise.soap.sforce.com; null fields as `xsi:nil="true"`). A delivery counts only if
the listener answers `<Ack>true</Ack>` ("Building a Listener"); otherwise Salesforce resends the
same message with the same notification ids ("Understanding Notifications": retried for up to 24 h,
notifications may arrive out of order or more than once). Rules fire on create and edit only.

The org posts to the endpoint URL exactly as the admin typed it (`salesforce_outbound.url`), a secret
path segment included: that URL is the one secret a message can carry, since it is unsigned and its
OrganizationId is no secret ("Considerations for Security", SOAP API Developer Guide,
https://developer.salesforce.com/docs/atlas.en-us.api.meta/api/sforce_api_om_outboundmessaging_security.htm).
Anyone can build the same SOAP with `envelope` and `notification` (tests forge messages with them).
"""
from __future__ import annotations

import re
from xml.sax.saxutils import escape

ACTION_ID = "04k5g000000ApisAAC"  # 15 characters and their case-safe suffix
_ACK = re.compile(rb"<(?:[\w.-]+:)?Ack>\s*true\s*</(?:[\w.-]+:)?Ack>")
_ENVELOPE = ('<?xml version="1.0" encoding="UTF-8"?>\n'
             '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" '
             'xmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">\n'
             ' <soapenv:Body>\n'
             '  <notifications xmlns="http://soap.sforce.com/2005/09/outbound">\n'
             '   <OrganizationId>{org}</OrganizationId>\n'
             '   <ActionId>{action}</ActionId>\n'
             '   <SessionId xsi:nil="true"/>\n'
             '   <EnterpriseUrl>{base}/services/Soap/c/61.0/{org15}</EnterpriseUrl>\n'
             '   <PartnerUrl>{base}/services/Soap/u/61.0/{org15}</PartnerUrl>\n'
             '{notifications}'
             '  </notifications>\n'
             ' </soapenv:Body>\n'
             '</soapenv:Envelope>\n')


def _soap_value(value) -> str:
    """xsd text: booleans lower case, datetimes as xsd:dateTime with Z, numbers as Python prints them."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str) and value.endswith("+0000") and "T" in value:
        return value[:-5] + "Z"
    return escape(str(value))


def notification(row: dict, notification_id: str, names: tuple[str, ...]) -> str:
    """One `<Notification>` for a row, holding the message's fields (here: every declared one)."""
    sobject = row["attributes"]["type"]
    fields = []
    for name in names:
        value = row.get(name)
        fields.append(f'     <sf:{name} xsi:nil="true"/>' if value is None
                      else f"     <sf:{name}>{_soap_value(value)}</sf:{name}>")
    return (f"   <Notification>\n    <Id>{notification_id}</Id>\n"
            f'    <sObject xsi:type="sf:{sobject}" xmlns:sf="urn:sobject.enterprise.soap.sforce.com">\n'
            + "\n".join(fields) + "\n    </sObject>\n   </Notification>\n")


def envelope(organization_id: str, base_url: str, notifications: list[str]) -> bytes:
    """The SOAP message carrying these notifications."""
    return _ENVELOPE.format(org=organization_id, org15=organization_id[:15], action=ACTION_ID,
                            base=base_url.rstrip("/"), notifications="".join(notifications)).encode()


def acknowledged(status: int, body: bytes) -> bool:
    """Salesforce counts a delivery only with a 2xx answer whose SOAP body says Ack true."""
    return 200 <= status < 300 and _ACK.search(body) is not None


HEADERS = {"Content-Type": "text/xml; charset=utf-8", "SOAPAction": '""', "User-Agent": "Salesforce"}
