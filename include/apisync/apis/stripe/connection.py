"""How a Stripe account is given: a secret key, the API base URL, and the version to pin
(`api_version`; APISYNC_STRIPE_API_VERSION for the command line) and the events settle window."""

from __future__ import annotations

from apisync.connections import ConnectionSpec, FormField

CONNECTION = ConnectionSpec(
    form_fields=(
        FormField("api_version", "Stripe-Version", "The API version to pin every request to, e.g. 2024-06-20 "
                  "(empty: the account's default)."),
        FormField("settle_s", "Events settle window (s)", "Read /v1/events only up to now minus this: the "
                  "events list is eventually consistent.", "number"),
    ),
    placeholders={"host": "https://api.stripe.com"},
    env_extras={"API_VERSION": "api_version"},
)
