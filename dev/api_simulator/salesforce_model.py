"""Salesforce dataset: Account, Contact, Opportunity rows with SystemModstamp and soft deletes.

Long transactions: with `salesforce_late_commits.share` > 0 a mutation is stamped now but commits
`lag_s` later, so queries, truth and pushes see it only then — with its old SystemModstamp, as
Salesforce stamps rows with the transaction's start ("GetUpdatedResult": latestDateCovered exists so
clients re-read from the start of a still-running transaction). `open_since()` feeds that field.
"""
from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from .ids import salesforce_id, uuid_from
from .model import ApiModel, Mutation, WebhookMessage
from .salesforce_outbound import notification
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
USER_ID = "0055g00000ApisyAAB"  # 15 characters and their case-safe suffix
STAGES = (("Prospecting", 10), ("Qualification", 20), ("Proposal/Price Quote", 75), ("Negotiation/Review", 90),
          ("Closed Won", 100), ("Closed Lost", 0))
CITIES = (("Paris", "France"), ("Berlin", "Germany"), ("Austin", "USA"), ("Osaka", "Japan"), ("Lagos", "Nigeria"))


@dataclass(frozen=True, slots=True)
class _Pending:
    """A change inside a transaction that has not committed yet."""

    visible_at: int
    sobject: str
    row: dict
    when: int
    change: str


def _modstamp_key(oid: str, data: dict) -> tuple:
    # Salesforce time strings of one fixed format sort like their instants.
    return (data["SystemModstamp"], oid)


class SalesforceModel(ApiModel):
    """All rows (deleted ones stay, flagged IsDeleted, for queryAll and getDeleted)."""

    api = "salesforce"
    collections = tuple(TYPES)
    mutable = {"create": collections, "update": collections, "delete": collections}

    def __init__(self, clock, seed: int, runtime: Callable[[], dict] | None = None) -> None:
        super().__init__(clock, seed)
        self.rows = {sobject: Collection(sobject, {"modstamp": _modstamp_key}) for sobject in FIELDS}
        self.deleted: dict[str, dict[str, int]] = {sobject: {} for sobject in FIELDS}
        self.serial = 0
        self._runtime = runtime or (lambda: {})
        self.pending: list[_Pending] = []
        self._lag = 0  # commit delay of the mutation being applied
        self.notes = 0  # Outbound Messaging notification ids

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
        self.commit_due()
        now = self.clock.now_s()
        sobject = TYPES[collection]
        busy = {p.row["Id"] for p in self.pending}  # rows locked by an open transaction
        live = [i for i, e in self.rows[sobject].entries.items() if not e.data["IsDeleted"] and i not in busy]
        if kind != "create" and not live:
            return None
        self._lag = self._commit_lag()
        try:
            if kind == "create":
                oid = self._create(collection, now)
            else:
                oid = self.rng.choice(live)
                (self._update if kind == "update" else self._remove)(sobject, oid, now)
        finally:
            self._lag = 0
        return Mutation(self.api, collection, oid, kind, now * 1000)

    def _commit_lag(self) -> int:
        late = self._runtime().get("salesforce_late_commits") or {}
        share = float(late.get("share") or 0.0)
        return int(late.get("lag_s") or 0) if share and self.rng.random() < share else 0

    def commit_due(self) -> None:
        """Commit every transaction whose time has come (called before anything reads the rows)."""
        now = self.clock.now_s()
        due = [p for p in self.pending if p.visible_at <= now]
        if due:
            self.pending = [p for p in self.pending if p.visible_at > now]
            for p in due:
                self._commit(p.sobject, p.row, p.when, p.change)

    def open_since(self) -> int | None:
        """Start (epoch s) of the oldest transaction still open, if any."""
        return min((p.when for p in self.pending), default=None)

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
        self._save(sobject, row, when, "deleted")

    def _save(self, sobject: str, row: dict, when: int, change: str) -> None:
        if self._lag:
            self.pending.append(_Pending(when + self._lag, sobject, row, when, change))
            return
        self._commit(sobject, row, when, change)

    def _commit(self, sobject: str, row: dict, when: int, change: str) -> None:
        """Make a change visible, then push it (pushes follow the commit, never the start)."""
        self.rows[sobject].put(row["Id"], row, when * 1000)
        if change == "deleted":
            self.deleted[sobject][row["Id"]] = when
        payload = {"type": f"{sobject.lower()}.{change}", "timestamp": iso_time(when),
                   "data": {"sobject": sobject, "Id": row["Id"], "record": row}}
        self.outbox.append(WebhookMessage("salesforce", orjson.dumps(payload), payload["type"],
                                          "msg_" + uuid_from(self.rng).replace("-", "")))
        if change != "deleted":  # workflow rules (and so Outbound Messages) fire on create and edit only
            self.notes += 1
            note_id = salesforce_id("04l", self.notes)
            body = notification(row, note_id, FIELDS[sobject]).encode()
            self.outbox.append(WebhookMessage("salesforce", body, "outbound", note_id))

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
        """Version = SystemModstamp in ms; deleted rows are listed by id only; open transactions not yet."""
        self.commit_due()
        objects, deleted = {}, {}
        for collection, sobject in TYPES.items():
            entries = self.rows[sobject].entries
            objects[collection] = {i: {"version": e.version, "data": e.data} for i, e in entries.items()
                                   if not e.data["IsDeleted"]}
            deleted[collection] = list(self.deleted[sobject])
        return {"objects": objects, "deleted": deleted}
