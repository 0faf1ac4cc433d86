"""python -m devstack.flaky: run pytest N times and report every test whose outcome changed between runs.

A flaky gate rejects good work at random, so this is how we look for flakes before CI does: run a file or a
tier several times (optionally with CPU-burning processes beside it, the way a shared 2-core machine is loaded)
and compare the outcomes test by test. Each run writes pytest's own JUnit XML report; nothing is parsed
from the console. Exit status 1 when any outcome changed, or when a test failed in every run.

    python -m devstack.flaky -n 5 --burn 1 -- tests/integration -m "not faults and not scale"
"""

from __future__ import annotations

import argparse
import multiprocessing
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from collections import defaultdict
from pathlib import Path

OUTCOMES = {"error": "error", "failure": "failed", "skipped": "skipped"}  # JUnit element -> outcome


def outcomes(report: Path) -> dict[str, str]:
    """test id -> passed | failed | error | skipped, from one JUnit XML report."""
    found = {}
    for case in ET.parse(report).getroot().iter("testcase"):
        tags = {child.tag for child in case}
        found[f"{case.get('classname')}::{case.get('name')}"] = \
            next((outcome for tag, outcome in OUTCOMES.items() if tag in tags), "passed")
    return found


def changed(runs: list[dict[str, str]]) -> dict[str, list[str]]:
    """Tests whose outcome differs between runs (a test missing from a run counts as 'absent')."""
    tests = sorted({test for run in runs for test in run})
    history = {test: [run.get(test, "absent") for run in runs] for test in tests}
    return {test: seen for test, seen in history.items() if len(set(seen)) > 1}


def always_failing(runs: list[dict[str, str]]) -> list[str]:
    """Tests that failed or errored in every run: broken, not flaky, but worth the same report."""
    tests = {test for run in runs for test in run}
    return sorted(t for t in tests if all(run.get(t) in ("failed", "error") for run in runs))


def _burn() -> None:
    while True:
        pass


def run_pytest(args: list[str], report: Path) -> int:
    """One pytest run writing its JUnit XML report; returns pytest's exit code."""
    command = [sys.executable, "-m", "pytest", *args, "-q", "-p", "no:cacheprovider", f"--junitxml={report}"]
    return subprocess.call(command)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--runs", type=int, default=5, help="how many times to run (default 5)")
    parser.add_argument("--burn", type=int, default=0, help="CPU-burning processes beside the runs (default 0)")
    parser.add_argument("pytest_args", nargs="*", help="what pytest runs, after --")
    options = parser.parse_args(argv)
    burners = [multiprocessing.Process(target=_burn, daemon=True) for _ in range(options.burn)]
    for burner in burners:
        burner.start()
    runs: list[dict[str, str]] = []
    try:
        with tempfile.TemporaryDirectory() as folder:
            for n in range(1, options.runs + 1):
                report = Path(folder) / f"run-{n}.xml"
                code = run_pytest(options.pytest_args, report)
                runs.append(outcomes(report) if report.exists() else {})
                counts = defaultdict(int)
                for outcome in runs[-1].values():
                    counts[outcome] += 1
                print(f"flaky: run {n}/{options.runs}: exit {code}, {dict(counts)}", flush=True)
    finally:
        for burner in burners:
            burner.terminate()
    return report_runs(runs)


def report_runs(runs: list[dict[str, str]]) -> int:
    """Print what changed between the runs; 1 when anything did or a test never passed."""
    flips, broken = changed(runs), always_failing(runs)
    for test, seen in flips.items():
        print(f"FLAKY  {test}: {' '.join(seen)}")
    for test in broken:
        print(f"FAILS  {test}: in all {len(runs)} runs")
    tests = len({test for run in runs for test in run})
    print(f"flaky: {len(runs)} runs of {tests} tests, {len(flips)} changed outcome, {len(broken)} failed every run")
    return 1 if flips or broken else 0


if __name__ == "__main__":
    sys.exit(main())
