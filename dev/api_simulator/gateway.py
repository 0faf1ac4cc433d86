"""Pure-ASGI front door: auth, rate limits, transport faults, stats and per-API headers."""
from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import Callable
from typing import Any

from . import github, hubspot, salesforce, stripe
from .faults import TRANSPORT_KINDS, Fault
from .ratelimit import Verdict
from .salesforce_oauth import TOKEN_PATH
from .timefmt import http_date

PREFIXES = (("/v1/", "stripe"), ("/repos/", "github"), ("/repositories/", "github"), ("/services/", "salesforce"),
            ("/crm/", "hubspot"))
SCHEMES = {"stripe": ("bearer",), "github": ("bearer", "token"), "salesforce": ("bearer", "oauth"),
           "hubspot": ("bearer",)}
# HubSpot's 401 for a missing or unknown private app token (HubSpot/hubspot-api-nodejs#432, #148).
HUBSPOT_AUTH = ("Authentication credentials not found. This API supports OAuth 2.0 authentication and you can "
                "find more details at https://developers.hubspot.com/docs/methods/auth/oauth-overview")


def api_for(path: str) -> str | None:
    """Which API a path belongs to (None for /_admin and unknown paths)."""
    for prefix, api in PREFIXES:
        if path.startswith(prefix):
            return api
    return None


def _token(scope: dict, api: str) -> str | None:
    for name, value in scope["headers"]:
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").strip().partition(" ")
            return token.strip() if scheme.lower() in SCHEMES[api] else ""
    return None


def _redact(token: str) -> str:
    # Stripe echoes only the last 4 characters of a wrong key; never the rest.
    return "*" * 4 + token[-4:] if len(token) > 8 else "****"


def auth_error(api: str, token: str | None):
    """The API's own answer to a missing or wrong credential."""
    if api == "stripe":
        if not token:
            return stripe.api_error_response(401, "You did not provide an API key. You need to provide your API "
                                             "key in the Authorization header, using Bearer auth (e.g. "
                                             "'Authorization: Bearer YOUR_SECRET_KEY').", "invalid_request_error")
        return stripe.api_error_response(401, f"Invalid API Key provided: {_redact(token)}", "invalid_request_error")
    if api == "github":
        return github.error(401, "Requires authentication" if token is None else "Bad credentials")
    if api == "hubspot":
        return hubspot.error(401, HUBSPOT_AUTH, "INVALID_AUTHENTICATION")
    return salesforce.error(401, "INVALID_SESSION_ID", "Session expired or invalid")


def limit_error(api: str, verdict: Verdict):
    """The API's answer to a request over its rate limit."""
    if api == "stripe":
        response = stripe.api_error_response(429, "Request rate limit exceeded. Learn more about rate limits "
                                                  "here https://stripe.com/docs/rate-limits.")
    elif api == "github":
        if verdict.limited == "secondary":
            # docs: secondary limits answer 403 or 429 with retry-after; we use 429 here.
            response = github.error(429, "You have exceeded a secondary rate limit. Please wait a few minutes "
                                         "before you try again.", headers={"retry-after": str(verdict.retry_after)})
        else:
            response = github.error(403, "API rate limit exceeded for user ID 1. (But here's the good news: "
                                         "Authenticated requests get a higher rate limit.)")
    elif api == "hubspot":
        response = _hubspot_limit(verdict.limited)
    else:
        response = salesforce.error(403, "REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded.")
    response.headers.update(verdict.headers)
    return response


def _hubspot_limit(limited: str | None):
    # Bodies as HubSpot sends them: HubSpot/hubspot-api-python#117 (TEN_SECONDLY_ROLLING) and
    # HGData/mk-node-hubspot#84, #89 (SECONDLY); errorType and policyName, no category, no Retry-After.
    if limited == "secondly":
        return hubspot.error(429, "You have reached your secondly limit.", "", errorType="RATE_LIMIT",
                             policyName="SECONDLY")
    return hubspot.error(429, "You have reached your ten_secondly_rolling limit.", "", errorType="RATE_LIMIT",
                         policyName="TEN_SECONDLY_ROLLING")


def server_error(api: str, status: int):
    """An injected 5xx in the API's error shape."""
    if api == "stripe":
        return stripe.api_error_response(status, "An unknown error occurred", "api_error")
    if api == "github":
        return github.error(status, "Server Error")
    if api == "hubspot":
        return hubspot.error(status, "internal error", "")
    return salesforce.error(status, "UNKNOWN_EXCEPTION", "An unexpected error occurred. Please include this "
                                                         "ErrorId if you contact support: 0-0 (0)")


# What each API answers when it refuses one object (REFUSED_STATUSES), in its own error shape:
# Stripe's errors (https://docs.stripe.com/api/errors: 400 "The request was unacceptable", 403 "The API key
# doesn't have permissions to perform the request"); GitHub's "Resource not accessible by integration" and
# "Repository access blocked" (https://docs.github.com/en/rest/repos/repos#get-a-repository, 403 and 451);
# HubSpot's MISSING_SCOPES (https://developers.hubspot.com/docs/api/scopes); Salesforce's REST status codes
# (https://developer.salesforce.com/docs/atlas.en-us.api_rest.meta/api_rest/errorcodes.htm).
_REFUSALS = {
    400: ("The request was unacceptable, often due to missing a required parameter.", "Problems parsing JSON",
          "VALIDATION_ERROR", "MALFORMED_QUERY"),
    403: ("The API key doesn't have permissions to perform the request.", "Resource not accessible by integration",
          "MISSING_SCOPES", "INSUFFICIENT_ACCESS"),
    451: ("This object is unavailable for legal reasons.", "Repository access blocked", "LEGAL_BLOCK",
          "INSUFFICIENT_ACCESS"),
}
_HUBSPOT_SCOPES = "This app hasn't been granted all required scopes to make this call."


def refused_error(api: str, status: int):
    """An injected refusal of one object (400, 403, 451) in the API's error shape."""
    stripe_message, github_message, hubspot_category, salesforce_code = _REFUSALS[status]
    if api == "stripe":
        return stripe.api_error_response(status, stripe_message, "invalid_request_error")
    if api == "github":
        return github.error(status, github_message)
    if api == "hubspot":
        return hubspot.error(status, _HUBSPOT_SCOPES if status == 403 else stripe_message, hubspot_category)
    return salesforce.error(status, salesforce_code, "The request has been refused. Verify that the logged-in user "
                                                     "has appropriate permissions.")


async def abort_connection(send: Callable) -> None:
    """Drop the TCP connection with a reset (uvicorn); elsewhere, fail the request."""
    transport = getattr(getattr(send, "__self__", None), "transport", None)
    if transport is None:
        raise ConnectionResetError("api_simulator fault: connection reset")
    sock = transport.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
    transport.abort()
    for _ in range(3):
        await asyncio.sleep(0)  # let the server see the disconnect before this call returns


class Gateway:
    """Wraps the Starlette app; everything under an API prefix passes through here first."""

    def __init__(self, app: Any, sim_of: Callable[[], Any]) -> None:
        self.app = app
        self.sim_of = sim_of

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        sim = self.sim_of()
        api = api_for(scope["path"])
        extra = [(b"date", http_date(sim.clock.now()).encode())]
        if api is None:
            return await self.app(scope, receive, _with_headers(send, extra))
        status_box = [0]
        counting = _counting(_with_headers(send, extra), status_box)
        try:
            await self._serve(sim, api, scope, receive, send, counting, extra)
        finally:
            if status_box[0]:
                sim.count(api, status_box[0])

    async def _serve(self, sim, api, scope, receive, raw_send, send, extra) -> None:
        if api == "salesforce" and scope["path"] == TOKEN_PATH:
            return await self.app(scope, receive, send)  # the OAuth endpoint takes POST and no bearer
        if scope["method"] not in ("GET", "HEAD") and not _hubspot_search(api, scope):
            return await _respond(_method_error(api), scope, receive, send)
        token = _token(scope, api)
        if not sim.token_valid(api, token):
            return await _respond(auth_error(api, token), scope, receive, send)
        verdict = sim.limiter.check(api, token, scope["path"])
        if verdict.limited:
            return await _respond(limit_error(api, verdict), scope, receive, send)
        fault = sim.faults.take(api, scope["path"], TRANSPORT_KINDS)
        if fault is not None and fault.kind == "rate_limited":  # its own limit headers, not the counter's
            injected = sim.limiter.injected(api, fault.limit, fault.retry_after_s)
            return await _respond(limit_error(api, injected), scope, receive, send)
        extra += [(k.lower().encode(), v.encode()) for k, v in verdict.headers.items()]
        if fault is not None:
            return await self._fault(sim, fault, api, scope, receive, raw_send, send)
        status_box: list[int] = [0]
        await self.app(scope, receive, _counting(send, status_box))
        if api == "github" and status_box[0] == 304:
            sim.limiter.refund(api, token)  # docs: 304s do not count against the primary limit

    async def _fault(self, sim, fault: Fault, api, scope, receive, raw_send, send) -> None:
        kind = fault.kind
        if kind == "http_500":
            return await _respond(server_error(api, fault.status), scope, receive, send)
        if kind == "refused":
            return await _respond(refused_error(api, fault.status), scope, receive, send)
        if kind == "hold":
            deadline = asyncio.get_running_loop().time() + fault.delay_s
            while sim.faults.is_active(fault) and asyncio.get_running_loop().time() < deadline:
                await asyncio.sleep(0.05)
            return await self.app(scope, receive, send)
        if kind in ("slow", "timeout"):
            await asyncio.sleep(fault.delay_s)
            if kind == "slow":
                return await self.app(scope, receive, send)
        if kind in ("timeout", "reset"):
            return await abort_connection(raw_send)
        if kind == "malformed_json":
            body = b'{"object": "list", "data": [{"id": "broken", "amount": 12,,]'
            return await send_raw(send, 200, body)
        await self._truncated(scope, receive, raw_send, send)

    async def _truncated(self, scope, receive, raw_send, send) -> None:
        """Send the real headers and full Content-Length, then half the body, then drop the connection."""
        captured: dict[str, Any] = {"body": b""}

        async def capture(message):
            if message["type"] == "http.response.start":
                captured["start"] = message
            else:
                captured["body"] += message.get("body", b"")
        await self.app(scope, receive, capture)
        body = captured["body"]
        start = dict(captured["start"])
        start["headers"] = [(k, v) for k, v in start["headers"] if k.lower() != b"content-length"]
        start["headers"].append((b"content-length", str(len(body)).encode()))
        await send(start)
        await send({"type": "http.response.body", "body": body[: len(body) // 2], "more_body": True})
        await abort_connection(raw_send)


def _hubspot_search(api: str, scope: dict) -> bool:
    """HubSpot's CRM search and batch read are POSTs (the only non-GETs the simulator serves on an API path)."""
    return api == "hubspot" and scope["method"] == "POST" and scope["path"].endswith(("/search", "/batch/read"))


def _method_error(api: str):
    if api == "stripe":
        return stripe.api_error_response(405, "This simulator serves GET requests only.", "invalid_request_error")
    if api == "github":
        return github.error(404, "Not Found")
    if api == "hubspot":
        return hubspot.error(405, "This simulator serves GET (and POST .../search) only.", "VALIDATION_ERROR")
    return salesforce.error(405, "METHOD_NOT_ALLOWED", "HTTP Method not allowed for this resource")


async def _respond(response, scope, receive, send) -> None:
    await response(scope, receive, send)


async def send_raw(send: Callable, status: int, body: bytes) -> None:
    """A raw JSON-typed answer (used for the malformed body fault)."""
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def _with_headers(send: Callable, extra: list[tuple[bytes, bytes]]) -> Callable:
    async def wrapped(message):
        if message["type"] == "http.response.start":
            message = {**message, "headers": list(message.get("headers", [])) + extra}
        await send(message)
    return wrapped


def _counting(send: Callable, box: list[int]) -> Callable:
    async def wrapped(message):
        if message["type"] == "http.response.start":
            box[0] = message["status"]
        await send(message)
    return wrapped

