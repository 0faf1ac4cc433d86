"""Small response helpers shared by the three API modules."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
from starlette.responses import Response

JSON = "application/json; charset=utf-8"


def json_response(payload: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    """orjson-encoded JSON answer (bytes are passed through untouched)."""
    body = payload if isinstance(payload, bytes) else orjson.dumps(payload)
    return Response(body, status_code=status, headers=dict(headers or {}), media_type=JSON)


def get_sim(request) -> Any:
    """The Simulator instance behind this app."""
    return request.app.state.sim


class ApiError(Exception):
    """An error answer in the API's own shape, raised from deep inside a handler."""

    def __init__(self, response: Response) -> None:
        super().__init__("api error")
        self.response = response
