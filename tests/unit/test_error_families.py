"""Every error the core raises derives from ApisyncError and from exactly one of FatalError / RetriableError."""

from __future__ import annotations

import argparse
import ast
import pickle
from pathlib import Path

import pytest

from apisync import cli, errors, http
from apisync.http import errors as http_errors
from error_families import exception_classes, outside_the_families

# Control-flow signals, not errors: each is raised and caught inside its own module, never seen by a caller.
CONTROL_FLOW = {
    "apisync.http.client._Retry",  # one attempt failed in a way worth repeating: the client's retry loop
    "apisync.normalizer.ties._TiesOutside",  # ties to re-fetch before the batch is judged again
    "apisync.normalizer.deferrals._NothingDue",  # only deferrals not yet due were read: nothing to process
}
# The roots themselves: above the fatal / retriable split.
ROOTS = {"apisync.errors.ApisyncError", "apisync.http.errors.ApiError"}


def test_every_core_error_is_in_exactly_one_family():
    classes = exception_classes("apisync")
    assert {"apisync.fence.LedgerLost", "apisync.events.ObservationError"} <= set(classes)  # not vacuous
    assert CONTROL_FLOW | ROOTS <= set(classes)  # the exemptions name classes that exist
    assert outside_the_families(classes, CONTROL_FLOW | ROOTS) == {}


def test_control_flow_signals_stay_outside_the_root():
    classes = exception_classes("apisync")
    assert [name for name in CONTROL_FLOW if issubclass(classes[name], errors.ApisyncError)] == []


def test_the_checker_finds_a_class_outside_the_families():
    class Stray(Exception):
        pass

    class Both(errors.FatalError, errors.RetriableError):
        pass

    assert outside_the_families({"Stray": Stray, "Both": Both, "Fine": errors.FatalError}, set()) == {
        "Stray": "does not derive from ApisyncError",
        "Both": "derives from ['FatalError', 'RetriableError']",
    }


@pytest.mark.parametrize(("cls", "status", "family"), [(http.FatalError, 401, errors.FatalError),
                                                        (http.RateLimitedError, 429, errors.RetriableError)])
def test_an_http_error_is_caught_by_its_root_family(cls, status, family):
    with pytest.raises(family) as raised:
        raise cls("stripe", "GET", "/v1/customers", status, "no")
    assert isinstance(raised.value, http.ApiError) and raised.value.status == status
    assert pickle.loads(pickle.dumps(raised.value)).status == status  # still crosses process boundaries
    assert http_errors.FatalError is http.FatalError and http_errors.RetriableError is http.RetriableError


def test_the_root_module_imports_nothing_of_apisync():
    tree = ast.parse(Path(errors.__file__).read_text())
    imported = [node.module if isinstance(node, ast.ImportFrom) else alias.name
                for node in ast.walk(tree) if isinstance(node, ast.Import | ast.ImportFrom)
                for alias in node.names]
    assert [name for name in imported if name and name.split(".")[0] == "apisync"] == []


class Unlisted(errors.FatalError):
    """An error no command's code names: the CLI knows it by its family."""


def _cli_raising(monkeypatch, error: Exception) -> None:
    """Make every command raise `error`."""
    def command(_args: argparse.Namespace) -> int:
        raise error

    parser = argparse.ArgumentParser(prog="apisync")
    parser.set_defaults(func=command)
    monkeypatch.setattr(cli, "build_parser", lambda: parser)


def test_the_cli_prints_any_apisync_error_as_one_line_and_exits_2(monkeypatch, capsys):
    _cli_raising(monkeypatch, Unlisted("connection 'stripe_default': no API token"))
    assert cli.main([]) == 2
    assert capsys.readouterr().err == "error: connection 'stripe_default': no API token\n"


def test_the_cli_leaves_other_errors_their_traceback(monkeypatch):
    _cli_raising(monkeypatch, KeyError("a bug"))
    with pytest.raises(KeyError):
        cli.main([])
