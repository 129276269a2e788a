"""Tasks started and not awaited where they start (acks, publishes, downlink steps).

Each is kept until it is done, so none is garbage-collected half-way, and a failure is logged (and
handed to `failed`, to be counted) instead of surfacing as "Task exception was never retrieved".
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

log = logging.getLogger("telematics")


class Background:
    def __init__(self, what: str, failed: Callable[[BaseException], None] | None = None) -> None:
        self.what = what  # for the log: "downlink step", "an ack of partition 3"...
        self.failed = failed
        self._tasks: set[asyncio.Future[Any]] = set()

    def __len__(self) -> int:
        return len(self._tasks)

    def spawn(self, call: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(call)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Future[Any]) -> None:
        self._tasks.discard(task)
        if task.cancelled() or task.exception() is None:
            return
        error = task.exception()
        assert error is not None
        log.error("%s failed: %r", self.what, error)
        if self.failed is not None:
            self.failed(error)

    async def wait(self) -> None:
        """Until every task started so far is done."""
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def cancel(self) -> None:
        for task in self._tasks:
            task.cancel()
        await self.wait()
