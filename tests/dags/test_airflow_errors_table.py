"""The fatal-error table names only classes that exist: a misspelt entry would be skipped silently."""

import importlib

import pytest

from apisync_airflow.errors import FATAL


@pytest.mark.parametrize("module, name", FATAL)
def test_every_fatal_entry_names_an_existing_exception_class(module, name):
    found = getattr(importlib.import_module(module), name, None)
    assert isinstance(found, type) and issubclass(found, BaseException), f"{module}.{name} does not exist"
