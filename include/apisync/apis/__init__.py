"""The APIs apisync syncs: one package each (`apisync.apis.<api>`), registered here, one line each.

Importing this package is what registers them: entry points (the CLI, the webhook receiver, the Airflow
plugin, the tests) import it; generic modules ask `apisync.registry` and never import it.
"""

from __future__ import annotations

from apisync.apis import github, hubspot, salesforce, stripe
from apisync.registry import register

register(stripe.SPEC)
register(github.SPEC)
register(salesforce.SPEC)
register(hubspot.SPEC)
