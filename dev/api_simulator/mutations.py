"""The mutation engine: N mutations on demand, or a steady background rate."""
from __future__ import annotations

import asyncio
import random
import time
from typing import Any

from .model import KINDS, Mutation


class MutationError(ValueError):
    """A mutate request names an unknown api, kind or collection."""


class MutationEngine:
    """Picks (api, kind, collection) with a seeded rng and applies mutations to the Simulator."""

    def __init__(self, sim: Any, seed: int = 0) -> None:
        self.sim = sim
        self.rng = random.Random(f"engine:{seed}")
        self._task: asyncio.Task | None = None

    def run(self, api: str | None, count: int, kinds: list[str] | None = None,
            collection: str | None = None) -> list[Mutation]:
        """Perform `count` mutations now (fewer only if none is possible)."""
        apis, kinds = self._validate(api, kinds or list(KINDS), collection)
        done = []
        for _ in range(count):
            mutation = self._one(apis, kinds, collection)
            if mutation is not None:
                done.append(mutation)
        self.sim.flush_webhooks()
        return done

    def _validate(self, api, kinds, collection) -> tuple[list[str], list[str]]:
        if api is not None and api not in self.sim.models:
            raise MutationError(f"unknown api {api!r}")
        bad = [k for k in kinds if k not in KINDS]
        if bad or not kinds:
            raise MutationError(f"unknown mutation kind {bad[0] if bad else None!r}; use {', '.join(KINDS)}")
        apis = [api] if api else list(self.sim.models)
        if collection is not None and not any(collection in self.sim.models[a].collections for a in apis):
            raise MutationError(f"unknown collection {collection!r}")
        return apis, kinds

    def _one(self, apis: list[str], kinds: list[str], collection: str | None) -> Mutation | None:
        for _ in range(30):  # a delete may be impossible (nothing deletable): try another draw
            model = self.sim.models[self.rng.choice(apis)]
            kind = self.rng.choice(kinds)
            choices = [c for c in model.mutable.get(kind, ()) if collection in (None, c)]
            if not choices:
                continue
            mutation = model.mutate(kind, self.rng.choice(choices))
            if mutation is not None:
                return mutation
        return None

    def ensure_running(self) -> None:
        """Start the background loop if a rate is set and it is not running (needs a running loop)."""
        if self.sim.runtime["mutation_rate_per_s"] > 0 and (self._task is None or self._task.done()):
            self._task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self) -> None:
        """Cancel the background loop."""
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None

    async def _loop(self) -> None:
        owed, last = 0.0, time.monotonic()
        while True:
            rate = float(self.sim.runtime["mutation_rate_per_s"])
            if rate <= 0:
                return
            await asyncio.sleep(min(1.0 / rate, 0.1))
            now = time.monotonic()
            owed += (now - last) * rate
            last = now
            whole = int(owed)
            if whole:
                owed -= whole
                self.run(None, whole)
