"""apisync's version: the one place it is set (pyproject.toml reads it, the CLI and the provider print it)."""

__version__ = "0.1.0"
