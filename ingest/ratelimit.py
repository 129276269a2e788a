"""Per-address token buckets for new connections: a peer that connects faster than the limit is refused.

Generous by default, because a city's terminals often share a carrier's NAT address; the limit is
there for the scanner or the broken firmware that reconnects in a tight loop.
"""

from __future__ import annotations


class ConnectLimiter:
    def __init__(self, rate_per_s: float, burst: int, *, max_addresses: int = 100_000) -> None:
        self.rate = rate_per_s
        self.burst = float(burst)
        self.max_addresses = max_addresses
        self._buckets: dict[str, tuple[float, float]] = {}  # address -> (tokens, at)

    def allow(self, address: str, now: float) -> bool:
        tokens, at = self._buckets.get(address, (self.burst, now))
        tokens = min(self.burst, tokens + (now - at) * self.rate)
        if tokens < 1.0:
            self._buckets[address] = (tokens, now)
            return False
        if len(self._buckets) >= self.max_addresses and address not in self._buckets:
            # Forget the full buckets (addresses that are behaving) to stay bounded.
            self._buckets = {a: b for a, b in self._buckets.items() if b[0] < self.burst - 1}
        self._buckets[address] = (tokens - 1.0, now)
        return True
