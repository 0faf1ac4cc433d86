"""The flake detector: outcomes read from JUnit XML, and which tests changed between runs."""

from __future__ import annotations

from devstack.flaky import always_failing, changed, outcomes, report_runs

REPORT = """<?xml version="1.0" encoding="utf-8"?><testsuites><testsuite name="pytest">
<testcase classname="tests.a" name="test_ok" time="0.1"/>
<testcase classname="tests.a" name="test_bad" time="0.1"><failure message="assert 1 == 2">...</failure></testcase>
<testcase classname="tests.a" name="test_setup" time="0.1"><error message="fixture">...</error></testcase>
<testcase classname="tests.a" name="test_skip" time="0.0"><skipped message="no redis"/></testcase>
</testsuite></testsuites>"""


def test_outcomes_come_from_the_junit_report(tmp_path):
    report = tmp_path / "run.xml"
    report.write_text(REPORT)
    assert outcomes(report) == {"tests.a::test_ok": "passed", "tests.a::test_bad": "failed",
                                "tests.a::test_setup": "error", "tests.a::test_skip": "skipped"}


def test_a_changed_or_missing_outcome_is_reported_and_a_steady_one_is_not(capsys):
    runs = [{"t::stable": "passed", "t::flaky": "passed", "t::gone": "passed", "t::broken": "failed"},
            {"t::stable": "passed", "t::flaky": "failed", "t::broken": "error"}]
    assert changed(runs) == {"t::broken": ["failed", "error"], "t::flaky": ["passed", "failed"],
                             "t::gone": ["passed", "absent"]}
    assert always_failing(runs) == ["t::broken"]
    assert report_runs(runs) == 1
    assert "FLAKY  t::flaky: passed failed" in capsys.readouterr().out


def test_steady_runs_pass():
    runs = [{"t::a": "passed", "t::b": "skipped"}] * 3
    assert changed(runs) == {} and always_failing(runs) == [] and report_runs(runs) == 0
