"""How a HubSpot account is given: a private app's token, the API base URL, and the incremental lookback."""

from __future__ import annotations

from apisync.connections import ConnectionSpec, FormField

CONNECTION = ConnectionSpec(
    form_fields=(
        FormField("lookback_s", "Lookback (s)", "The window re-read on every incremental run (search lag).",
                  "number"),
    ),
    placeholders={"host": "https://api.hubapi.com"},
)
