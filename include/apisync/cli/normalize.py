"""`python -m apisync normalize <api>` and `python -m apisync ledger rebuild <api>`.

Redis comes from APISYNC_REDIS_URL (default redis://127.0.0.1:6379/0).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from apisync.cli.common import (
    API_CHOICES,
    api_settings_from_env,
    common_options,
    has_api_account,
    kafka_config,
    redis_url,
)
from apisync.normalizer import DEFAULT_BATCH_SIZE


def _normalize(args: argparse.Namespace) -> int:
    from apisync.metrics import metrics_from_env
    from apisync.normalizer import normalize

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    # With the API's URL and token the normalizer re-fetches thin webhooks and settles equal-version ties.
    api = api_settings_from_env(args.api) if has_api_account(args.api) else None
    if args.follow:
        return _follow(args, api, metrics_from_env())
    stats = normalize(args.api, kafka_config(args), redis_url(), max_seconds=args.max_seconds,
                      instance=args.instance, api_settings=api, batch_size=args.batch_size,
                      until_idle=args.until_idle, metrics=metrics_from_env())
    print(f"{args.api} normalizer: {stats}")
    return 0


def _follow(args: argparse.Namespace, api, metrics) -> int:
    import threading

    from apisync.follow import follow, stop_on_signals

    stop = threading.Event()
    stop_on_signals(stop)
    stats = follow(args.api, kafka_config(args), redis_url(), stop, instance=args.instance, api_settings=api,
                   batch_size=args.batch_size, log_every_s=args.log_every, metrics=metrics,
                   heartbeat=Path(args.heartbeat) if args.heartbeat else None)
    print(f"{args.api} normalizer stopped: {stats}", flush=True)
    return 0


def _rebuild(args: argparse.Namespace) -> int:
    import redis

    from apisync.ledger import rebuild_ledger

    count = rebuild_ledger(args.api, kafka_config(args), redis.Redis.from_url(redis_url()))
    print(f"{args.api} ledger rebuilt from {args.api}.records: {count} record states applied")
    return 0


def add_normalize(sub: argparse._SubParsersAction) -> None:
    """`normalize <api> [--max-seconds N | --until-idle | --follow]` and `ledger rebuild <api>`."""
    apis = API_CHOICES
    run = sub.add_parser("normalize", parents=[common_options()], help="turn observations into records and events")
    run.add_argument("api", choices=apis)
    mode = run.add_mutually_exclusive_group()
    mode.add_argument("--max-seconds", type=float, default=None, help="stop after this long (default: run forever)")
    mode.add_argument("--until-idle", action="store_true",
                      help="stop once every owned partition is read to its end")
    mode.add_argument("--follow", action="store_true",
                      help="run as a service until SIGTERM/SIGINT (graceful), logging progress")
    run.add_argument("--heartbeat", metavar="FILE", default=None,
                     help="with --follow: touch FILE once per --log-every interval (for a healthcheck)")
    run.add_argument("--log-every", type=float, default=30.0, metavar="SECONDS",
                     help="with --follow: seconds between progress lines (default 30)")
    run.add_argument("--instance", default="0",
                     help="this worker's name in the normalizer group (one per process when running several)")
    run.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE,
                     help=f"most observations fenced and committed in one transaction (default {DEFAULT_BATCH_SIZE})")
    run.set_defaults(func=_normalize)
    ledger = sub.add_parser("ledger", help="the Redis version ledger").add_subparsers(dest="action", required=True)
    rebuild = ledger.add_parser("rebuild", parents=[common_options()],
                                help="rebuild it from the compacted records topic (stop the normalizer first)")
    rebuild.add_argument("api", choices=apis)
    rebuild.set_defaults(func=_rebuild)
