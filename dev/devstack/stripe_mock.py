"""stripe-mock, Stripe's official OpenAPI mock (the Go module github.com/stripe/stripe-mock), on loopback.

Built once with `go install` into .cache/bin (from the Go module proxy). It answers every known
Stripe URL with fixture data and rejects, with HTTP 400, query parameters its bundled OpenAPI spec
does not allow; it keeps no state.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import httpx

from devstack.errors import StackError
from devstack.paths import cache_dir
from devstack.process import ManagedProcess, free_port, wait_until

STRIPE_MOCK_MODULE = "github.com/stripe/stripe-mock"
STRIPE_MOCK_VERSION = "v0.203.0"  # bundles Stripe's OpenAPI spec for API version 2026-08-26.dahlia
TEST_KEY = "sk_test_123"  # stripe-mock accepts any key shaped like a test-mode secret key
_INSTALL_TIMEOUT_S = 900


def binary_path() -> Path:
    return cache_dir() / "bin" / "stripe-mock"


def installed_version(binary: Path) -> str | None:
    """The version a built stripe-mock reports (`stripe-mock -version`), None if it cannot run."""
    try:
        result = subprocess.run([str(binary), "-version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    words = result.stdout.split()
    return words[1] if len(words) >= 2 and words[0] == "stripe-mock" else None


def ensure_installed() -> Path:
    """Return the stripe-mock binary, building the pinned version with `go install` on first use."""
    binary = binary_path()
    if binary.exists() and _same_version(installed_version(binary)):
        return binary
    go = shutil.which("go")
    if go is None:
        raise StackError(f"go is missing: install Go 1.22+ (https://go.dev/dl/) to build stripe-mock "
                         f"{STRIPE_MOCK_VERSION}, or put a stripe-mock {STRIPE_MOCK_VERSION} binary at {binary}")
    binary.parent.mkdir(parents=True, exist_ok=True)
    # Built from source the binary says "master"; stamp the pinned version so a later pin bump rebuilds.
    argv = [go, "install", f"-ldflags=-X main.version={STRIPE_MOCK_VERSION}",
            f"{STRIPE_MOCK_MODULE}@{STRIPE_MOCK_VERSION}"]
    try:
        result = subprocess.run(argv, capture_output=True, text=True, cwd=binary.parent, timeout=_INSTALL_TIMEOUT_S,
                                env={**os.environ, "GOBIN": str(binary.parent)})
    except subprocess.TimeoutExpired:
        raise StackError(f"`go install {STRIPE_MOCK_MODULE}@{STRIPE_MOCK_VERSION}` took longer than "
                         f"{_INSTALL_TIMEOUT_S}s (is the Go module proxy reachable?)") from None
    if result.returncode != 0:
        last = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["no output"]
        raise StackError(f"could not build stripe-mock with `go install {STRIPE_MOCK_MODULE}@{STRIPE_MOCK_VERSION}` "
                         f"(is the Go module proxy reachable?): {last[0][:200]}")
    found = installed_version(binary)
    if not _same_version(found):
        raise StackError(f"go install left no working stripe-mock {STRIPE_MOCK_VERSION} at {binary} "
                         f"(it reports {found!r}); check GOBIN/GOFLAGS in your environment")
    return binary


def _same_version(found: str | None) -> bool:
    # Release binaries (GoReleaser) say "0.203.0", our build says "v0.203.0".
    return found is not None and found.lstrip("v") == STRIPE_MOCK_VERSION.lstrip("v")


class StripeMock:
    """One stripe-mock process serving plain HTTP on a free loopback port.

    `strict_version_check` makes it reject (400) a `Stripe-Version` header that differs from the
    API version of its bundled spec; without it the header is ignored.
    """

    def __init__(self, state: Path, port: int | None = None, strict_version_check: bool = False) -> None:
        self.state = state
        self.port = port or free_port()
        self.strict_version_check = strict_version_check
        self.process: ManagedProcess | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> StripeMock:
        binary = ensure_installed()
        self.state.mkdir(parents=True, exist_ok=True)
        # stripe-mock has no "HTTPS off" flag, and -http-addr alone still opens HTTPS on [::]:12112
        # (every interface, and it exits when that port is taken): bind HTTPS to a kernel-chosen
        # loopback port as well. -http-port would bind every interface too, hence -http-addr.
        argv = [str(binary), "-http-addr", f"127.0.0.1:{self.port}", "-https-addr", "127.0.0.1:0"]
        if self.strict_version_check:
            argv.append("-strict-version-check")
        self.process = ManagedProcess("stripe-mock", argv, self.state / "stripe-mock.log")
        wait_until(self._ready, timeout, f"stripe-mock (port {self.port})", self.process)
        return self

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop(grace=10)
            self.process = None

    def _ready(self) -> bool:
        response = httpx.get(f"{self.url}/v1/charges", headers={"Authorization": f"Bearer {TEST_KEY}"}, timeout=2)
        # The version header also tells our process apart from anything else that took the port.
        return response.status_code == 200 and _same_version(response.headers.get("stripe-mock-version"))
