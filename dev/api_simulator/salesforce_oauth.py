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
  instance_url, id, token_type: "Bearer", issued_at, signature, scope}`.
  Errors: 400 `{"error", "error_description"}` — invalid_client_id, invalid_client, invalid_grant,
  unsupported_grant_type.
- Refresh-token rotation is on, as Salesforce asks of connected apps ("Force one-time-use Refresh Tokens -
  (RTR) Refresh Token Rotation", Salesforce Help article 005316711; "OAuth 2.0 Refresh Token Flow for
  Renewed Sessions"): each refresh answers a new `refresh_token` and invalidates the one sent, and "any
  attempted reuse of an invalidated refresh token results in the immediate revocation of the current
  refresh token and all associated access tokens": the reuse and every later refresh answer 400
  invalid_grant "expired access/refresh token" until the app is authorised again (an admin reset here).
  `POST /_admin/salesforce/oauth {"rotation": false}` turns it off (the same refresh token keeps working).
- `instance_url` is where the org lives; `{"instance_url": ...}` on the same admin route answers another
  one, as after an org migration to another instance.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Callable
from urllib.parse import parse_qs

import jwt
import orjson
from starlette.routing import Route

from .responses import get_sim, json_response

TOKEN_PATH = "/services/oauth2/token"
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
# 18-character ids end with their case-safe suffix (a bit per capital letter of each 5-character chunk)
ORG_ID = "00D5g000004ApisEAC"  # the simulated org (18 chars, like OrganizationId in Outbound Messages)
USER_ID = "0055g00000ApisyAAB"
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
        self._family: RefreshTokenFamily | None = None
        self.instance_url = ""  # "" = this server, as the request reached it

    def issue(self) -> str:
        """A new session id shaped like Salesforce's (`<org id>!<opaque>`)."""
        # a session id is the org's 15-character id, "!", then letters, digits, dots and underscores
        token = f"{ORG_ID[:15]}!AQ{secrets.token_urlsafe(30).replace('-', '.')}"
        self._issued[token] = self._now()
        self.granted += 1
        return token

    def family(self, seed: str) -> RefreshTokenFamily:
        """The refresh-token family, authorised with `seed` (the configured refresh token) on first use."""
        if self._family is None:
            self._family = RefreshTokenFamily(seed)
        return self._family

    def revoke_family(self) -> None:
        """Reuse of a retired refresh token: the family and every access token it issued end now."""
        family = self._family
        if family is None:
            return
        family.revoke()
        for token in family.access_tokens:
            self._issued.pop(token, None)
        family.access_tokens.clear()

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


class RefreshTokenFamily:
    """The integration user's refresh tokens for the connected app: the live one, the retired ones."""

    def __init__(self, seed: str) -> None:
        self.rotation = True
        self._live: str | None = seed
        self._retired: set[str] = set()
        self.access_tokens: set[str] = set()  # issued by this family's refreshes, revoked with it
        self.rotations = self.revocations = 0

    def reused(self, token: str) -> bool:
        """A token this family rotated away: its reuse revokes the family (`Sessions.revoke_family`)."""
        return token in self._retired

    def redeem(self, token: str) -> tuple[bool, str | None]:
        """(accepted, the new refresh token to answer: None with rotation off)."""
        if self._live is None or not token or not hmac.compare_digest(token, self._live):
            return False, None
        if not self.rotation:
            return True, None
        self._retired.add(token)
        self._live = f"5Aep861{secrets.token_urlsafe(40)}"
        self.rotations += 1
        return True, self._live

    def revoke(self) -> None:
        """End the family: no refresh token of it works any more, nor the access tokens it issued."""
        self._live = None
        self.revocations += 1

    def state(self) -> dict:
        """Counts for tests and the admin API (never a token)."""
        return {"rotation": self.rotation, "rotations": self.rotations, "revocations": self.revocations,
                "live": self._live is not None}


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
        return _check_client(form, creds, secret_required=False)
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
    sessions, rotated = sim.sf_sessions, None
    if form.get("grant_type") == "refresh_token":
        family, sent = sessions.family(sim.config.credentials.salesforce_refresh_token), form.get("refresh_token", "")
        if family.reused(sent):
            sessions.revoke_family()
        accepted, rotated = family.redeem(sent)
        if not accepted:
            return _oauth_error("invalid_grant", "expired access/refresh token")
    access = sessions.issue()
    if form.get("grant_type") == "refresh_token":
        family.access_tokens.add(access)
    answer = _token_answer(sim, access, own_url)
    return json_response({**answer, "refresh_token": rotated} if rotated else answer)


def _token_answer(sim, access: str, own_url: str) -> dict:
    issued_at = str(int(sim.clock.now() * 1000))
    identity = f"{own_url}/id/{ORG_ID}/{USER_ID}"
    signature = base64.b64encode(hmac.new(sim.config.credentials.salesforce_client_secret.encode(),
                                          (identity + issued_at).encode(), hashlib.sha256).digest()).decode()
    return {"access_token": access, "instance_url": sim.sf_sessions.instance_url or own_url, "id": identity,
            "token_type": "Bearer", "issued_at": issued_at, "signature": signature, "scope": "api"}


async def admin_sessions(request):
    """GET: issued grants; POST /_admin/salesforce/sessions/expire: end every session now."""
    sessions = get_sim(request).sf_sessions
    if request.method == "POST":
        return json_response({"expired": sessions.expire_all(), "granted": sessions.granted})
    return json_response({"granted": sessions.granted})


async def admin_oauth(request):
    """GET: rotation state; POST {"rotation": bool, "instance_url": str}: the app's setting, an org move."""
    sim = get_sim(request)
    sessions = sim.sf_sessions
    family = sessions.family(sim.config.credentials.salesforce_refresh_token)
    if request.method == "POST":
        try:
            patch = orjson.loads(await request.body() or b"{}")
        except orjson.JSONDecodeError:
            patch = None
        if not isinstance(patch, dict) or not isinstance(patch.get("rotation", True), bool) \
                or not isinstance(patch.get("instance_url", ""), str):
            return json_response({"error": "expects {rotation: bool, instance_url: str}"}, 400)
        family.rotation = patch.get("rotation", family.rotation)
        sessions.instance_url = patch.get("instance_url", sessions.instance_url).rstrip("/")
    return json_response({**family.state(), "instance_url": sessions.instance_url})


routes = [
    Route(TOKEN_PATH, token, methods=["GET", "POST"]),
    Route("/_admin/salesforce/oauth", admin_oauth, methods=["GET", "POST"]),
    Route("/_admin/salesforce/sessions", admin_sessions, methods=["GET"]),
    Route("/_admin/salesforce/sessions/expire", admin_sessions, methods=["POST"]),
]
