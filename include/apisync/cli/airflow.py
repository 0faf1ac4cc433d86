"""`apisync airflow setup`: pools, topics, Redis and connection tests for an Airflow installation.

The work is apisync_airflow's (it needs Airflow); the core only dispatches to it, so the command says
what to install when the Airflow integration is missing.
"""

from __future__ import annotations

import argparse
import importlib

from apisync.cli.common import timeout

INSTALL_HINT = "pip install 'apisync[airflow]'"


def _setup(args: argparse.Namespace) -> int:
    try:
        setup = importlib.import_module("apisync_airflow.airflow_setup")
    except ImportError as exc:
        print(f"error: `apisync airflow setup` needs the Airflow integration ({INSTALL_HINT}): {exc}")
        return 2
    apis = [api.strip() for api in (args.apis or "").split(",") if api.strip()]
    return setup.run_setup(apis, timeout=timeout(args))


def add_airflow(sub: argparse._SubParsersAction) -> None:
    """`airflow setup [--apis stripe,github]`."""
    group = sub.add_parser("airflow", help="prepare an Airflow installation for apisync's DAGs"
                           ).add_subparsers(dest="action", required=True)
    setup = group.add_parser(
        "setup", help="create the pools and the Kafka topics, reach Redis, test each API's connection "
                      "(one line each; exit 1 if any failed)")
    setup.add_argument("--apis", metavar="API[,API...]",
                       help="APIs whose <api>_default connection must exist (others are tested when defined)")
    setup.add_argument("--timeout", type=float, default=argparse.SUPPRESS,
                       help="seconds to wait for Kafka per call (default 30)")
    setup.set_defaults(func=_setup)
