"""Field-by-field comparison of Salesforce answers with the examples recorded from Salesforce's docs.

JSON: every key the example shows must be there (unless the doc says the key is conditional), no key the
example lacks may appear, each value has the example's JSON type and the example's format (a value that
looks like a Salesforce datetime, an 18-character id, a record URL, a query locator... must stay one).
A record (an object with `attributes`) carries exactly the fields that were asked for: the SOQL SELECT
list, or for a record GET every field of the object. XML: the Outbound Messaging elements in the WSDL's
order, with their namespaces, nil-ness and formats.
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from pathlib import Path
from typing import Any

EXAMPLES = Path(__file__).parent / "salesforce_examples"
_CASE_SAFE = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"

# Ordered: the first pattern a documented value matches is its format.
FORMATS: tuple[tuple[str, re.Pattern[str]], ...] = tuple((name, re.compile(pattern)) for name, pattern in (
    ("salesforce datetime", r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+0000"),
    ("xsd datetime", r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{3})?Z"),
    ("date", r"\d{4}-\d\d-\d\d"),
    ("18-character id", r"[a-zA-Z0-9]{18}"),
    ("record url", r"/services/data/v\d+\.\d/sobjects/\w+/[a-zA-Z0-9]{18}"),
    ("query locator url", r"/services/data/v\d+\.\d/(query|queryAll)/01g[a-zA-Z0-9]{15}-\d+"),
    ("identity url", r"https?://[^/]+/id/00D[a-zA-Z0-9]{15}/005[a-zA-Z0-9]{15}"),
    ("soap endpoint url", r"https?://[^/]+/services/Soap/[cu]/\d+\.\d/00D[a-zA-Z0-9]{12}"),
    ("instance url", r"https?://[^/]+"),
    ("access token", r"00D[a-zA-Z0-9]{12}![\w.]+"),
    ("epoch milliseconds", r"\d{13}"),
    ("base64 hmac-sha256", r"[A-Za-z0-9+/]{43}="),
))
# Formats whose 18-character ids are checked for their case-safe suffix.
CARRY_IDS = frozenset(("18-character id", "record url", "query locator url", "identity url"))


def load(name: str) -> Any:
    """A recorded example: parsed JSON, or the XML root element."""
    path = EXAMPLES / name
    return ET.parse(path).getroot() if path.suffix == ".xml" else json.loads(path.read_text())


def format_of(text: str) -> str:
    """The documented format a string has ("text" if none)."""
    return next((name for name, pattern in FORMATS if pattern.fullmatch(text)), "text")


def case_safe_suffix(id15: str) -> str:
    """The three characters Salesforce appends to a 15-character id (one per 5 characters, a bit per capital)."""
    return "".join(_CASE_SAFE[sum(1 << i for i, c in enumerate(id15[k:k + 5]) if c.isupper())] for k in (0, 5, 10))


def value_problems(example: Any, actual: Any, path: str) -> list[str]:
    """The JSON type, then the format (an 18-character id must carry its case-safe suffix)."""
    if example is None or actual is None:
        return []
    if type(actual) is not type(example) and not (isinstance(example, float) and type(actual) is int):
        return [f"{path}: {type(actual).__name__} where the doc shows {type(example).__name__}"]
    if not isinstance(example, str):
        return []
    wanted, found = format_of(example), format_of(actual)
    if wanted != found:
        return [f"{path}: {actual!r} is {found}, the doc shows {wanted} ({example!r})"]
    ids = re.findall(r"(?<![a-zA-Z0-9])[a-zA-Z0-9]{18}(?![a-zA-Z0-9])", actual) if wanted in CARRY_IDS else []
    return [f"{path}: {oid} ends {oid[15:]}, its case-safe suffix is {case_safe_suffix(oid[:15])}"
            for oid in ids if oid[15:] != case_safe_suffix(oid[:15])]


def json_problems(example: Any, actual: Any, path: str = "$", optional: Iterable[str] = (),
                  fields: Iterable[str] | None = None) -> list[str]:
    """Where `actual` leaves the example's shape; `optional`: paths (`$.nextRecordsUrl`) the doc marks as
    conditional; `fields`: the field names every record must carry, exactly."""
    optional, fields = frozenset(optional), None if fields is None else tuple(fields)
    if isinstance(example, dict) and isinstance(actual, dict):
        if "attributes" in example and fields is not None:
            return record_problems(example, actual, path, fields)
        missing = [f"{path}.{k}: missing" for k in example if k not in actual and f"{path}.{k}" not in optional]
        extra = [f"{path}.{k}: not in the doc example" for k in actual if k not in example]
        return missing + extra + [p for k in example if k in actual
                                  for p in json_problems(example[k], actual[k], f"{path}.{k}", optional, fields)]
    if isinstance(example, list) and isinstance(actual, list):
        item = f"{path}[]"
        return [p for i, value in enumerate(actual) if example
                for p in json_problems(example[0], value, f"{path}[{i}]", {o.replace(item, f'{path}[{i}]')
                                                                           for o in optional}, fields)]
    return value_problems(example, actual, path)


def record_problems(example: dict, actual: dict, path: str, fields: tuple[str, ...]) -> list[str]:
    """`attributes` as documented (its url naming this record) and exactly the asked-for fields."""
    problems = json_problems(example["attributes"], actual.get("attributes"), f"{path}.attributes")
    if not isinstance(actual.get("attributes"), dict):
        return problems or [f"{path}.attributes: missing"]
    wanted = {"attributes", *fields}
    problems += [f"{path}.{k}: not asked for" for k in actual if k not in wanted]
    problems += [f"{path}.{k}: asked for, missing" for k in wanted if k not in actual]
    url, oid = actual["attributes"].get("url", ""), actual.get("Id")
    if oid is not None and not str(url).endswith(f"/sobjects/{actual['attributes'].get('type')}/{oid}"):
        problems.append(f"{path}.attributes.url: {url!r} does not name {actual['attributes'].get('type')} {oid}")
    # Id and every reference field (OwnerId, AccountId...) hold 18-character ids, as the example's Id
    problems += [p for k, v in actual.items() if k.endswith("Id") and isinstance(v, str)
                 for p in value_problems(example.get("Id", "003RO0000035WQgYAM"), v, f"{path}.{k}")]
    return problems + [p for k, v in actual.items() if k.endswith(("Date", "Modstamp")) and isinstance(v, str)
                       for p in value_problems("2013-05-08T21:20:00.000+0000" if "T" in v or len(v) > 10
                                               else "2013-05-08", v, f"{path}.{k}")]


# --- XML (Outbound Messaging) --------------------------------------------------------------------------

XSI_NIL = "{http://www.w3.org/2001/XMLSchema-instance}nil"
XSI_TYPE = "{http://www.w3.org/2001/XMLSchema-instance}type"


def xml_problems(example: ET.Element, actual: ET.Element, path: str = "", free: Iterable[str] = ()) -> list[str]:
    """Same element names and namespaces in the same order (repeated elements checked against the example's
    first), same nil-ness and xsi:type, text of the same format; `free`: element tags whose children are the
    fields chosen for the message (checked for format only, as the doc's example shows a subset)."""
    free = frozenset(free)
    here = f"{path}/{_local(actual.tag)}"
    if actual.tag != example.tag:
        return [f"{here}: element {actual.tag}, the doc shows {example.tag}"]
    problems = []
    if (example.get(XSI_NIL) == "true") != (actual.get(XSI_NIL) == "true"):
        problems.append(f"{here}: xsi:nil {actual.get(XSI_NIL)!r}, the doc shows {example.get(XSI_NIL)!r}")
    if (example.get(XSI_TYPE) is None) != (actual.get(XSI_TYPE) is None):
        problems.append(f"{here}: xsi:type {actual.get(XSI_TYPE)!r}, the doc shows {example.get(XSI_TYPE)!r}")
    if len(example) == 0 and example.get(XSI_NIL) != "true":
        return problems + value_problems((example.text or "").strip(), (actual.text or "").strip(), here)
    if example.tag in free:
        return problems + _field_problems(example, actual, here)
    return problems + _children_problems(example, actual, here, free)


def _children_problems(example: ET.Element, actual: ET.Element, here: str, free: frozenset[str]) -> list[str]:
    wanted, found = _collapse([c.tag for c in example]), _collapse([c.tag for c in actual])
    if wanted != found:
        return [f"{here}: children {[_local(t) for t in found]}, the doc shows {[_local(t) for t in wanted]}"]
    first = {}
    for child in example:
        first.setdefault(child.tag, child)
    return [p for child in actual for p in xml_problems(first[child.tag], child, here, free)]


def _field_problems(example: ET.Element, actual: ET.Element, here: str) -> list[str]:
    """sObject fields: all in the sObject namespace; Id and SystemModstamp as the doc's example shows them."""
    ns = example[0].tag.split("}")[0] + "}"
    problems = [f"{here}/{child.tag}: not in the sObject namespace {ns}" for child in actual
                if not child.tag.startswith(ns)]
    documented = {child.tag: (child.text or "").strip() for child in example}
    return problems + [p for child in actual if child.tag in documented and child.get(XSI_NIL) != "true"
                       for p in value_problems(documented[child.tag], (child.text or "").strip(),
                                               f"{here}/{_local(child.tag)}")]


def _collapse(tags: list[str]) -> list[str]:
    """Runs of one repeated element count once (`Notification` occurs 1 to 100 times)."""
    return [tag for i, tag in enumerate(tags) if i == 0 or tags[i - 1] != tag]


def _local(tag: str) -> str:
    return tag.rpartition("}")[2]
