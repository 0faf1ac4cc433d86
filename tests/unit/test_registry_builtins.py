"""A process that imports only generic modules still knows the built-in APIs: the registry loads them on
its first lookup (a script calling `normalize`, a worker started with `python -c`)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

INCLUDE = Path(__file__).resolve().parents[2] / "include"

PROBE = """
import sys
from apisync.normalizer import output_topics
from apisync import registry
assert "apisync.apis" not in sys.modules, "the probe must start without the APIs registered"
print(",".join(registry.APIS))
print(registry.spec_for("stripe").name, len(output_topics("stripe", registry.default_rules("stripe"))))
"""


def test_the_first_lookup_loads_the_built_in_apis():
    answer = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=60,
                            env={"PYTHONPATH": str(INCLUDE)}, check=False)
    assert answer.returncode == 0, answer.stderr
    apis, stripe = answer.stdout.splitlines()
    assert apis.split(",") == ["stripe", "github", "salesforce", "hubspot"]
    assert stripe.startswith("stripe ") and int(stripe.split()[1]) > 10
