"""Start and stop the local service processes, leaving nothing behind."""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

from devstack.errors import StackError

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    # Runs in the child before exec: if devstack itself is killed (even with SIGKILL), the kernel
    # sends the child SIGTERM, so a crashed `make demo` or test run cannot leak a broker.
    try:
        ctypes.CDLL("libc.so.6").prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:
        pass


def free_port() -> int:
    """Ask the kernel for a free loopback port."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_open(port: int) -> bool:
    """True when something accepts TCP connections on the loopback port."""
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def ensure_port_free(port: int, what: str) -> None:
    """Fail with one line when a fixed port is already taken."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            raise StackError(f"port {port} for {what} is already in use: "
                             "stop what holds it or pick another port") from None


def wait_until(check, timeout: float, what: str, process: ManagedProcess | None = None) -> None:
    """Poll `check()` until it returns truthy; fail with the tail of the log if the process died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise StackError(f"{what} exited with code {process.poll()} while starting; see {process.log_path}")
        try:
            if check():
                return
        except Exception:  # noqa: BLE001 - any failure here just means "not ready yet"
            pass
        time.sleep(0.3)
    where = process.log_path if process else "its log"
    raise StackError(f"{what} did not become ready within {timeout:.0f}s; see {where}")


_PR_SET_CHILD_SUBREAPER = 36


def become_subreaper() -> None:
    """Adopt orphaned descendants instead of init, so `kill_descendants()` can still find them.

    Airflow's task supervisors start their own sessions, and one started while the stack shuts down
    outlives its process group; as a subreaper we inherit it and end it too.
    """
    try:
        ctypes.CDLL("libc.so.6").prctl(_PR_SET_CHILD_SUBREAPER, 1)
    except OSError:
        pass


def kill_descendants() -> None:
    """SIGKILL and reap every process below this one (the last step of a shutdown)."""
    import psutil

    me = psutil.Process()
    for _ in range(3):  # a dying parent can still fork; look again
        children = me.children(recursive=True)
        if not children:
            return
        for child in children:
            try:
                child.kill()
            except psutil.NoSuchProcess:
                pass
        psutil.wait_procs(children, timeout=5)


class ManagedProcess:
    """A child in its own process group, logging to a file, stopped group-wide."""

    def __init__(self, name: str, argv: list[str], log_path: Path, env: dict[str, str] | None = None,
                 cwd: Path | None = None, user: str | None = None) -> None:
        self.name = name
        self.log_path = log_path
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "ab") as log:
            self._popen = subprocess.Popen(
                argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env=env, cwd=cwd, start_new_session=True, preexec_fn=_die_with_parent,
                user=user, group=user,  # PostgreSQL refuses to run as root: devstack drops to its own user
            )

    @property
    def pid(self) -> int:
        return self._popen.pid

    def poll(self) -> int | None:
        return self._popen.poll()

    def wait(self, timeout: float | None = None) -> int:
        """Wait for the process itself to exit (raises subprocess.TimeoutExpired)."""
        return self._popen.wait(timeout=timeout)

    def stop(self, grace: float = 30.0) -> None:
        """SIGTERM the whole process group, then SIGKILL whatever is still there after `grace`,
        including descendants that had left the group."""
        descendants = self._descendants()
        self._signal_group(signal.SIGTERM)
        try:
            self._popen.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            pass
        self._signal_group(signal.SIGKILL)
        self._popen.wait()
        _kill(descendants)

    def kill(self) -> None:
        """SIGKILL the whole group at once (crash tests)."""
        descendants = self._descendants()
        self._signal_group(signal.SIGKILL)
        self._popen.wait()
        _kill(descendants)

    def _descendants(self) -> list:
        import psutil

        try:
            return psutil.Process(self._popen.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []

    def _signal_group(self, sig: int) -> None:
        try:
            os.killpg(self._popen.pid, sig)
        except ProcessLookupError:
            pass


def stop_on_sigterm_or_orphaning() -> None:
    """Turn SIGTERM, or the death of our parent (make), into KeyboardInterrupt so cleanup runs."""
    # SIGTERM (from make, a supervisor, kill) unwinds like Ctrl-C, so every `finally`/callback runs.
    def interrupt(*_):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second SIGTERM must not cut the cleanup short
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)
    # Also SIGINT: a shell without job control starts background jobs with SIGINT ignored, and
    # Python then installs no handler of its own; Ctrl-C / `kill -INT` must still stop the stack.
    signal.signal(signal.SIGINT, interrupt)
    parent = os.getppid()

    def watch_parent() -> None:
        # `make` killed with SIGKILL cannot forward anything: notice the orphaning and stop ourselves.
        while os.getppid() == parent:
            time.sleep(1)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch_parent, daemon=True).start()


def _kill(processes) -> None:
    import psutil

    for proc in processes:
        try:
            proc.kill()
        except psutil.NoSuchProcess:
            pass
