"""One module per API: listings, cursors, the incremental hand-over point, deletes, re-fetch of one object.

A source is built from its API's spec (`apisync.apis.<api>.build_source`), never from here.
"""

from __future__ import annotations

from apisync.sources.base import Batch, Source

__all__ = ["Batch", "Source"]
