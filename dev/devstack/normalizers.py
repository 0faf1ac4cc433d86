"""`make demo`'s normalizers: one `python -m apisync normalize <api> --follow` process per API.

Each runs in its own process group (devstack.process) and is stopped with SIGTERM, which it answers by
settling its batch and closing its consumer. Tokens reach it through the environment, never argv.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from devstack.airflow import SIMULATOR_TOKENS
from devstack.paths import PROJECT_ROOT
from devstack.process import ManagedProcess, wait_until

READY_LINE = "following"  # what the follower logs once it has opened its consumer and producer


def follow_env(api: str, kafka_bootstrap: str, redis_url: str, simulator_url: str) -> dict[str, str]:
    """What the CLI reads: Kafka, Redis and the simulated API account (for re-fetches)."""
    prefix = f"APISYNC_{api.upper()}_"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(PROJECT_ROOT / "include"), str(PROJECT_ROOT / "plugins")]),
           "APISYNC_KAFKA_BOOTSTRAP": kafka_bootstrap, "APISYNC_REDIS_URL": redis_url,
           prefix + "URL": simulator_url, prefix + "TOKEN": SIMULATOR_TOKENS[api]}
    if api == "github":
        env[prefix + "REPO"] = "apisync/demo,apisync/tools"  # the repositories the simulator serves
    return env


class FollowNormalizers:
    """The follow processes of several APIs, logging to `<state>/normalizers/<api>.log`."""

    def __init__(self, state: Path, apis: list[str], kafka_bootstrap: str, redis_url: str, simulator_url: str) -> None:
        self.logs = state / "normalizers"
        self.apis, self._services = apis, (kafka_bootstrap, redis_url, simulator_url)
        self.processes: dict[str, ManagedProcess] = {}

    def start(self, timeout: float = 90.0) -> FollowNormalizers:
        offsets = {}
        for api in self.apis:
            log = self.logs / f"{api}.log"
            offsets[api] = log.stat().st_size if log.exists() else 0  # the log is appended across demo runs
            # not the Airflow task's instance "0": a manual <api>_normalize run then only shares the work
            argv = [sys.executable, "-m", "apisync", "normalize", api, "--follow", "--instance", "follow"]
            self.processes[api] = ManagedProcess(f"normalize-{api}", argv, log, env=follow_env(api, *self._services),
                                                 cwd=PROJECT_ROOT)
        for api, process in self.processes.items():
            wait_until(lambda p=process, at=offsets[api]: READY_LINE in _read_from(p.log_path, at), timeout,
                       f"the {api} normalizer", process)
        return self

    def stop(self) -> None:
        """SIGTERM each (a graceful stop), SIGKILL what is left after the grace period."""
        for process in self.processes.values():
            process.stop(grace=30)
        self.processes = {}


def _read_from(path: Path, offset: int) -> str:
    with open(path, "rb") as log:
        log.seek(offset)
        return log.read().decode("utf-8", "replace")
