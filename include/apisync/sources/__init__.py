"""What every API's source shares, naming no vendor: the `Source` protocol and its `Batch` (`base`), the
bounded (version, id) position of a keyset walk (`keyset`).

Each API's source (listings, cursors, the incremental hand-over point, deletes, re-fetch of one object)
lives in its package (`apisync.apis.<api>.source`) and is built by its spec (`registry.build_source`).
"""

from __future__ import annotations

from apisync.sources.base import Batch, Source

__all__ = ["Batch", "Source"]
