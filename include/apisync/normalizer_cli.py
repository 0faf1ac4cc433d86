"""`python -m apisync normalize <api>` and `python -m apisync ledger rebuild <api>`.

Redis comes from APISYNC_REDIS_URL (default redis://127.0.0.1:6379/0).
"""

from __future__ import annotations

import argparse
import logging
import os


def redis_url() -> str:
    return os.environ.get("APISYNC_REDIS_URL", "redis://127.0.0.1:6379/0")


def _normalize(args: argparse.Namespace) -> int:
    from apisync.cli import kafka_config
    from apisync.normalizer import normalize
    from apisync.sync.cli import api_settings_from_env

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    prefix = f"APISYNC_{args.api.upper()}_"
    # With the API's URL and token the normalizer re-fetches thin webhooks and settles equal-version ties.
    api = api_settings_from_env(args.api) if os.environ.get(prefix + "URL") else None
    stats = normalize(args.api, kafka_config(args), redis_url(), max_seconds=args.max_seconds,
                      instance=args.instance, api_settings=api)
    print(f"{args.api} normalizer: {stats}")
    return 0


def _rebuild(args: argparse.Namespace) -> int:
    import redis

    from apisync.cli import kafka_config
    from apisync.ledger import rebuild_ledger

    count = rebuild_ledger(args.api, kafka_config(args), redis.Redis.from_url(redis_url()))
    print(f"{args.api} ledger rebuilt from {args.api}.records: {count} record states applied")
    return 0


def add_normalize(sub: argparse._SubParsersAction) -> None:
    """`normalize <api> [--max-seconds N]` and `ledger rebuild <api>`."""
    from apisync.cli import common_options

    apis = ("stripe", "github", "salesforce")
    run = sub.add_parser("normalize", parents=[common_options()], help="turn observations into records and events")
    run.add_argument("api", choices=apis)
    run.add_argument("--max-seconds", type=float, default=None, help="stop after this long (default: run forever)")
    run.add_argument("--instance", default="0",
                     help="this worker's name in the normalizer group (one per process when running several)")
    run.set_defaults(func=_normalize)
    ledger = sub.add_parser("ledger", help="the Redis version ledger").add_subparsers(dest="action", required=True)
    rebuild = ledger.add_parser("rebuild", parents=[common_options()],
                                help="rebuild it from the compacted records topic (stop the normalizer first)")
    rebuild.add_argument("api", choices=apis)
    rebuild.set_defaults(func=_rebuild)
