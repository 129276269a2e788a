"""Counters of what happened to input, and logging each kind of bad input once per peer."""

from __future__ import annotations

import logging
from collections import Counter

log = logging.getLogger("telematics.ingest")


class Counters:
    def __init__(self) -> None:
        self.values: Counter[str] = Counter()
        self._logged: set[tuple[str, str]] = set()

    def inc(self, name: str, n: int = 1) -> None:
        self.values[name] += n

    def bad_input(self, name: str, peer: str, reason: str) -> None:
        """Count bad input; log it the first time this peer shows this kind of problem."""
        self.values[name] += 1
        key = (peer, name)
        if key not in self._logged:
            if len(self._logged) > 100_000:  # a flood of distinct peers must not grow this without bound
                self._logged.clear()
            self._logged.add(key)
            log.warning("%s from %s: %s", name, peer, reason)

    def snapshot(self) -> dict[str, int]:
        return dict(sorted(self.values.items()))
