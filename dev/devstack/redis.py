"""Redis from the OS packages (redis-server), on a free loopback port."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from devstack.errors import StackError
from devstack.process import ManagedProcess, free_port, wait_until


def ensure_installed() -> str:
    """Return the redis-server path, installing Debian's package when running as root."""
    path = shutil.which("redis-server")
    if path:
        return path
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise StackError("redis-server is missing: install it with `sudo apt-get install redis-server`")
    for argv in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "redis-server"]):
        result = subprocess.run(argv, capture_output=True, text=True,
                                env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
        if result.returncode != 0:
            raise StackError(f"installing redis-server failed ({' '.join(argv)}): "
                             f"{(result.stderr or result.stdout).strip()[-200:]}")
    return shutil.which("redis-server") or "/usr/bin/redis-server"


class RedisServer:
    """One redis-server process; `persistent` keeps an append-only file in its folder (the demo)."""

    def __init__(self, state: Path, port: int | None = None, persistent: bool = False) -> None:
        self.state = state
        self.port = port or free_port()
        self.persistent = persistent
        self.process: ManagedProcess | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 30.0) -> RedisServer:
        binary = ensure_installed()
        self.state.mkdir(parents=True, exist_ok=True)
        argv = [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.state),
                "--save", "", "--appendonly", "yes" if self.persistent else "no", "--protected-mode", "yes"]
        self.process = ManagedProcess("redis", argv, self.state / "redis.log")
        wait_until(self._ping, timeout, f"Redis (port {self.port})", self.process)
        return self

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop(grace=10)
            self.process = None

    def _ping(self) -> bool:
        import redis

        return bool(redis.Redis.from_url(self.url, socket_timeout=1).ping())
