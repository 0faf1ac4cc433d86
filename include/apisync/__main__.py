"""Entry point for `python -m apisync`."""

from apisync.cli import main

raise SystemExit(main())
