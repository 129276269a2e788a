"""Which devices a rule applies to: of its device kinds (None: all) and of its unit and those below it."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from store.alerts import Rule
from store.devices import KINDS


def rule_applies(
    rule: Rule, kind: npt.NDArray[np.int64], unit: npt.NDArray[np.int64], below: dict[int, set[int]]
) -> npt.NDArray[np.bool_]:
    """Per device (kind codes index KINDS, -1 unknown; unit ids, -1 none): whether the rule applies.
    `below`: each unit and the units below it."""
    ok = np.ones(len(kind), dtype=bool)
    if rule.device_kinds is not None:
        wanted = np.zeros(len(KINDS) + 1, dtype=bool)  # a table by kind code; the extra last entry is -1, unknown
        wanted[[KINDS.index(k) for k in rule.device_kinds if k in KINDS]] = True
        ok &= wanted[kind]
    if rule.org_unit_id is not None:
        ok &= np.isin(unit, sorted(below.get(rule.org_unit_id, set())))
    return ok
