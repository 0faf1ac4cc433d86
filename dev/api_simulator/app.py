"""ASGI app factory: Starlette routes for the four APIs and /_admin, behind the Gateway."""
from __future__ import annotations

import asyncio
import contextlib

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response

from . import admin, github, hubspot, salesforce, salesforce_oauth, stripe
from .config import SimulatorConfig
from .gateway import Gateway
from .mutations import MutationEngine
from .responses import ApiError, json_response
from .state import Simulator


async def _api_error(_request: Request, exc: ApiError) -> Response:
    return exc.response


async def _not_found(request: Request, _exc: Exception) -> Response:
    return json_response({"message": f"no route for {request.url.path[:100]}"}, 404)


async def _crash(request: Request, exc: Exception) -> Response:
    # Never a stack trace to the client: one line naming the failure kind.
    return json_response({"message": f"simulator internal error ({type(exc).__name__})"}, 500)


async def _commit_open_transactions(sim: Simulator, every_s: float = 0.5) -> None:
    """A long Salesforce transaction commits on time and pushes then, even if nobody reads meanwhile."""
    while True:
        await asyncio.sleep(every_s)
        sim.commit_due()


def create_app(config: SimulatorConfig | None = None, sim: Simulator | None = None) -> Gateway:
    """Build the ASGI app (run it with uvicorn's date_header=False; the app writes Date itself)."""
    sim = sim or Simulator(config)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        app.state.engine.ensure_running()
        sim.webhooks.start()
        committer = asyncio.get_running_loop().create_task(_commit_open_transactions(sim))
        yield
        committer.cancel()
        await app.state.engine.stop()
        sim.webhooks.stop()

    routes = admin.routes + salesforce_oauth.routes + stripe.routes + github.routes + salesforce.routes + hubspot.routes
    app = Starlette(routes=routes,
                    exception_handlers={ApiError: _api_error, 404: _not_found, 405: _not_found, Exception: _crash},
                    lifespan=lifespan)
    app.state.sim = sim
    app.state.engine = MutationEngine(sim, sim.config.seed)
    gateway = Gateway(app, lambda: sim)
    gateway.state = app.state  # handy for tests: create_app(...).state.sim
    return gateway
