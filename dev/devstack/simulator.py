"""The API simulator (dev/api_simulator) as a local HTTP server process."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import httpx

from devstack.paths import DEV_ROOT
from devstack.process import ManagedProcess, free_port, wait_until


class SimulatorServer:
    """`python -m api_simulator` on a free port; `extra_args` are passed through."""

    def __init__(self, state: Path, port: int | None = None, extra_args: list[str] | None = None) -> None:
        self.state = state
        self.port = port or free_port()
        self.extra_args = extra_args or []
        self.process: ManagedProcess | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> SimulatorServer:
        env = {**os.environ, "PYTHONPATH": _pythonpath()}
        argv = [sys.executable, "-m", "api_simulator", "--host", "127.0.0.1", "--port", str(self.port),
                *self.extra_args]
        self.process = ManagedProcess("api_simulator", argv, self.state / "api_simulator.log", env=env)
        wait_until(lambda: httpx.get(f"{self.url}/_admin/config", timeout=2).status_code == 200,
                   timeout, f"API simulator (port {self.port})", self.process)
        return self

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop(grace=10)
            self.process = None


def _pythonpath() -> str:
    parts = [str(DEV_ROOT), os.environ.get("PYTHONPATH", "")]
    return os.pathsep.join(p for p in parts if p)
