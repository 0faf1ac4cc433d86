"""`python -m apisync topics ensure|check` and `cursor show|reset`."""

from __future__ import annotations

import argparse
import sys
from typing import TextIO

from apisync.cli.common import common_options, kafka_config, timeout
from apisync.registry import APIS, COLLECTIONS


def declared() -> list:
    """Every declared topic, including `<api>.<collection>.<rule event>` for the declared rules."""
    from apisync.kafka.topics import declared_topics

    return declared_topics()


def _topics_ensure(args: argparse.Namespace, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    from apisync.kafka.admin import admin_client, ensure

    report = ensure(admin_client(kafka_config(args)), declared(), timeout(args))
    print("\n".join(report.describe()), file=out)
    return 1 if report.unrepaired else 0


def _topics_check(args: argparse.Namespace, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    from apisync.kafka.admin import admin_client, check

    drifts = check(admin_client(kafka_config(args)), declared(), timeout(args))
    lines = [line for drift in drifts for line in drift.describe()]
    print("\n".join(lines) if lines else "all topics match their declarations", file=out)
    return 1 if drifts else 0


def _cursor_show(args: argparse.Namespace, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    import orjson

    from apisync.checkpoints import CheckpointStore

    checkpoints = CheckpointStore(kafka_config(args), timeout=timeout(args)).load_all(args.prefix or "")
    for key, value in checkpoints.items():
        print(f"{key}\t{orjson.dumps(value).decode()}", file=out)
    if not checkpoints:
        print(f"no checkpoints{' under ' + args.prefix if args.prefix else ''}", file=out)
    return 0


def _cursor_reset(args: argparse.Namespace, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    from apisync.checkpoints import CheckpointStore

    CheckpointStore(kafka_config(args), timeout=timeout(args)).reset(args.key)
    print(f"reset {args.key}: the next run starts from the beginning", file=out)
    return 0


def add_topics(sub: argparse._SubParsersAction) -> None:
    """`topics ensure|check`."""
    topics = sub.add_parser("topics", help="create topics / detect config drift"
                            ).add_subparsers(dest="action", required=True)
    common = [common_options()]
    topics.add_parser("ensure", parents=common, help="create missing topics, repair drifted configs"
                      ).set_defaults(func=_topics_ensure)
    topics.add_parser("check", parents=common, help="report drift; exit 1 if any").set_defaults(func=_topics_check)


def add_cursor(sub: argparse._SubParsersAction) -> None:
    """`cursor show [prefix]|reset <key>`."""
    cursor = sub.add_parser("cursor", help="inspect or reset sync checkpoints"
                            ).add_subparsers(dest="action", required=True)
    common = [common_options()]
    # the help's example key: the first registered API's first collection
    api, collection = next(((name, COLLECTIONS[name][0]) for name in APIS), ("<api>", "<collection>"))
    show = cursor.add_parser("show", parents=common, help="print checkpoints, optionally under a key prefix")
    show.add_argument("prefix", nargs="?", help=f"e.g. {api}. or {api}.backfill.")
    show.set_defaults(func=_cursor_show)
    reset = cursor.add_parser("reset", parents=common, help="forget one checkpoint (stop its job first)")
    reset.add_argument("key", help=f"<api>.<job>.<collection>, e.g. {api}.backfill.{collection}")
    reset.set_defaults(func=_cursor_reset)
