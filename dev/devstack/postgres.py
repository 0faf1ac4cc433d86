"""PostgreSQL from the OS packages (Debian's `postgresql`), one throwaway cluster on a loopback port.

Airflow's metadata database for the scale-out stack (CeleryExecutor). PostgreSQL refuses to run as
root, so when devstack is root the cluster belongs to the package's `postgres` user and lives in a
fresh folder under the system temp dir (the caller's state folder may sit below a root-only one).
Only loopback TCP with a generated password; the Unix socket stays in the cluster's own folder.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

from devstack.errors import StackError
from devstack.process import ManagedProcess, free_port, wait_until

_PACKAGE = "postgresql"
_LIB = Path("/usr/lib/postgresql")
_SERVICE_USER = "postgres"  # created by Debian's postgresql-common


def bin_dir() -> Path | None:
    """The newest installed /usr/lib/postgresql/<major>/bin holding initdb, or None."""
    versions = sorted((p for p in _LIB.glob("*/bin") if (p / "initdb").exists()),
                      key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0)
    return versions[-1] if versions else None


def ensure_installed() -> Path:
    """Return PostgreSQL's bin folder, installing Debian's package when running as root."""
    found = bin_dir()
    if found:
        return found
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise StackError("PostgreSQL is missing: install it with `sudo apt-get install postgresql`")
    for argv in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", _PACKAGE]):
        result = subprocess.run(argv, capture_output=True, text=True,
                                env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
        if result.returncode != 0:
            raise StackError(f"installing {_PACKAGE} failed ({' '.join(argv)}): "
                             f"{(result.stderr or result.stdout).strip()[-200:]}")
    found = bin_dir()
    if found is None:
        raise StackError(f"{_PACKAGE} installed, but no initdb under {_LIB}")
    # The package starts a system cluster on 5432 through its service scripts; ours does not need it.
    return found


class PostgresServer:
    """One PostgreSQL cluster (initdb + postgres in the foreground) with one database for Airflow."""

    def __init__(self, state: Path, port: int | None = None, database: str = "airflow") -> None:
        self.state = state  # logs; the data folder is `self.data` (see module docstring)
        self.port = port or free_port()
        self.database = database
        self.user = _SERVICE_USER if os.geteuid() == 0 else None
        self.role = self.user or pwd.getpwuid(os.geteuid()).pw_name
        self.password = secrets.token_urlsafe(18)
        self.data: Path | None = None
        self.process: ManagedProcess | None = None

    @property
    def sqlalchemy_url(self) -> str:
        """The metadata DB URL for Airflow (it holds the password: never print it)."""
        return f"postgresql+psycopg2://{self.role}:{self.password}@127.0.0.1:{self.port}/{self.database}"

    def start(self, timeout: float = 60.0) -> PostgresServer:
        binaries = ensure_installed()
        self.state.mkdir(parents=True, exist_ok=True)
        self.data = Path(tempfile.mkdtemp(prefix="apisync-pg-"))
        if self.user:
            shutil.chown(self.data, self.user, self.user)
        self._initdb(binaries)
        argv = [str(binaries / "postgres"), "-D", str(self.data / "cluster"), "-p", str(self.port),
                "-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={self.data}",
                "-c", "max_connections=200", "-c", "fsync=off", "-c", "synchronous_commit=off",
                "-c", "full_page_writes=off", "-c", "shared_buffers=64MB"]
        self.process = ManagedProcess("postgres", argv, self.state / "postgres.log", user=self.user)
        wait_until(self._ready, timeout, f"PostgreSQL (port {self.port})", self.process)
        self._create_database()
        return self

    def stop(self) -> None:
        if self.process is not None:
            # SIGINT is PostgreSQL's "fast" shutdown: open sessions are ended, not waited for (SIGTERM,
            # "smart", waits for every client to disconnect).
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.process.pid, signal.SIGINT)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=20)
            self.process.stop(grace=5)
            self.process = None
        if self.data is not None:
            shutil.rmtree(self.data, ignore_errors=True)
            self.data = None

    def _initdb(self, binaries: Path) -> None:
        pwfile = self.data / "pwfile"
        pwfile.write_text(self.password + "\n")
        if self.user:
            shutil.chown(pwfile, self.user, self.user)
        pwfile.chmod(0o600)
        argv = [str(binaries / "initdb"), "-D", str(self.data / "cluster"), "-U", self.role, f"--pwfile={pwfile}",
                "--auth-host=scram-sha-256", "--auth-local=peer", "-E", "UTF8", "--no-sync"]
        result = subprocess.run(argv, capture_output=True, text=True, user=self.user, group=self.user)
        pwfile.unlink()
        if result.returncode != 0:
            raise StackError(f"initdb failed: {(result.stderr or result.stdout).strip()[-300:]}")

    def _connect(self, database: str = "postgres"):
        import psycopg2

        return psycopg2.connect(host="127.0.0.1", port=self.port, user=self.role, password=self.password,
                                dbname=database, connect_timeout=2)

    def _ready(self) -> bool:
        self._connect().close()
        return True

    def _create_database(self) -> None:
        conn = self._connect()
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute(f'CREATE DATABASE "{self.database}"')
        finally:
            conn.close()
