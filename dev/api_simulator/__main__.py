"""`python -m api_simulator --port N`: serve the four APIs on 127.0.0.1 until SIGINT/SIGTERM."""
from __future__ import annotations

import argparse
import asyncio
import sys

import uvicorn

from .app import create_app
from .config import Credentials, SimulatorConfig


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line flags (credentials default to env, then the built-in test values)."""
    env = Credentials.from_env()
    parser = argparse.ArgumentParser(prog="api_simulator", description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--objects", type=int, default=200, help="objects per collection at start")
    parser.add_argument("--mutation-rate", type=float, default=0.0, help="background mutations per second")
    parser.add_argument("--epoch", type=float, default=None, help="pin the server clock's start (unix s)")
    parser.add_argument("--stripe-key", default=env.stripe)
    parser.add_argument("--github-token", default=env.github)
    parser.add_argument("--salesforce-token", default=env.salesforce)
    parser.add_argument("--hubspot-token", default=env.hubspot)
    return parser.parse_args(argv)


class _Server(uvicorn.Server):
    """uvicorn server that prints the readiness line once its socket accepts."""

    async def startup(self, sockets=None) -> None:
        await super().startup(sockets)
        if self.started:
            port = self.servers[0].sockets[0].getsockname()[1] if self.servers else self.config.port
            print(f"api_simulator listening on http://{self.config.host}:{port}", flush=True)


def main(argv: list[str] | None = None) -> int:
    """Build the app from flags and serve it."""
    args = parse_args(argv)
    config = SimulatorConfig(seed=args.seed, objects=args.objects, epoch=args.epoch,
                             mutation_rate_per_s=args.mutation_rate,
                             credentials=Credentials(args.stripe_key, args.github_token, args.salesforce_token,
                                                         hubspot=args.hubspot_token))
    server = _Server(uvicorn.Config(create_app(config), host=args.host, port=args.port, log_level="warning",
                                    access_log=False, date_header=False, server_header=False, lifespan="on"))
    asyncio.run(server.serve())
    return 0


if __name__ == "__main__":
    sys.exit(main())
