"""How a GitHub account is given: a token (the official GitHub provider's `github` connection, or
`apisync_github`), the GitHub Enterprise `.../api/v3` URL as host or api.github.com without one, and the
repositories to sync (`repos`; APISYNC_GITHUB_REPO for the command line). The provider's GitHub App
extras are refused: installation tokens expire within a sync."""

from __future__ import annotations

from apisync.connections import ConnectionSpec, FormField

API_URL = "https://api.github.com"
# The GitHub provider's App-authentication extras: credentials, never passed on as source options.
APP_EXTRAS = ("key_path", "private_key", "app_id", "installation_id", "token_permissions")

CONNECTION = ConnectionSpec(
    form_fields=(FormField("repos", "Repositories", "Comma-separated owner/name, e.g. octo/app, octo/lib.", "list"),),
    placeholders={"host": "https://api.github.com (or GitHub Enterprise .../api/v3)"},
    default_base_url=API_URL,  # the provider's rule: the host, else api.github.com
    provider_conn_types=("github",),
    refused_extras=APP_EXTRAS,
    refused_hint="GitHub App authentication is not supported: installation tokens expire within a sync",
    env_extras={"REPO": "repos"},
)
