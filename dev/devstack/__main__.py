"""python -m devstack prepare | up | demo — the local services behind `make test` and `make demo`."""

from __future__ import annotations

import argparse
import sys
import time
from contextlib import ExitStack

from devstack.errors import StackError
from devstack.kafka import KafkaCluster, resolve_libs
from devstack.paths import state_dir
from devstack.postgres import ensure_installed as ensure_postgres
from devstack.process import become_subreaper, kill_descendants, stop_on_sigterm_or_orphaning
from devstack.redis import RedisServer
from devstack.redis import ensure_installed as ensure_redis
from devstack.simulator import SimulatorServer


def prepare(_args) -> None:
    """Fetch the Kafka jars and make sure redis-server and PostgreSQL (make test-scale) exist, once."""
    print(f"Kafka jars: {resolve_libs()}")
    print(f"redis-server: {ensure_redis()}")
    print(f"PostgreSQL: {ensure_postgres()}")


def up(args) -> None:
    """Kafka (+Redis, +simulator) for development; prints the environment to export."""
    state = state_dir()
    with ExitStack() as stack:
        kafka = KafkaCluster(state / "kafka", size=args.kafka_nodes).start()
        stack.callback(kafka.stop)
        redis = RedisServer(state / "redis").start()
        stack.callback(redis.stop)
        print(f"export APISYNC_KAFKA_BOOTSTRAP={kafka.bootstrap}")
        print(f"export APISYNC_REDIS_URL={redis.url}")
        if args.simulator:
            simulator = SimulatorServer(state / "simulator").start()
            stack.callback(simulator.stop)
            print(f"export APISYNC_SIMULATOR_URL={simulator.url}")
        print("# services up; Ctrl-C stops them", flush=True)
        while True:
            time.sleep(1)


def demo(_args) -> None:
    from devstack.demo import run_demo

    run_demo()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devstack", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("prepare", help="fetch the Kafka jars, install redis-server and postgresql") \
        .set_defaults(run=prepare)
    up_parser = commands.add_parser("up", help="run Kafka and Redis until Ctrl-C")
    up_parser.add_argument("--kafka-nodes", type=int, default=1, choices=(1, 3))
    up_parser.add_argument("--simulator", action="store_true")
    up_parser.set_defaults(run=up)
    commands.add_parser("demo", help="the whole pipeline with Airflow, until Ctrl-C").set_defaults(run=demo)
    args = parser.parse_args(argv)
    stop_on_sigterm_or_orphaning()
    become_subreaper()
    try:
        args.run(args)
    except StackError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("stopped", file=sys.stderr)
    finally:
        kill_descendants()
    return 0


if __name__ == "__main__":
    sys.exit(main())
