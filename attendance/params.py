"""The `attendance` rule: its params, and which rule judges a person.

params (all optional, defaults in brackets):

- `off_post_min` [15]: outside the duty grid longer than this during the shift is off post (脱岗);
- `stationary_min` [30], `stationary_radius_m` [30]: no movement beyond the radius for longer than this;
- `offline_min` [15]: no fix for longer than this during the shift is offline on duty;
- `max_walk_kmh` [25]: a phone check-in/out implying a faster move from the previous fix is not believed
  (bicycles and e-bikes included).

A person is judged by the one enabled rule that applies to their phone (its device kinds, and its unit
with the units below it) whose unit is closest to the person's: a district's own rule overrides the city's.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

from store.alerts import Rule
from store.users import Unit

ATTENDANCE = "attendance"  # the rule kind


@dataclass(frozen=True, slots=True)
class Params:
    off_post_min: float = 15.0
    stationary_min: float = 30.0
    stationary_radius_m: float = 30.0
    offline_min: float = 15.0
    max_walk_kmh: float = 25.0

    @classmethod
    def of(cls, params: Mapping[str, Any]) -> Params:
        """From a rule's params; a missing or malformed value keeps its default."""
        found = {}
        for f in fields(cls):
            value = params.get(f.name)
            if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
                found[f.name] = float(value)
        return cls(**found)


class Judges:
    """The enabled attendance rules over the unit tree."""

    def __init__(self, rules: Sequence[Rule], units: Sequence[Unit]) -> None:
        self.rules = [r for r in rules if r.kind == ATTENDANCE and r.enabled]
        parent = {u.id: u.parent_id for u in units}
        self._path: dict[int, list[int]] = {}  # each unit, then its parent, ... up to its root
        for u in units:
            path, up = [u.id], u.parent_id
            while up is not None and up in parent and up not in path:
                path.append(up)
                up = parent[up]
            self._path[u.id] = path

    def rule(self, unit_id: int | None, device_kind: str | None) -> Rule | None:
        """The rule that judges a person of this unit whose phone is of this kind, or None."""
        path = self._path.get(unit_id, []) if unit_id is not None else []
        best: tuple[int, int] | None = None  # (distance up from the person's unit, rule id): smallest wins
        found = None
        for rule in self.rules:
            if rule.device_kinds is not None and device_kind not in rule.device_kinds:
                continue
            if rule.org_unit_id is None:
                distance = len(path)  # above every unit of the tree
            elif rule.org_unit_id in path:
                distance = path.index(rule.org_unit_id)
            else:
                continue
            if best is None or (distance, rule.id) < best:
                best, found = (distance, rule.id), rule
        return found

    def params(self, unit_id: int | None, device_kind: str | None) -> Params:
        """The params that judge such a person; the defaults when no enabled rule applies."""
        rule = self.rule(unit_id, device_kind)
        return Params() if rule is None else Params.of(rule.params)
