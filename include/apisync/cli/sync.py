"""`python -m apisync sync backfill|incremental|reconcile <api> [collections...]` and `python -m apisync audit
<api> [collections...]`: the operators' code, from a shell.

The API account comes from the environment (`apisync.cli.common.api_settings_from_env`).
"""

from __future__ import annotations

import argparse
import logging
import sys

from apisync.cli.common import API_CHOICES, api_settings_from_env, common_options, kafka_config, redis_url
from apisync.settings import SyncSettings


def _settings(args: argparse.Namespace) -> SyncSettings:
    """Logging for a shell, and the settings from the environment and --bootstrap."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    return SyncSettings(kafka_config(args), redis_url(), api_settings_from_env(args.api))


def _sync(args: argparse.Namespace) -> int:
    from apisync.metrics import metrics_from_env
    from apisync.registry import build_source
    from apisync.sync import BackfillNotDone, run_backfill, run_incremental, run_reconcile

    settings, metrics = _settings(args), metrics_from_env()
    collections = args.collections or list(build_source(settings.api).collections)
    for collection in collections:
        report = lambda p, c=collection: print(f"{args.api} {c}: {p.line()}", flush=True)  # noqa: E731
        try:
            if args.action == "backfill":
                summary = run_backfill(settings, collection, restart=args.restart, start_date=args.start_date,
                                       on_progress=report, metrics=metrics)
            elif args.action == "reconcile":
                summary = run_reconcile(settings, collection, dry_run=not args.apply,
                                        max_delete_share=args.max_delete_share, on_progress=report)
            else:
                summary = run_incremental(settings, collection, on_progress=report, metrics=metrics)
        except BackfillNotDone as exc:
            print(f"skipped: {exc}", file=sys.stderr)
            continue
        print(f"{args.api} {collection} {args.action}: {summary.records} records, {summary.deletes} deletes, "
              f"{summary.pages} pages {summary.note}".rstrip(), flush=True)
    return 0


def add_sync(sub: argparse._SubParsersAction) -> None:
    """`sync backfill|incremental|reconcile <api> [collections]`."""
    sync = sub.add_parser("sync", help="run a backfill or an incremental sync").add_subparsers(
        dest="action", required=True)
    for action in ("backfill", "incremental", "reconcile"):
        parser = sync.add_parser(action, parents=[common_options()])
        parser.add_argument("api", choices=API_CHOICES)
        parser.add_argument("collections", nargs="*", help="default: every collection of the api")
        if action == "backfill":
            parser.add_argument("--restart", action="store_true", help="start over instead of resuming")
            parser.add_argument("--start-date", help="only objects created/changed since (YYYY-MM-DD)")
        if action == "reconcile":
            parser.add_argument("--apply", action="store_true", help="emit the deletes (default: a dry run)")
            parser.add_argument("--max-delete-share", type=float, default=0.05,
                                help="stop when more than this share would be deleted (default 0.05)")
        parser.set_defaults(func=_sync)


def _audit(args: argparse.Namespace) -> int:
    """Exit 1 when drift is left behind: found without --repair, or zombies the breaker kept."""
    from apisync.registry import build_source
    from apisync.sync.audit import AuditOptions, run_audit

    settings = _settings(args)
    options = AuditOptions(sample=args.sample, repair=args.repair, budget_share=args.budget_share,
                           max_delete_share=args.max_delete_share)
    left = False
    for collection in args.collections or list(build_source(settings.api).collections):
        summary = run_audit(settings, collection, options)
        print("\n".join(summary.lines()), flush=True)
        left = left or (summary.drift > 0 and not args.repair) or summary.breaker_tripped
    return 1 if left else 0


def add_audit(sub: argparse._SubParsersAction) -> None:
    """`audit <api> [collections] [--sample N | --full] [--repair]`."""
    parser = sub.add_parser("audit", parents=[common_options()],
                            help="compare the records in Kafka with the API (missing, stale, zombie)")
    parser.add_argument("api", choices=API_CHOICES)
    parser.add_argument("collections", nargs="*", help="default: every collection of the api")
    how = parser.add_mutually_exclusive_group()
    how.add_argument("--sample", type=int, metavar="N", help="fetch N random known records one by one")
    how.add_argument("--full", action="store_true", help="walk the API's whole listing (the default)")
    parser.add_argument("--repair", action="store_true",
                        help="send fresh observations (source audit) through the normalizer for every drift")
    parser.add_argument("--budget-share", type=float, default=0.1,
                        help="most of the account's request budget the audit may take (default 0.1)")
    parser.add_argument("--max-delete-share", type=float, default=0.05,
                        help="zombies are not deleted when more than this share is gone (default 0.05)")
    parser.set_defaults(func=_audit)
