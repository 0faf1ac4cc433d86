"""Salesforce dataset: Account, Contact, Opportunity rows with SystemModstamp and soft deletes."""
from __future__ import annotations

import copy
from typing import Any

import orjson

from .ids import salesforce_id, uuid_from
from .model import ApiModel, Mutation, WebhookMessage
from .store import Collection
from .timefmt import iso_time, salesforce_time

VERSION = "v61.0"
TYPES = {"account": "Account", "contact": "Contact", "opportunity": "Opportunity"}
KEY_PREFIX = {"Account": "001", "Contact": "003", "Opportunity": "006"}
AUDIT = ("OwnerId", "CreatedDate", "CreatedById", "LastModifiedDate", "LastModifiedById", "SystemModstamp")
FIELDS = {
    "Account": ("Id", "IsDeleted", "Name", "Type", "Industry", "AnnualRevenue", "NumberOfEmployees",
                "BillingCity", "BillingCountry", "Phone", "Website") + AUDIT,
    "Contact": ("Id", "IsDeleted", "AccountId", "FirstName", "LastName", "Name", "Email", "Phone", "Title")
    + AUDIT,
    "Opportunity": ("Id", "IsDeleted", "AccountId", "Name", "StageName", "Amount", "CloseDate", "Probability",
                    "IsClosed", "IsWon") + AUDIT,
}
USER_ID = "0055g00000Apisync"[:15] + "AAA"
STAGES = (("Prospecting", 10), ("Qualification", 20), ("Proposal/Price Quote", 75), ("Negotiation/Review", 90),
          ("Closed Won", 100), ("Closed Lost", 0))
CITIES = (("Paris", "France"), ("Berlin", "Germany"), ("Austin", "USA"), ("Osaka", "Japan"), ("Lagos", "Nigeria"))


def _modstamp_key(oid: str, data: dict) -> tuple:
    # Salesforce time strings of one fixed format sort like their instants.
    return (data["SystemModstamp"], oid)


class SalesforceModel(ApiModel):
    """All rows (deleted ones stay, flagged IsDeleted, for queryAll and getDeleted)."""

    api = "salesforce"
    collections = tuple(TYPES)
    mutable = {"create": collections, "update": collections, "delete": collections}

    def __init__(self, clock, seed: int) -> None:
        super().__init__(clock, seed)
        self.rows = {sobject: Collection(sobject, {"modstamp": _modstamp_key}) for sobject in FIELDS}
        self.deleted: dict[str, dict[str, int]] = {sobject: {} for sobject in FIELDS}
        self.serial = 0

    def seed(self, count: int) -> None:
        """`count` rows per type on one timeline; accounts first so children have parents."""
        order = [c for c in self.collections for _ in range(count)]
        self.rng.shuffle(order)
        if count:
            order.remove("account")
            order.insert(0, "account")
        for when, collection in zip(self.seed_times(len(order)), order, strict=True):
            self._create(collection, when)
        self.outbox.clear()

    def mutate(self, kind: str, collection: str) -> Mutation | None:
        """Insert, update or soft-delete one row now."""
        now = self.clock.now_s()
        sobject = TYPES[collection]
        if kind == "create":
            oid = self._create(collection, now)
        else:
            live = [i for i, e in self.rows[sobject].entries.items() if not e.data["IsDeleted"]]
            if not live:
                return None
            oid = self.rng.choice(live)
            (self._update if kind == "update" else self._remove)(sobject, oid, now)
        return Mutation(self.api, collection, oid, kind, now * 1000)

    def delete_now(self, collection: str, oid: str) -> Mutation | None:
        """Soft-delete a named row."""
        sobject = TYPES.get(collection)
        entry = self.rows[sobject].entries.get(oid) if sobject else None
        if entry is None or entry.data["IsDeleted"]:
            return None
        now = self.clock.now_s()
        self._remove(sobject, oid, now)
        return Mutation(self.api, collection, oid, "delete", now * 1000)

    def _create(self, collection: str, when: int) -> str:
        sobject = TYPES[collection]
        self.serial += 1
        oid = salesforce_id(KEY_PREFIX[sobject], self.serial)
        stamp = salesforce_time(when)
        url = f"/services/data/{VERSION}/sobjects/{sobject}/{oid}"
        row: dict[str, Any] = {"attributes": {"type": sobject, "url": url},
                               "Id": oid, "IsDeleted": False}
        row.update(getattr(self, f"_fields_{collection}")())
        row.update(OwnerId=USER_ID, CreatedDate=stamp, CreatedById=USER_ID, LastModifiedDate=stamp,
                   LastModifiedById=USER_ID, SystemModstamp=stamp)
        self._save(sobject, row, when, "created")
        return oid

    def _update(self, sobject: str, oid: str, when: int) -> None:
        row = copy.deepcopy(self.rows[sobject].entries[oid].data)
        stamp = salesforce_time(when)
        if self.rng.random() < 0.2:
            row["SystemModstamp"] = stamp  # a system-only change: SystemModstamp moves, LastModifiedDate not
        else:
            fresh = getattr(self, f"_fields_{sobject.lower()}")()
            name = self.rng.choice([f for f in fresh if f not in ("AccountId", "Name")] or ["Phone"])
            row[name] = fresh[name]
            row.update(LastModifiedDate=stamp, SystemModstamp=stamp)
        self._save(sobject, row, when, "updated")

    def _remove(self, sobject: str, oid: str, when: int) -> None:
        row = copy.deepcopy(self.rows[sobject].entries[oid].data)
        row.update(IsDeleted=True, SystemModstamp=salesforce_time(when))
        self.deleted[sobject][oid] = when
        self._save(sobject, row, when, "deleted")

    def _save(self, sobject: str, row: dict, when: int, change: str) -> None:
        self.rows[sobject].put(row["Id"], row, when * 1000)
        payload = {"type": f"{sobject.lower()}.{change}", "timestamp": iso_time(when),
                   "data": {"sobject": sobject, "Id": row["Id"], "record": row}}
        self.outbox.append(WebhookMessage("salesforce", orjson.dumps(payload), payload["type"],
                                          "msg_" + uuid_from(self.rng).replace("-", "")))

    def _accounts(self) -> list[str]:
        return [i for i, e in self.rows["Account"].entries.items() if not e.data["IsDeleted"]] or [None]

    def _fields_account(self) -> dict[str, Any]:
        city, country = self.rng.choice(CITIES)
        name = f"{self.rng.choice(('Acme', 'Globex', 'Initech', 'Umbrella', 'Hooli'))} {self.phrase(1)}"
        return {"Name": name, "Type": self.rng.choice(("Customer - Direct", "Prospect", "Partner")),
                "Industry": self.rng.choice(("Technology", "Finance", "Retail", "Energy")),
                "AnnualRevenue": float(self.rng.randint(1, 900) * 100000),
                "NumberOfEmployees": self.rng.randint(5, 20000), "BillingCity": city, "BillingCountry": country,
                "Phone": f"+1 555 {self.rng.randint(1000, 9999)}", "Website": f"https://{name.split()[0].lower()}.example"}

    def _fields_contact(self) -> dict[str, Any]:
        first, last = self.person()
        return {"AccountId": self.rng.choice(self._accounts()), "FirstName": first, "LastName": last,
                "Name": f"{first} {last}", "Email": f"{first}.{last}@example.com".lower().replace(" ", ""),
                "Phone": f"+1 555 {self.rng.randint(1000, 9999)}",
                "Title": self.rng.choice(("CTO", "Engineer", "Buyer", "VP Sales"))}

    def _fields_opportunity(self) -> dict[str, Any]:
        stage, probability = self.rng.choice(STAGES)
        return {"AccountId": self.rng.choice(self._accounts()), "Name": f"{self.phrase(2)} deal",
                "StageName": stage, "Amount": float(self.rng.randint(1, 500) * 1000),
                "CloseDate": f"2026-{self.rng.randint(1, 12):02d}-{self.rng.randint(1, 28):02d}",
                "Probability": float(probability), "IsClosed": stage.startswith("Closed"),
                "IsWon": stage == "Closed Won"}

    def truth(self) -> dict[str, Any]:
        """Version = SystemModstamp in ms; deleted rows are listed by id only."""
        objects, deleted = {}, {}
        for collection, sobject in TYPES.items():
            entries = self.rows[sobject].entries
            objects[collection] = {i: {"version": e.version, "data": e.data} for i, e in entries.items()
                                   if not e.data["IsDeleted"]}
            deleted[collection] = list(self.deleted[sobject])
        return {"objects": objects, "deleted": deleted}
