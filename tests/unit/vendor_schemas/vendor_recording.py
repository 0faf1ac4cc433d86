"""The simulator in-process behind a recording transport, and a strict check of JSON against pydantic models.

Sources are driven through their public methods only, so what is checked is whatever requests they build;
every request and answer is kept as an `Exchange` for the vendor-schema tests to validate.
"""

from __future__ import annotations

import types
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Annotated, Any, Union, get_args, get_origin

import httpx
import orjson
from pydantic import BaseModel, TypeAdapter, ValidationError

from api_simulator.app import create_app
from api_simulator.config import SimulatorConfig
from apisync.http import ApiClient
from apisync.registry import spec_for

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # starlette nudges towards httpx2; httpx is the pinned client here
    from starlette.testclient import TestClient

EPOCH = 1_790_000_000
UNLIMITED = {"github": {"per_hour": 10**9, "secondary_per_minute": 10**9}, "salesforce": {"per_day": 10**9},
             "hubspot": {"per_10_seconds": 10**9, "search_per_second": 10**9}}
TOKENS = {"github": "ghp_apisync", "hubspot": "pat-na1-apisync", "salesforce": "sf_apisync_token"}


@dataclass(frozen=True, slots=True)
class Exchange:
    """One request a source sent to the simulator and the simulator's answer."""

    method: str
    path: str
    params: list[tuple[str, str]]
    body: Any  # the request's JSON body, if any
    status: int
    answer: Any  # the response's JSON body, None when empty or not JSON

    def line(self) -> str:
        query = "&".join(f"{k}={v}" for k, v in self.params)
        return f"{self.method} {self.path}{'?' + query if query else ''} -> HTTP {self.status}"


def _json(content: bytes) -> Any:
    try:
        return orjson.loads(content) if content else None
    except orjson.JSONDecodeError:
        return None


class RecordingSimulator:
    """One simulator app; `client(api)` is the ApiClient a sync run would build, recording every exchange."""

    def __init__(self, objects: int = 30, seed: int = 11) -> None:
        app = create_app(SimulatorConfig(seed=seed, objects=objects, epoch=EPOCH))
        self.sim = app.state.sim
        self.sim.update_config({"rate_limits": UNLIMITED})
        self.http = TestClient(app, base_url="http://sim.test")
        self.exchanges: list[Exchange] = []

    def client(self, api: str) -> ApiClient:
        def forward(request: httpx.Request) -> httpx.Response:
            reply = self.http.request(request.method, request.url.raw_path.decode(), headers=request.headers,
                                      content=request.content, follow_redirects=False)
            self.exchanges.append(Exchange(request.method, request.url.path, request.url.params.multi_items(),
                                           _json(request.content), reply.status_code, _json(reply.content)))
            headers = [(k, v) for k, v in reply.headers.multi_items()
                       if k.lower() not in ("content-length", "content-encoding", "transfer-encoding")]
            return httpx.Response(reply.status_code, headers=headers, content=reply.content, request=request)
        return ApiClient(api, "http://sim.test", None, transport=httpx.MockTransport(forward),
                         headers={"Authorization": f"Bearer {TOKENS[api]}"}, max_retries=0, sleep=lambda s: None,
                         signals=spec_for(api).signals)

    def get(self, api: str, path: str, **params: Any) -> Any:
        """A GET straight to the simulator (for endpoints no source walk reaches)."""
        return self.client(api).get_json(path, params or None).data


def run_quietly(notes: list[str], call: Callable[..., Any], *args: Any) -> Any:
    """`call(*args)`, drained when it is a generator; a failure is noted (the recording is still checked)."""
    try:
        result = call(*args)
        return list(result) if isinstance(result, Iterator) else result
    except Exception as exc:  # noqa: BLE001 - reported by the test after every exchange is checked
        notes.append(f"{type(exc).__name__}: {exc}")
        return None


# --- strict pydantic check ---------------------------------------------------------------------

def model_errors(annotation: Any, data: Any) -> list[str]:
    """Where `data` breaks the model: missing required fields, wrong types, fields the model does not name."""
    try:
        TypeAdapter(annotation).validate_python(data)
        broken: list[str] = []
    except ValidationError as error:
        broken = [f"{'.'.join(str(part) for part in e['loc'])}: {e['msg']}" for e in error.errors()]
    return broken + [f"{where}: not in the vendor's schema" for where in unknown_fields(annotation, data)]


def unknown_fields(annotation: Any, data: Any, path: str = "$") -> list[str]:
    """Paths of object keys the model (recursively) does not declare; models that allow extras are skipped."""
    origin = get_origin(annotation)
    if origin is Annotated:
        return unknown_fields(get_args(annotation)[0], data, path)
    if origin in (Union, types.UnionType):
        arm = _matching_arm(get_args(annotation), data)
        return [] if arm is None else unknown_fields(arm, data, path)
    if origin is list and isinstance(data, list):
        return [u for i, item in enumerate(data) for u in unknown_fields(get_args(annotation)[0], item, f"{path}[{i}]")]
    if origin is dict and isinstance(data, dict):
        return [u for k, v in data.items() for u in unknown_fields(get_args(annotation)[1], v, f"{path}.{k}")]
    if isinstance(annotation, type) and issubclass(annotation, BaseModel) and isinstance(data, dict):
        if annotation.model_config.get("extra") == "allow":
            return []
        declared = {(f.alias or name): f.annotation for name, f in annotation.model_fields.items()}
        return [u for k, v in data.items()
                for u in ([f"{path}.{k}"] if k not in declared else unknown_fields(declared[k], v, f"{path}.{k}"))]
    return []


def _matching_arm(arms: tuple, data: Any) -> Any:
    """The union member `data` validates against; else the first member of the same JSON kind."""
    for arm in arms:
        try:
            TypeAdapter(arm).validate_python(data)
            return arm
        except (ValidationError, TypeError):
            continue
    kind = dict if isinstance(data, dict) else list if isinstance(data, list) else None
    for arm in arms:
        if kind is dict and isinstance(arm, type) and issubclass(arm, BaseModel):
            return arm
        if kind is list and get_origin(arm) is list:
            return arm
    return None
