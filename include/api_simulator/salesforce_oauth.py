"""Salesforce sessions: access tokens that expire, and the OAuth token endpoint that issues new ones.

- An access token is a session; it dies after the org's session timeout (2 h by default; Setup →
  Session Settings) and the REST API then answers 401 `[{"message": "Session expired or invalid",
  "errorCode": "INVALID_SESSION_ID"}]` (REST API Developer Guide, "Status Codes and Error Responses").
  Real sessions are extended by activity; tokens issued here die `lifetime` after issue, the harsher
  case, while the configured `--salesforce-token` stands for a session kept alive (never ages).
- `POST /services/oauth2/token` (form-encoded) serves three grants (Salesforce Help, "OAuth 2.0 Refresh
  Token Flow", "OAuth 2.0 Client Credentials Flow", "OAuth 2.0 JWT Bearer Flow for Server-to-Server
  Integration"): `refresh_token`, `client_credentials`, `urn:ietf:params:oauth:grant-type:jwt-bearer`
  (RS256 assertion; iss = consumer key, sub = username, aud = https://login.salesforce.com,
  https://test.salesforce.com or this server, exp in the future). Answers `{access_token,
  instance_url, id, token_type: "Bearer", issued_at, signature, scope}`; no new refresh token.
  Errors: 400 `{"error", "error_description"}` — invalid_client_id, invalid_client, invalid_grant,
  unsupported_grant_type.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Callable
from urllib.parse import parse_qs

import jwt
from starlette.routing import Route

from .responses import get_sim, json_response

TOKEN_PATH = "/services/oauth2/token"
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
ORG_ID = "00D5g000004ApisAAA"  # the simulated org (18 chars, like OrganizationId in Outbound Messages)
USER_ID = "0055g00000ApisyAAA"
AUDIENCES = ("https://login.salesforce.com", "https://test.salesforce.com")


class Sessions:
    """Issued access tokens and when each was issued, on the server clock."""

    def __init__(self, now: Callable[[], float], lifetime_s: Callable[[], float], static_token: str) -> None:
        self._now, self._lifetime_s = now, lifetime_s
        self._issued: dict[str, float] = {}
        # The configured token stands for a session kept alive by activity (real sessions are extended
        # while used): it does not age, so clock jumps of days keep working; expire_all still ends it.
        self._static = static_token
        self.granted = 0

    def issue(self) -> str:
        """A new session id shaped like Salesforce's (`<org id>!<opaque>`)."""
        token = f"{ORG_ID[:15]}!AQ{secrets.token_urlsafe(30)}"
        self._issued[token] = self._now()
        self.granted += 1
        return token

    def valid(self, token: str | None) -> bool:
        """Issued here and younger than the session lifetime."""
        if token and token == self._static:
            return True
        issued = self._issued.get(token or "")
        return issued is not None and self._now() - issued < self._lifetime_s()

    def expire_all(self) -> int:
        """End every session now (an admin's "expire all sessions"), the configured one too, until reset."""
        count, self._issued, self._static = len(self._issued) + bool(self._static), {}, ""
        return count


def _oauth_error(code: str, description: str, status: int = 400):
    return json_response({"error": code, "error_description": description}, status)


def _check_client(form: dict[str, str], creds, secret_required: bool):
    if form.get("client_id") != creds.salesforce_client_id:
        return _oauth_error("invalid_client_id", "client identifier invalid")
    if (secret_required or "client_secret" in form) and not hmac.compare_digest(
            form.get("client_secret", ""), creds.salesforce_client_secret):
        return _oauth_error("invalid_client", "invalid client credentials")
    return None


def _check_assertion(assertion: str, public_key: str, creds, own_url: str):
    """None if the JWT is signed by the configured key with the right claims, else the error answer."""
    if not public_key:
        return _oauth_error("invalid_grant", "invalid assertion")
    try:
        # exp is checked on wall time: the client signs with its own clock, not the simulator's
        claims = jwt.decode(assertion, public_key, algorithms=["RS256"], audience=[*AUDIENCES, own_url],
                            options={"require": ["iss", "sub", "aud", "exp"]})
    except jwt.ExpiredSignatureError:
        return _oauth_error("invalid_grant", "expired authorization code")
    except jwt.PyJWTError:
        return _oauth_error("invalid_grant", "invalid assertion")
    if claims["iss"] != creds.salesforce_client_id:
        return _oauth_error("invalid_client_id", "client identifier invalid")
    if claims["sub"] != creds.salesforce_username:
        return _oauth_error("invalid_grant", "user hasn't approved this consumer")
    return None


def _refused(form: dict[str, str], sim, own_url: str):
    """The error answer for a grant that must be refused, else None."""
    creds, grant = sim.config.credentials, form.get("grant_type")
    if grant == "refresh_token":
        return _check_client(form, creds, secret_required=False) or (
            None if hmac.compare_digest(form.get("refresh_token", ""), creds.salesforce_refresh_token)
            else _oauth_error("invalid_grant", "expired access/refresh token"))
    if grant == "client_credentials":
        return _check_client(form, creds, secret_required=True)
    if grant == JWT_BEARER:
        return _check_assertion(form.get("assertion", ""), sim.runtime["salesforce_jwt_public_key"], creds, own_url)
    return _oauth_error("unsupported_grant_type", "grant type not supported")


async def token(request):
    """POST /services/oauth2/token."""
    if request.method != "POST":
        return _oauth_error("invalid_request", "must use HTTP POST", 405)
    sim = get_sim(request)
    form = {k: v[-1] for k, v in parse_qs((await request.body()).decode("utf-8", "replace")).items()}
    own_url = str(request.base_url).rstrip("/")
    refused = _refused(form, sim, own_url)
    if refused is not None:
        return refused
    access = sim.sf_sessions.issue()
    issued_at = str(int(sim.clock.now() * 1000))
    identity = f"{own_url}/id/{ORG_ID}/{USER_ID}"
    signature = base64.b64encode(hmac.new(sim.config.credentials.salesforce_client_secret.encode(),
                                          (identity + issued_at).encode(), hashlib.sha256).digest()).decode()
    return json_response({"access_token": access, "instance_url": own_url, "id": identity, "token_type": "Bearer",
                          "issued_at": issued_at, "signature": signature, "scope": "api"})


async def admin_sessions(request):
    """GET: issued grants; POST /_admin/salesforce/sessions/expire: end every session now."""
    sessions = get_sim(request).sf_sessions
    if request.method == "POST":
        return json_response({"expired": sessions.expire_all(), "granted": sessions.granted})
    return json_response({"granted": sessions.granted})


routes = [
    Route(TOKEN_PATH, token, methods=["GET", "POST"]),
    Route("/_admin/salesforce/sessions", admin_sessions, methods=["GET"]),
    Route("/_admin/salesforce/sessions/expire", admin_sessions, methods=["POST"]),
]
