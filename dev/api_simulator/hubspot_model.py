"""HubSpot CRM dataset: contacts, companies and deals as CRM v3 objects; a delete archives.

Object shape (CRM v3 "Objects" API, https://developers.hubspot.com/docs/api/crm/understanding-the-crm):
`{"id": "<numeric string>", "properties": {<name>: <string>}, "createdAt", "updatedAt", "archived"}`,
times as ISO 8601 with milliseconds. Every object carries `createdate`, `hs_lastmodifieddate` and
`hs_object_id`; contacts also carry `lastmodifieddate`, the name their default properties and
connectors use (supaglue-labs/supaglue#478: "the contact property name here [is] diff than others").
Deleting archives: the object answers 404 on read and lists under `archived=true` with `archivedAt`.

Stamps have millisecond precision, yet ties are common: about half the mutations land on a whole
second and share it with their neighbours, and HubSpot's own bulk updates stamp thousands of records
with one identical hs_lastmodifieddate (airbytehq/airbyte#43317). Seeded stamps tie the same way.

Webhooks (Webhooks API v3, https://developers.hubspot.com/docs/api/webhooks): one thin event per change,
`<type>.creation` / `<type>.propertyChange` (one per changed property) / `<type>.deletion`, no object
body (subscribers re-read it); the dispatcher batches them (webhooks.py).
"""
from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import orjson

from .hubspot_search import SearchIndex
from .model import ApiModel, Mutation, WebhookMessage
from .store import Collection
from .timefmt import hubspot_time

TYPES = {"contact": "contacts", "company": "companies", "deal": "deals"}  # collection -> path objectType
BY_PATH = {path: collection for collection, path in TYPES.items()}
# Default properties of list, read and search answers (search guide, "Searchable CRM objects" table).
DEFAULTS = {
    "contact": ("createdate", "email", "firstname", "hs_object_id", "lastmodifieddate", "lastname"),
    "company": ("createdate", "domain", "hs_lastmodifieddate", "hs_object_id", "name"),
    "deal": ("amount", "closedate", "createdate", "dealname", "dealstage", "hs_lastmodifieddate",
             "hs_object_id", "pipeline"),
}
# The default sales pipeline's internal stage ids, in order; closedwon and closedlost end a deal.
STAGES = ("appointmentscheduled", "qualifiedtobuy", "presentationscheduled", "decisionmakerboughtin",
          "contractsent", "closedwon", "closedlost")
LIFECYCLE = ("subscriber", "lead", "marketingqualifiedlead", "salesqualifiedlead", "opportunity", "customer")
INDUSTRIES = ("COMPUTER_SOFTWARE", "FINANCIAL_SERVICES", "RETAIL", "UTILITIES", "INTERNET")
ID_BASE = 10_000_000_000  # numeric ids of one width, so string order is id order too
PORTAL_ID, APP_ID = 62515001, 1160452
SUBSCRIPTION_IDS = {f"{c}.{k}": 2_000_000 + i for i, (c, k) in enumerate(
    (c, k) for c in TYPES for k in ("creation", "propertyChange", "deletion"))}
CHANGE_SOURCES = ("CRM_UI", "API", "INTEGRATION", "IMPORT", "WORKFLOWS")


def _id_key(oid: str, _data: dict) -> tuple:
    return (int(oid), oid)


class HubSpotModel(ApiModel):
    """Live objects per type, their archived selves, and the lagging search index."""

    api = "hubspot"
    collections = tuple(TYPES)
    mutable = {"create": collections, "update": collections, "delete": collections}

    def __init__(self, clock, seed: int, runtime: Callable[[], dict] | None = None) -> None:
        super().__init__(clock, seed)
        self._runtime = runtime or (lambda: {})
        self.live = {c: Collection(c, {"id": _id_key}) for c in TYPES}
        self.archived = {c: Collection(c, {"id": _id_key}) for c in TYPES}
        self.search = SearchIndex(clock, seed, self.collections,
                                  lambda: self._runtime().get("hubspot_search_lag_s") or 0.0)
        self.serial = 0
        self.events = 0
        self._last_ms = 0

    def seed(self, count: int) -> None:
        """`count` objects per type on one timeline (companies first), visible to search at once."""
        order = [c for c in self.collections for _ in range(count)]
        self.rng.shuffle(order)
        if count:
            order.remove("company")
            order.insert(0, "company")
        previous = (0, 0)
        for when, collection in zip(self.seed_times(len(order)), order, strict=True):
            same_second = when == previous[0]
            ms = previous[1] if same_second and self.rng.random() < 0.5 else when * 1000 + self.rng.choice(
                (0, self.rng.randint(1, 999)))
            previous = (when, ms)
            self._create(collection, ms, delayed=False)
        self.outbox.clear()

    def _stamp(self) -> int:
        """Now in ms; half the time on the whole second (ties), never before the last stamp."""
        ms = int(self.clock.now() * 1000)
        if self.rng.random() < 0.5:
            ms = ms // 1000 * 1000
        self._last_ms = max(ms, self._last_ms)
        return self._last_ms

    def mutate(self, kind: str, collection: str) -> Mutation | None:
        """Create, update or archive one object now."""
        live = self.live[collection]
        if kind != "create" and not live.entries:
            return None
        ms = self._stamp()
        if kind == "create":
            oid = self._create(collection, ms)
        else:
            oid = self.rng.choice(sorted(live.entries))
            (self._update if kind == "update" else self._archive)(collection, oid, ms)
        return Mutation(self.api, collection, oid, kind, ms)

    def delete_now(self, collection: str, oid: str) -> Mutation | None:
        """Archive a named object now."""
        if collection not in self.live or oid not in self.live[collection].entries:
            return None
        ms = self._stamp()
        self._archive(collection, oid, ms)
        return Mutation(self.api, collection, oid, "delete", ms)

    def _create(self, collection: str, ms: int, delayed: bool = True) -> str:
        self.serial += 1
        oid = str(ID_BASE + self.serial)
        stamp = hubspot_time(ms)
        props = {**getattr(self, f"_fields_{collection}")(), "createdate": stamp, "hs_lastmodifieddate": stamp,
                 "hs_object_id": oid}
        if collection == "contact":
            props["lastmodifieddate"] = stamp
        obj = {"id": oid, "properties": props, "createdAt": stamp, "updatedAt": stamp, "archived": False}
        self.live[collection].put(oid, obj, ms)
        self.search.stage(collection, oid, obj, delayed)
        self._event(collection, "creation", oid, ms)
        return oid

    def _update(self, collection: str, oid: str, ms: int) -> None:
        obj = copy.deepcopy(self.live[collection].entries[oid].data)
        name, value = self._change(collection, obj["properties"])
        self._write(collection, obj, name, value, ms)
        self._event(collection, "propertyChange", oid, ms, name, value)

    def _write(self, collection: str, obj: dict, name: str, value: str, ms: int | None) -> None:
        """Set one property (and, with `ms`, the modification stamps) and index the new state."""
        obj["properties"][name] = value
        version = self.live[collection].entries[obj["id"]].version
        if ms is not None:
            stamp = hubspot_time(ms)
            obj["properties"]["hs_lastmodifieddate"] = obj["updatedAt"] = stamp
            if collection == "contact":
                obj["properties"]["lastmodifieddate"] = stamp
            version = ms
        self.live[collection].put(obj["id"], obj, version)
        self.search.stage(collection, obj["id"], obj)

    def _change(self, collection: str, props: dict[str, str]) -> tuple[str, str]:
        """One property's new value; open deals often move along the pipeline."""
        if collection == "deal" and props["dealstage"] not in STAGES[-2:] and self.rng.random() < 0.6:
            at = STAGES.index(props["dealstage"])
            stage = "closedlost" if self.rng.random() < 0.2 else STAGES[at + 1]
            return "dealstage", stage
        fresh = getattr(self, f"_fields_{collection}")()
        name = self.rng.choice(sorted(n for n in fresh if n != "dealstage" and fresh[n] != props.get(n))
                               or ["phone" if collection == "contact" else "description"])
        return name, fresh.get(name, self.phrase(2))

    def _archive(self, collection: str, oid: str, ms: int) -> None:
        entry = self.live[collection].delete(oid, ms)
        self.live[collection].graveyard.pop(oid, None)
        stamp = hubspot_time(ms)
        obj = {**copy.deepcopy(entry.data), "updatedAt": stamp, "archived": True, "archivedAt": stamp}
        self.archived[collection].put(oid, obj, ms)
        self.search.stage(collection, oid, None)
        self._event(collection, "deletion", oid, ms)

    def _event(self, collection: str, kind: str, oid: str, ms: int, name: str | None = None,
               value: str | None = None) -> None:
        """One thin v3 webhook event (the dispatcher batches them and sets attemptNumber)."""
        self.events += 1
        subscription = f"{collection}.{kind}"
        event: dict[str, Any] = {"eventId": 100_000_000 + self.events, "subscriptionId": SUBSCRIPTION_IDS[subscription],
                                 "portalId": PORTAL_ID, "appId": APP_ID, "occurredAt": ms,
                                 "subscriptionType": subscription, "attemptNumber": 0, "objectId": int(oid),
                                 "changeSource": self.rng.choice(CHANGE_SOURCES)}
        if kind == "propertyChange":
            event.update(propertyName=name, propertyValue=value)
        else:
            event["changeFlag"] = "NEW" if kind == "creation" else "DELETED"
        self.outbox.append(WebhookMessage("hubspot", orjson.dumps(event), "hubspot_event", str(event["eventId"])))

    def silent_update(self, collection: str, oid: str, now: int, stamp: bool) -> int | None:
        """Change a property nobody subscribed to: no webhook; hs_lastmodifieddate moves only with `stamp`."""
        entry = self.live[collection].entries.get(oid)
        if entry is None:
            return None
        obj = copy.deepcopy(entry.data)
        name, value = self._change(collection, obj["properties"])
        ms = max(now * 1000, self._last_ms) if stamp else None
        if ms is not None:
            self._last_ms = ms
        self._write(collection, obj, name, value, ms)
        return self.live[collection].entries[oid].version

    def _fields_contact(self) -> dict[str, str]:
        first, last = self.person()
        return {"email": f"{first}.{last}@example.com".lower().replace(" ", ""), "firstname": first,
                "lastname": last, "lifecyclestage": self.rng.choice(LIFECYCLE),
                "phone": f"+1 555 {self.rng.randint(1000, 9999)}"}

    def _fields_company(self) -> dict[str, str]:
        name = f"{self.rng.choice(('Acme', 'Globex', 'Initech', 'Umbrella', 'Hooli'))} {self.phrase(1)}"
        return {"name": name, "domain": f"{name.split()[0].lower()}{self.rng.randint(1, 999)}.example",
                "industry": self.rng.choice(INDUSTRIES), "city": self.rng.choice(("Paris", "Austin", "Osaka"))}

    def _fields_deal(self) -> dict[str, str]:
        return {"dealname": f"{self.phrase(2)} deal", "amount": str(self.rng.randint(1, 500) * 100),
                "dealstage": self.rng.choice(STAGES), "pipeline": "default",
                "closedate": f"2026-{self.rng.randint(1, 12):02d}-{self.rng.randint(1, 28):02d}T00:00:00.000Z"}

    def truth(self) -> dict[str, Any]:
        """Version = hs_lastmodifieddate in ms; data = the object with every property; archived ids deleted."""
        objects = {c: {oid: {"version": e.version, "data": e.data} for oid, e in self.live[c].entries.items()}
                   for c in TYPES}
        return {"objects": objects, "deleted": {c: list(self.live[c].deleted) for c in TYPES}}
