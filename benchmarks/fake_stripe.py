"""A Stripe customers listing of any size, generated on the fly, for the memory benchmark.

    python benchmarks/fake_stripe.py <port> <customers>

Why not the simulator: it keeps every object of every collection in memory and seeds about 2,500
objects/s, so a million customers would take minutes and gigabytes before the first page. This
serves only what a backfill of `customer` asks (`GET /v1/events?limit=1` for the start marker,
`GET /v1/customers?limit&starting_after`, newest first, one `created` second per customer), with a
`Date` header, which is all `StripeSource.backfill` reads. Prints one line when it listens.
"""

from __future__ import annotations

import random
import sys
import time

import orjson
import uvicorn
from common import customer
from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Route

NEWEST = int(time.time()) - 60


def page(total: int, after: str | None, limit: int) -> bytes:
    start = int(after.removeprefix("cus_")) + 1 if after else 0
    stop = min(total, start + limit)
    data = [customer(i, random.Random(i), NEWEST - i) for i in range(start, stop)]
    return orjson.dumps({"object": "list", "url": "/v1/customers", "has_more": stop < total, "data": data})


def create_app(total: int) -> Starlette:
    async def customers(request):
        limit = min(100, int(request.query_params.get("limit", 10)))
        return Response(page(total, request.query_params.get("starting_after"), limit),
                        media_type="application/json")

    async def events(_request):
        return Response(b'{"object":"list","url":"/v1/events","has_more":false,"data":[]}',
                        media_type="application/json")

    return Starlette(routes=[Route("/v1/customers", customers), Route("/v1/events", events)])


class _Server(uvicorn.Server):
    async def startup(self, sockets=None) -> None:
        await super().startup(sockets)
        print("fake stripe listening", flush=True)


if __name__ == "__main__":
    port, total = int(sys.argv[1]), int(sys.argv[2])
    _Server(uvicorn.Config(create_app(total), host="127.0.0.1", port=port, log_level="warning",
                           access_log=False)).run()
