"""The APIs and collections apisync syncs: data only, imported by topics, sources and the normalizer."""

APIS: tuple[str, ...] = ("stripe", "github", "salesforce")

# Singular object names; they appear in record keys (`<api>.<collection>.<id>`) and topic names.
COLLECTIONS: dict[str, tuple[str, ...]] = {
    "stripe": ("customer", "subscription", "invoice", "charge"),
    "github": ("issue", "pull_request", "issue_comment"),
    "salesforce": ("account", "contact", "opportunity"),
}

# Event types every collection emits; declared rules add their own per collection.
BASE_EVENT_TYPES: tuple[str, ...] = ("created", "updated", "deleted")
