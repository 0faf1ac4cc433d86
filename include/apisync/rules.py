"""Declarative event rules per collection: data, not code.

A rule set is a plain mapping (it could come from YAML) turned into frozen dataclasses by
`rules_from_config`; each API's spec declares its own (`ApiSpec.rules`, read by `registry.default_rules`).
Two kinds exist:

- `transition`: a field changes value (optionally only from / to given values), e.g. a subscription's
  `status` going `active` → `canceled` emits `status_changed`.
- `threshold`: a numeric field crosses a threshold upwards (rising edge only): the event fires when the
  previous value was below the threshold (or absent, e.g. on creation) and the new one is at or above it;
  later updates that stay above it emit nothing.

A rule's `field` is a top-level field, or a dotted path into nested objects (`properties.dealstage`,
for APIs such as HubSpot that keep an object's values under one key); a top-level field whose own name
contains a dot wins over the path.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

_MISSING = object()


def field_value(data: Mapping[str, Any], path: str, default: Any = None) -> Any:
    """`data[path]`, else the value at the dotted path (`default` where it is missing)."""
    if path in data:
        return data[path]
    value: Any = data
    for part in path.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return default
        value = value[part]
    return value


@dataclass(frozen=True, slots=True)
class TransitionRule:
    """Emit `event` when `field` changes, optionally only from `from_values` and/or to `to_values`."""

    field: str
    event: str
    from_values: tuple[Any, ...] = ()
    to_values: tuple[Any, ...] = ()

    def fires(self, old: Mapping[str, Any] | None, new: Mapping[str, Any]) -> bool:
        """True when this update is a matching transition (never on creation)."""
        if old is None or field_value(new, self.field, _MISSING) is _MISSING:
            return False
        before, after = field_value(old, self.field), field_value(new, self.field)
        if before == after:
            return False
        if self.from_values and before not in self.from_values:
            return False
        return not self.to_values or after in self.to_values


@dataclass(frozen=True, slots=True)
class ThresholdRule:
    """Emit `event` when numeric `field` rises from below `threshold` to at least it."""

    field: str
    threshold: float
    event: str

    def fires(self, old: Mapping[str, Any] | None, new: Mapping[str, Any]) -> bool:
        """True only on the rising edge."""
        after = _number(field_value(new, self.field))
        if after is None or after < self.threshold:
            return False
        before = _number(field_value(old, self.field)) if old is not None else None
        return before is None or before < self.threshold


def _number(value: Any) -> float | None:
    # bool is an int subclass but never a meaningful amount
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


Rule = TransitionRule | ThresholdRule


def rule_from_config(spec: Mapping[str, Any]) -> Rule:
    """One rule from its plain-data form; raise ValueError naming what is wrong."""
    kind = spec.get("kind")
    try:
        if kind == "transition":
            return TransitionRule(
                spec["field"], spec["event"], tuple(spec.get("from", ())), tuple(spec.get("to", ()))
            )
        if kind == "threshold":
            return ThresholdRule(spec["field"], float(spec["threshold"]), spec["event"])
    except KeyError as missing:
        raise ValueError(f"event rule {spec!r} lacks {missing}") from None
    raise ValueError(f"event rule kind must be transition or threshold, got {kind!r}")


RuleSet = Mapping[str, tuple[Rule, ...]]


def rules_from_config(config: Mapping[str, Iterable[Mapping[str, Any]]]) -> dict[str, tuple[Rule, ...]]:
    """{collection: [rule spec, ...]} → {collection: (Rule, ...)}."""
    return {coll: tuple(rule_from_config(s) for s in specs) for coll, specs in config.items()}

