"""The APIs and collections apisync syncs, as the registered specs declare them (`apisync.apis`).

`APIS` and `COLLECTIONS` are live views of the registry, so an API registered later (a plugin, a test)
appears in topics, CLI choices, DAGs and the normalizer without touching them.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence

from apisync.apis import all_specs


class _Apis(Sequence[str]):
    """The registered API names, in registration order."""

    def __getitem__(self, index):  # noqa: ANN001 - int or slice, as for any sequence
        return tuple(spec.name for spec in all_specs())[index]

    def __len__(self) -> int:
        return len(all_specs())

    def __repr__(self) -> str:
        return repr(tuple(self))


class _Collections(Mapping[str, tuple[str, ...]]):
    """{api: its collections (singular object names, as in record keys and topic names)}."""

    def __getitem__(self, api: str) -> tuple[str, ...]:
        for spec in all_specs():
            if spec.name == api:
                return spec.collections
        raise KeyError(api)

    def __iter__(self) -> Iterator[str]:
        return iter(_Apis())

    def __len__(self) -> int:
        return len(all_specs())


APIS: Sequence[str] = _Apis()
COLLECTIONS: Mapping[str, tuple[str, ...]] = _Collections()

# Event types every collection emits; declared rules add their own per collection.
BASE_EVENT_TYPES: tuple[str, ...] = ("created", "updated", "deleted")
