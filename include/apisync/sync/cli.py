"""`python -m apisync sync backfill|incremental <api> [collections...]`: the operators' code, from a shell.

The API account comes from the environment (never from arguments, which `ps` shows to everyone):
APISYNC_<API>_URL, APISYNC_<API>_TOKEN, optional APISYNC_<API>_RATE (requests/s) and, for GitHub,
APISYNC_GITHUB_REPO (owner/name, or several separated by commas). Redis: APISYNC_REDIS_URL.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Mapping

from apisync.settings import ApiSettings, SyncSettings


def api_settings_from_env(api: str, env: Mapping[str, str] = os.environ) -> ApiSettings:
    """ApiSettings from APISYNC_<API>_* variables; a missing one is a one-line error."""
    prefix = f"APISYNC_{api.upper()}_"
    missing = [name for name in ("URL", "TOKEN") if not env.get(prefix + name)]
    if missing:
        raise SystemExit(f"error: set {', '.join(prefix + m for m in missing)} to sync {api}")
    rate = env.get(prefix + "RATE")
    repos = [r.strip() for r in env.get(prefix + "REPO", "").split(",") if r.strip()]
    extra: dict = {"repos": repos} if repos else {}
    if env.get(prefix + "API_VERSION"):
        extra["api_version"] = env[prefix + "API_VERSION"]  # Stripe-Version to pin
    return ApiSettings(api, env[prefix + "URL"], env[prefix + "TOKEN"], extra, float(rate) if rate else None)


def _sync(args: argparse.Namespace) -> int:
    from apisync.cli import kafka_config
    from apisync.sources import build_source
    from apisync.sync import BackfillNotDone, run_backfill, run_incremental, run_reconcile

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    settings = SyncSettings(kafka_config(args), os.environ.get("APISYNC_REDIS_URL", "redis://127.0.0.1:6379/0"),
                            api_settings_from_env(args.api))
    collections = args.collections or list(build_source(settings.api).collections)
    for collection in collections:
        report = lambda p, c=collection: print(f"{args.api} {c}: {p.line()}", flush=True)  # noqa: E731
        try:
            if args.action == "backfill":
                summary = run_backfill(settings, collection, restart=args.restart, start_date=args.start_date,
                                       on_progress=report)
            elif args.action == "reconcile":
                summary = run_reconcile(settings, collection, dry_run=not args.apply,
                                        max_delete_share=args.max_delete_share, on_progress=report)
            else:
                summary = run_incremental(settings, collection, on_progress=report)
        except BackfillNotDone as exc:
            print(f"skipped: {exc}", file=sys.stderr)
            continue
        print(f"{args.api} {collection} {args.action}: {summary.records} records, {summary.deletes} deletes, "
              f"{summary.pages} pages {summary.note}".rstrip(), flush=True)
    return 0


def add_sync(sub: argparse._SubParsersAction) -> None:
    """`sync backfill|incremental|reconcile <api> [collections]`."""
    from apisync.cli import common_options

    sync = sub.add_parser("sync", help="run a backfill or an incremental sync").add_subparsers(
        dest="action", required=True)
    for action in ("backfill", "incremental", "reconcile"):
        parser = sync.add_parser(action, parents=[common_options()])
        parser.add_argument("api", choices=("stripe", "github", "salesforce"))
        parser.add_argument("collections", nargs="*", help="default: every collection of the api")
        if action == "backfill":
            parser.add_argument("--restart", action="store_true", help="start over instead of resuming")
            parser.add_argument("--start-date", help="only objects created/changed since (YYYY-MM-DD)")
        if action == "reconcile":
            parser.add_argument("--apply", action="store_true", help="emit the deletes (default: a dry run)")
            parser.add_argument("--max-delete-share", type=float, default=0.05,
                                help="stop when more than this share would be deleted (default 0.05)")
        parser.set_defaults(func=_sync)
