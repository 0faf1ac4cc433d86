"""OAuth 2.0 access tokens that renew themselves: refresh-token, client-credentials and JWT-bearer grants.

`OAuth2Auth` is an `httpx.Auth` whose `auth_flow` obtains a token on first use and, when the API
answers 401 (the session timed out), obtains a new one and sends that request once more — the refresh pattern of
httpx's custom authentication docs (python-httpx.org/advanced/authentication). A second 401 goes back
to the client, which classifies it as fatal. The generic ApiClient needs no change.

Grants: RFC 6749 §6 (refresh_token) and §4.4 (client_credentials); RFC 7523 §2.1 (JWT bearer:
`urn:ietf:params:oauth:grant-type:jwt-bearer`, an RS256 assertion with iss, sub, aud and an exp a
few minutes ahead).
Token-endpoint answers, grant parameters and issued tokens never reach an error or a log: errors carry
the endpoint's `error` code and description only (scrubbed), and every issued token is registered
with the log scrubber before it is used.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Generator

import httpx
import jwt
import orjson

from apisync.http.auth import REDACTED, redact, scrub_logs
from apisync.http.errors import ApiError, FatalError, RetriableError
from apisync.settings import OAuthSettings

JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
ASSERTION_TTL_S = 180  # the strictest issuer we serve wants exp within 3 minutes


class RefreshTokenGrant:
    """RFC 6749 §6: trade a long-lived refresh token for an access token."""

    def __init__(self, settings: OAuthSettings) -> None:
        self._settings = settings

    def form(self, now: float) -> dict[str, str]:
        s = self._settings
        form = {"grant_type": "refresh_token", "refresh_token": s.refresh_token, "client_id": s.client_id}
        if s.client_secret:  # optional for apps that do not require the secret on refresh
            form["client_secret"] = s.client_secret
        return form


class ClientCredentialsGrant:
    """RFC 6749 §4.4: the app's own id and secret."""

    def __init__(self, settings: OAuthSettings) -> None:
        self._settings = settings

    def form(self, now: float) -> dict[str, str]:
        s = self._settings
        return {"grant_type": "client_credentials", "client_id": s.client_id, "client_secret": s.client_secret}


class JwtBearerGrant:
    """RFC 7523: a short-lived assertion signed with the app's private key (RS256)."""

    def __init__(self, settings: OAuthSettings) -> None:
        self._settings = settings

    def form(self, now: float) -> dict[str, str]:
        s = self._settings
        claims = {"iss": s.client_id, "sub": s.username, "aud": s.audience, "exp": int(now) + ASSERTION_TTL_S}
        try:
            assertion = jwt.encode(claims, s.private_key, algorithm="RS256")
        except (ValueError, TypeError, jwt.PyJWTError) as exc:
            # the key's text must not leak through the library's message
            raise ValueError(f"the private key cannot sign an RS256 JWT ({type(exc).__name__})") from None
        return {"grant_type": JWT_BEARER, "assertion": assertion}


GRANTS = {"refresh_token": RefreshTokenGrant, "client_credentials": ClientCredentialsGrant,
          "jwt_bearer": JwtBearerGrant}


class OAuth2Auth(httpx.Auth):
    """Bearer auth with a token from `settings.token_url`, renewed once per request on a 401."""

    requires_response_body = True  # the token endpoint's JSON must be readable inside the flow

    def __init__(self, api: str, settings: OAuthSettings, *, clock: Callable[[], float] = time.time) -> None:
        self._api, self._settings, self._clock = api, settings, clock
        self._grant = GRANTS[settings.flow](settings)
        self._token: str | None = None
        scrub_logs(settings.secrets)

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        """Send with the current token; on 401 renew it and send once more."""
        if self._token is None:
            yield from self._renew()
        request.headers["Authorization"] = f"Bearer {self._token}"
        response = yield request
        if response.status_code != 401:
            return
        yield from self._renew()
        request.headers["Authorization"] = f"Bearer {self._token}"
        yield request

    @property
    def secrets(self) -> tuple[str, ...]:
        """Values the HTTP layer must scrub from any text it emits (grant secrets and the live token)."""
        return (*self._settings.secrets, *((self._token,) if self._token else ()))

    def _renew(self) -> Generator[httpx.Request, httpx.Response, None]:
        form = self._form()
        response = yield httpx.Request("POST", self._settings.token_url, data=form,
                                       headers={"Accept": "application/json"})
        self._token = self._token_from(response, form)
        scrub_logs((self._token,))

    def _form(self) -> dict[str, str]:
        try:
            return self._grant.form(self._clock())
        except ValueError as exc:
            raise self._error(FatalError, None, str(exc), ()) from None

    def _token_from(self, response: httpx.Response, form: dict[str, str]) -> str:
        """The access token of a successful answer, else an error naming the endpoint's error code."""
        try:
            body = orjson.loads(response.content)
        except orjson.JSONDecodeError:
            body = None
        token = body.get("access_token") if isinstance(body, dict) else None
        if response.status_code == 200 and isinstance(token, str) and token:
            return token
        sent = tuple(form.values())
        if isinstance(body, dict) and body.get("error"):
            reason = f"{self._settings.flow} grant refused: {body['error']}: {body.get('error_description', '')}"
        else:
            reason = f"{self._settings.flow} grant: the token endpoint gave no access_token"
        # 5xx and 429 may pass; a refused grant (400 invalid_grant, invalid_client) will not by retrying
        cls = RetriableError if response.status_code >= 500 or response.status_code == 429 else FatalError
        raise self._error(cls, response.status_code, reason, sent)

    def _error(self, cls: type[ApiError], status: int | None, reason: str, sent: tuple[str, ...]) -> ApiError:
        path = httpx.URL(self._settings.token_url).path
        return cls(self._api, "POST", path, status, redact(reason, (*self.secrets, *sent)))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(flow={self._settings.flow}, token={REDACTED})"

    __str__ = __repr__

    def __reduce__(self):
        raise TypeError(f"{type(self).__name__} cannot be pickled (it holds secrets)")


def auth_for(api: str, token: str, oauth: OAuthSettings | None) -> httpx.Auth:
    """OAuth2Auth when the account has OAuth settings, else a static bearer token."""
    from apisync.http.auth import BearerTokenAuth

    return OAuth2Auth(api, oauth) if oauth is not None else BearerTokenAuth(token)
