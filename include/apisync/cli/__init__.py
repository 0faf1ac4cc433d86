"""`apisync ...` (or `python -m apisync ...`): a dispatcher to small command functions.

Each command group (`kafka`: topics and cursors; `sync`: backfill, incremental, reconcile, audit;
`normalize`: the normalizer and the ledger) adds its sub-parsers through COMMAND_GROUPS and sets
`func(args) -> int` (the exit code). They share `common` and never import this module, so there is
no import circle.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

import apisync.apis  # noqa: F401 - registers every API: the commands' choices and sources come from the registry
from apisync._version import __version__
from apisync.cli.airflow import add_airflow
from apisync.cli.common import DEFAULT_BOOTSTRAP, common_options, kafka_config
from apisync.cli.kafka import add_cursor, add_topics
from apisync.cli.normalize import add_normalize
from apisync.cli.sync import add_audit, add_sync
from apisync.errors import ApisyncError

COMMAND_GROUPS: list[Callable[[argparse._SubParsersAction], None]] = [add_topics, add_cursor, add_sync, add_audit,
                                                                        add_normalize, add_airflow]


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser."""
    parser = argparse.ArgumentParser(prog="apisync", description="apisync operator commands",
                                     parents=[common_options()])
    parser.add_argument("--version", action="version", version=f"apisync {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for add_group in COMMAND_GROUPS:
        add_group(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse argv and run the command; known errors become one line on stderr and exit code 2."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ApisyncError as exc:
        # apisync's errors already read as one sentence; a traceback would only bury it.
        print(f"error: {exc}", file=sys.stderr)
        return 2


__all__ = ["DEFAULT_BOOTSTRAP", "build_parser", "kafka_config", "main"]
