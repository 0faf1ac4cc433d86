"""Find the exception classes a package defines and say which are outside apisync's two error families."""

from __future__ import annotations

import importlib
import pkgutil

from apisync.errors import ApisyncError, FatalError, RetriableError


def exception_classes(package: str) -> dict[str, type[BaseException]]:
    """Every exception class defined in a module of `package`, by dotted name (entry points not imported)."""
    root = importlib.import_module(package)
    names = [package, *(info.name for info in pkgutil.walk_packages(root.__path__, f"{package}."))]
    found = {}
    for name in names:
        if name.endswith(".__main__"):  # importing one runs the program; none defines an exception class
            continue
        for obj in vars(importlib.import_module(name)).values():
            if isinstance(obj, type) and issubclass(obj, BaseException) and obj.__module__ == name:
                found[f"{name}.{obj.__qualname__}"] = obj
    return found


def outside_the_families(classes: dict[str, type[BaseException]], exempt: set[str]) -> dict[str, str]:
    """What is wrong with each class that is not in the root under exactly one family (unless exempt)."""
    wrong = {}
    for name, cls in classes.items():
        families = [family.__name__ for family in (FatalError, RetriableError) if issubclass(cls, family)]
        if name in exempt:
            continue
        if not issubclass(cls, ApisyncError):
            wrong[name] = "does not derive from ApisyncError"
        elif len(families) != 1:
            wrong[name] = f"derives from {families or 'neither FatalError nor RetriableError'}"
    return wrong
