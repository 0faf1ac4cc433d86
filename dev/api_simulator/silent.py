"""Silent mutations: an object changes (or goes) without an event, a webhook or, optionally, a new version.

Real APIs do this, so nothing but a comparison with the API itself (apisync's audit) can notice:
- Stripe: an event can surface in /v1/events later than any settle window a poller uses, and its
  webhook is given up after three days of failed deliveries
  (https://docs.stripe.com/webhooks/process-undelivered-events); the object changed, the feed never
  showed it. Stripe objects carry no change stamp, so `stamp` only moves the truth's version.
- GitHub: fields computed in the background change without `updated_at` moving: a pull request's
  mergeability ("GitHub has started a background job to compute the mergeability",
  https://docs.github.com/en/rest/pulls/pulls#get-a-pull-request), the counters of an issue's
  milestone, an author's or commenter's `author_association`; no webhook announces them. Mergeability is
  not in a pull_request record (only a single GET shows it), so a silent PR change here moves the
  author's association, which the PR list shows.
- Salesforce: automated processes (a picklist value renamed, an e-mail bounce flagged) rewrite rows
  and move `SystemModstamp` but not `LastModifiedDate` (Salesforce Help 000387261), and no workflow
  rule fires, so no Outbound Message is sent. Without `stamp` the row changes with no stamp at all.
- HubSpot: propertyChange webhooks fire only for the properties an app subscribed to (Webhooks API:
  each propertyChange subscription names one property), so a change to any other property arrives
  with no event; `stamp` also moves hs_lastmodifieddate (and the search index, after its lag).

Silent deletes: Stripe (customers, draft invoices; a subscription is silently cancelled) and GitHub
(issues without comments, comments). Salesforce always leaves a trace of a delete (an `IsDeleted` row
for queryAll), so it has none here.
"""
from __future__ import annotations

import copy
from typing import Any

from .github_views import LOGINS, user
from .model import Mutation
from .mutations import MutationError
from .salesforce_model import AUDIT, TYPES
from .stripe_objects import deletable, updatable
from .timefmt import github_time, salesforce_time

KINDS = ("update", "delete")
_ASSOCIATIONS = ("CONTRIBUTOR", "MEMBER", "COLLABORATOR", "OWNER")


def silent_mutations(sim: Any, api: str, collection: str, kind: str = "update", count: int = 1,
                     ids: list[str] | None = None, stamp: bool = False) -> list[Mutation]:
    """Change (or delete) `count` objects, or the given `ids`, leaving no event and no webhook behind."""
    model = sim.models.get(api)
    if model is None or collection not in model.collections or kind not in KINDS:
        raise MutationError(f"unknown api, collection or kind: {api!r} {collection!r} {kind!r}")
    change = _CHANGES.get((api, kind))
    if change is None:
        raise MutationError(f"{api} has no silent {kind} (Salesforce and HubSpot keep a trace of every delete)")
    if kind == "delete" and collection not in model.mutable["delete"]:
        raise MutationError(f"{api} never deletes a {collection}")
    chosen = list(ids) if ids is not None else _pick(model, api, collection, kind, count)
    now = model.clock.now_s()
    done = []
    for oid in chosen:
        version = change(model, collection, oid, now, stamp)
        if version is None:
            raise MutationError(f"{api} {collection} {oid!r} cannot be silently {kind}d (unknown or not allowed)")
        done.append(Mutation(api, collection, oid, f"silent_{kind}", version))
    return done


def _pick(model: Any, api: str, collection: str, kind: str, count: int) -> list[str]:
    """Distinct objects that allow the change, drawn with the model's seeded rng."""
    pool = sorted(oid for oid in _store(model, api, collection).entries
                  if _allowed(model, api, collection, kind, oid))
    return model.rng.sample(pool, min(count, len(pool)))


def _allowed(model: Any, api: str, collection: str, kind: str, oid: str) -> bool:
    data = _store(model, api, collection).entries[oid].data
    if api == "stripe":
        return (deletable if kind == "delete" else updatable)(collection, data)
    if api == "github" and kind == "delete" and collection == "issue":
        return not model._is_pr(oid) and data["comments"] == 0
    if api == "github" and collection == "issue":
        return not model._is_pr(oid)
    return not (api == "salesforce" and data["IsDeleted"])


def _store(model: Any, api: str, collection: str) -> Any:
    if api == "stripe":
        return model.data[collection]
    if api == "github":
        return {"issue": model.issues, "pull_request": model.pulls, "issue_comment": model.comments}[collection]
    if api == "hubspot":
        return model.live[collection]
    return model.rows[TYPES[collection]]


def _stripe_update(model: Any, collection: str, oid: str, now: int, stamp: bool) -> int | None:
    entry = model.data[collection].entries.get(oid)
    if entry is None or not updatable(collection, entry.data):
        return None
    obj = copy.deepcopy(entry.data)
    getattr(model, f"_change_{collection}")(obj, now)  # a real lifecycle change; its event is dropped
    version = now * 1000 if stamp else entry.version
    model.data[collection].put(oid, obj, version)
    return version


def _stripe_delete(model: Any, collection: str, oid: str, now: int, _stamp: bool) -> int | None:
    entry = model.data[collection].entries.get(oid)
    if entry is None or not deletable(collection, entry.data):
        return None
    if collection == "subscription":  # Stripe never removes a subscription: it ends, quietly here
        obj = {**copy.deepcopy(entry.data), "status": "canceled", "canceled_at": now, "ended_at": now}
        model.data[collection].put(oid, obj, now * 1000)
    else:
        model.data[collection].delete(oid, now * 1000)
    return now * 1000


def _github_update(model: Any, collection: str, oid: str, now: int, stamp: bool) -> int | None:
    store = _store(model, "github", collection)
    entry = store.entries.get(oid)
    if entry is None:
        return None
    obj = copy.deepcopy(entry.data)
    if collection == "issue":
        obj["milestone"] = _milestone(model, obj.get("milestone"))
    else:
        current = obj.get("author_association")
        obj["author_association"] = model.rng.choice([a for a in _ASSOCIATIONS if a != current])
    version = entry.version
    if stamp:
        obj["updated_at"], version = github_time(now), now * 1000
    store.put(oid, obj, version)
    return version


def _milestone(model: Any, milestone: dict | None) -> dict:
    """The issue's embedded milestone with counters moved by other issues (its own stamp unchanged)."""
    base = milestone or {"number": 1, "title": "v1.0", "state": "open", "creator": user(LOGINS[0]),
                         "open_issues": 0, "closed_issues": 0}
    return {**base, "open_issues": base["open_issues"] + model.rng.randint(1, 3),
            "closed_issues": base["closed_issues"] + model.rng.randint(0, 2)}


def _github_delete(model: Any, collection: str, oid: str, now: int, _stamp: bool) -> int | None:
    # GitHub cannot delete pull requests; issues only without comments (as the engine's deletes)
    store = _store(model, "github", collection)
    if collection == "pull_request" or oid not in store.entries or not _allowed(model, "github", collection,
                                                                                 "delete", oid):
        return None
    store.delete(oid, now * 1000)
    return now * 1000


def _salesforce_update(model: Any, collection: str, oid: str, now: int, stamp: bool) -> int | None:
    model.commit_due()
    sobject = TYPES[collection]
    entry = model.rows[sobject].entries.get(oid)
    if entry is None or entry.data["IsDeleted"]:
        return None
    row = copy.deepcopy(entry.data)
    fresh = getattr(model, f"_fields_{collection}")()
    name = model.rng.choice(sorted(f for f in fresh if f not in ("AccountId", "Name", *AUDIT)))
    row[name] = fresh[name]
    version = entry.version
    if stamp:  # an automated process: SystemModstamp moves, LastModifiedDate does not
        row["SystemModstamp"], version = salesforce_time(now), now * 1000
    model.rows[sobject].put(oid, row, version)
    return version


def _hubspot_update(model: Any, collection: str, oid: str, now: int, stamp: bool) -> int | None:
    return model.silent_update(collection, oid, now, stamp)


_CHANGES = {("stripe", "update"): _stripe_update, ("stripe", "delete"): _stripe_delete,
            ("github", "update"): _github_update, ("github", "delete"): _github_delete,
            ("salesforce", "update"): _salesforce_update, ("hubspot", "update"): _hubspot_update}
