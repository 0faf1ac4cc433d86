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

Refresh-token rotation (Salesforce: an app setting; "OAuth 2.0 Refresh Token Flow for Renewed Sessions"):
the answer then carries a new `refresh_token` and the one sent stops working, so the refresh-token grant
takes its token from a `RefreshTokens` store, one refresh at a time, and stores the rotated one there
(`apisync.http.refresh_tokens`; with a Redis URL every worker of the account shares it).
`instance_url` in a token answer is where the org's API lives now (orgs move between instances): requests
for the configured API URL, or an instance named earlier, go to the newest one.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Generator
from typing import Any

import httpx
import jwt
import orjson

from apisync.http.auth import REDACTED, redact, scrub_logs
from apisync.http.errors import ApiError, FatalError, RetriableError
from apisync.http.refresh_tokens import (
    LocalRefreshTokens,
    RedisRefreshTokens,
    RefreshLockTimeout,
    RefreshTokens,
    family_key,
)
from apisync.settings import OAuthSettings

log = logging.getLogger("apisync.http")

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


def _origin(url: httpx.URL) -> str:
    return f"{url.scheme}://{url.netloc.decode('ascii')}"


class OAuth2Auth(httpx.Auth):
    """Bearer auth with a token from `settings.token_url`, renewed once per request on a 401.

    `api_url`: the configured API base URL, whose requests follow the token answer's `instance_url`.
    `refresh_tokens`: where the refresh-token grant keeps its newest token (default: this object only).
    """

    requires_response_body = True  # the token endpoint's JSON must be readable inside the flow

    def __init__(self, api: str, settings: OAuthSettings, *, clock: Callable[[], float] = time.time,
                 api_url: str | None = None, refresh_tokens: RefreshTokens | None = None) -> None:
        self._api, self._settings, self._clock = api, settings, clock
        self._grant = GRANTS[settings.flow](settings)
        self._token: str | None = None
        self._refresh_tokens = None if settings.flow != "refresh_token" else (
            refresh_tokens or LocalRefreshTokens(settings.refresh_token))
        # API origins this account's requests may be addressed to; all go to the newest instance
        self._origins = {_origin(httpx.URL(api_url))} if api_url else set()
        self._instance: str | None = None
        scrub_logs(settings.secrets)

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        """Send with the current token; on 401 renew it and send once more."""
        if self._token is None:
            yield from self._renew()
        self._authorize(request)
        response = yield request
        if response.status_code != 401:
            return
        yield from self._renew()
        self._authorize(request)
        yield request

    def _authorize(self, request: httpx.Request) -> None:
        """The bearer token, and the newest instance for a request addressed to an older one."""
        if self._instance is not None and _origin(request.url) in self._origins - {self._instance}:
            target = httpx.URL(self._instance)
            request.url = request.url.copy_with(scheme=target.scheme, host=target.host, port=target.port)
            request.headers["Host"] = target.netloc.decode("ascii")
        request.headers["Authorization"] = f"Bearer {self._token}"

    @property
    def secrets(self) -> tuple[str, ...]:
        """Values the HTTP layer must scrub from any text it emits (grant secrets and the live token)."""
        return (*self._settings.secrets, *((self._token,) if self._token else ()))

    def _renew(self) -> Generator[httpx.Request, httpx.Response, None]:
        if self._refresh_tokens is None:
            self._accept((yield from self._exchange(self._form())))
            return
        try:
            with self._refresh_tokens.held() as current:  # one refresh at a time, with the newest token
                form = {**self._form(), "refresh_token": current}
                answer = yield from self._exchange(form)
                self._keep_rotated(current, answer.get("refresh_token"))
        except RefreshLockTimeout as exc:
            raise self._error(RetriableError, None, f"refresh_token grant: {exc}", ()) from None
        self._accept(answer)

    def _exchange(self, form: dict[str, str]) -> Generator[httpx.Request, httpx.Response, dict[str, Any]]:
        response = yield httpx.Request("POST", self._settings.token_url, data=form,
                                       headers={"Accept": "application/json"})
        return self._answer_of(response, form)

    def _accept(self, answer: dict[str, Any]) -> None:
        """Use the answer's access token, and its instance_url for the API from now on."""
        self._token = answer["access_token"]
        scrub_logs((self._token,))
        instance = answer.get("instance_url")
        if isinstance(instance, str) and instance.startswith(("https://", "http://")):
            self._instance = _origin(httpx.URL(instance))
            self._origins.add(self._instance)

    def _keep_rotated(self, sent: str, rotated: Any) -> None:
        """Store a rotated refresh token (rotation on) for every worker; the one sent is invalid now."""
        if not isinstance(rotated, str) or not rotated or rotated == sent:
            return  # rotation off: the same token keeps working
        scrub_logs((rotated,))
        if not self._refresh_tokens.replace(sent, rotated):
            log.warning("%s refresh_token grant: another worker stored a newer refresh token first; keeping it",
                        self._api)

    def _form(self) -> dict[str, str]:
        try:
            return self._grant.form(self._clock())
        except ValueError as exc:
            raise self._error(FatalError, None, str(exc), ()) from None

    def _answer_of(self, response: httpx.Response, form: dict[str, str]) -> dict[str, Any]:
        """A successful answer (with an access token), else an error naming the endpoint's error code."""
        try:
            body = orjson.loads(response.content)
        except orjson.JSONDecodeError:
            body = None
        token = body.get("access_token") if isinstance(body, dict) else None
        if response.status_code == 200 and isinstance(token, str) and token:
            return body
        sent = tuple(v for k, v in form.items() if k != "grant_type")  # the grant's name is no secret
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


def auth_for(api: str, token: str, oauth: OAuthSettings | None, *, base_url: str | None = None,
             redis_url: str | None = None) -> httpx.Auth:
    """OAuth2Auth when the account has OAuth settings (its rotated refresh tokens in Redis when a URL is
    given, shared by every worker), else a static bearer token."""
    from apisync.http.auth import BearerTokenAuth

    if oauth is None:
        return BearerTokenAuth(token)
    return OAuth2Auth(api, oauth, api_url=base_url, refresh_tokens=shared_refresh_tokens(api, oauth, redis_url))


def shared_refresh_tokens(api: str, oauth: OAuthSettings, redis_url: str | None) -> RefreshTokens | None:
    """The account's refresh tokens in Redis (refresh-token grant and a Redis URL), else None."""
    if oauth.flow != "refresh_token" or not redis_url:
        return None
    import redis

    key = family_key(api, oauth.token_url, oauth.client_id, oauth.refresh_token)
    return RedisRefreshTokens(redis.Redis.from_url(redis_url), key, oauth.refresh_token)
