"""`python -m apisync ...`: a dispatcher to small command functions.

Each command group registers itself in COMMAND_GROUPS with a function that adds its sub-parsers and
sets `func(args) -> int` (the exit code); add `sync`/`normalize` the same way.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from typing import TextIO

from apisync.checkpoints import CheckpointError
from apisync.http import ApiError
from apisync.kafka.admin import TopicAdminError
from apisync.kafka.producer import DeliveryError, ProducerConfigError, TransactionError
from apisync.kafka.reader import TopicReadError
from apisync.normalizer_cli import add_normalize
from apisync.sync import TooManyDeletes
from apisync.sync.cli import add_audit, add_sync

DEFAULT_BOOTSTRAP = "127.0.0.1:9092"
DEFAULT_TIMEOUT_S = 30.0


def common_options() -> argparse.ArgumentParser:
    """Options every command accepts, before or after the command words (pass as parents=[...])."""
    common = argparse.ArgumentParser(add_help=False)
    # SUPPRESS: a sub-command without --bootstrap must not overwrite one given before it.
    common.add_argument("--bootstrap", default=argparse.SUPPRESS,
                        help=f"Kafka bootstrap servers (env APISYNC_KAFKA_BOOTSTRAP, default {DEFAULT_BOOTSTRAP})")
    common.add_argument("--timeout", type=float, default=argparse.SUPPRESS,
                        help=f"seconds to wait for Kafka per call (default {DEFAULT_TIMEOUT_S:.0f})")
    return common


def timeout(args: argparse.Namespace) -> float:
    """Per-call Kafka timeout from --timeout."""
    return getattr(args, "timeout", None) or DEFAULT_TIMEOUT_S


def kafka_config(args: argparse.Namespace) -> dict:
    """Client config from --bootstrap, else APISYNC_KAFKA_BOOTSTRAP, else the local default."""
    bootstrap = getattr(args, "bootstrap", None) or os.environ.get("APISYNC_KAFKA_BOOTSTRAP") or DEFAULT_BOOTSTRAP
    return {"bootstrap.servers": bootstrap}


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
    show = cursor.add_parser("show", parents=common, help="print checkpoints, optionally under a key prefix")
    show.add_argument("prefix", nargs="?", help="e.g. stripe. or stripe.backfill.")
    show.set_defaults(func=_cursor_show)
    reset = cursor.add_parser("reset", parents=common, help="forget one checkpoint (stop its job first)")
    reset.add_argument("key", help="<api>.<job>.<collection>, e.g. stripe.backfill.customer")
    reset.set_defaults(func=_cursor_reset)


OPERATOR_ERRORS = (TopicAdminError, CheckpointError, TopicReadError, DeliveryError, ProducerConfigError,
                   TransactionError, ApiError, TooManyDeletes)
COMMAND_GROUPS: list[Callable[[argparse._SubParsersAction], None]] = [add_topics, add_cursor, add_sync, add_audit,
                                                                        add_normalize]


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser."""
    parser = argparse.ArgumentParser(prog="python -m apisync", description="apisync operator commands",
                                     parents=[common_options()])
    sub = parser.add_subparsers(dest="command", required=True)
    for add_group in COMMAND_GROUPS:
        add_group(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse argv and run the command; known errors become one line on stderr and exit code 2."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except OPERATOR_ERRORS as exc:
        # Known failures already read as one sentence; a traceback would only bury it.
        print(f"error: {exc}", file=sys.stderr)
        return 2
