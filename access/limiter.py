"""Failed attempts per client in a sliding window: past the limit, the client waits (password guessing)."""

from __future__ import annotations

from collections import deque


class FailureLimiter:
    def __init__(self, max_failures: int = 10, window_s: float = 60.0, *, max_clients: int = 100_000) -> None:
        self.max_failures = max_failures
        self.window = window_s
        self.max_clients = max_clients
        self._failures: dict[str, deque[float]] = {}

    def retry_after(self, client: str, now: float) -> float:
        """Seconds the client must wait before its next attempt; 0 when it may try now."""
        times = self._failures.get(client)
        if times is None:
            return 0.0
        while times and times[0] <= now - self.window:
            times.popleft()
        if not times:
            del self._failures[client]
            return 0.0
        return times[0] + self.window - now if len(times) >= self.max_failures else 0.0

    def fail(self, client: str, now: float) -> None:
        if client not in self._failures and len(self._failures) >= self.max_clients:
            self._prune(now)
        self._failures.setdefault(client, deque()).append(now)

    def forgive(self, client: str) -> None:
        """Take back the newest failure (an attempt counted in advance that succeeded)."""
        times = self._failures.get(client)
        if times:
            times.pop()

    def _prune(self, now: float) -> None:
        """Stay bounded: drop clients whose failures are all old, then the oldest clients."""
        self._failures = {c: t for c, t in self._failures.items() if t and t[-1] > now - self.window}
        while len(self._failures) >= self.max_clients:
            del self._failures[next(iter(self._failures))]
