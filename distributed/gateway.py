"""The gateway's side: reports go to JetStream instead of the database, acked when JetStream has them.

`JetStreamWriter` takes the batcher's place of the database writer (`ingest/batcher.py`): a batch
is split by partition and each part published as one message; `write` returns once JetStream has
acknowledged every part, so the batcher answers the terminals only then (the stream is the
durability point in this mode). A publish that fails or times out raises ConnectionError: the
batcher keeps the batch, waits and publishes it again (the same message ids, so JetStream's
duplicate window drops a part it already had; the processors' writes skip duplicates anyway).

`SeenPublisher`: heartbeats (a sign of life without a position) for the processors and the API,
gathered per second.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging

import msgpack
import nats.errors
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.errors import APIError

from distributed import wire
from store.batch import PositionBatch

log = logging.getLogger("telematics.distributed")


class JetStreamWriter:
    def __init__(self, js: JetStreamContext, partitions: int, *, timeout_s: float = 5.0) -> None:
        self.js = js
        self.partitions = partitions
        self.timeout_s = timeout_s

    async def write(self, batch: PositionBatch) -> int:
        if not len(batch):
            return 0
        parts = [(p, wire.encode_batch(part)) for p, part in wire.split(batch, self.partitions)]
        try:
            await asyncio.gather(*(self._publish(p, data) for p, data in parts))
        except (nats.errors.Error, APIError, TimeoutError) as e:
            raise ConnectionError(f"JetStream did not take the batch: {e!r}") from e
        return len(batch)

    async def _publish(self, partition: int, data: bytes) -> None:
        msg_id = hashlib.blake2b(data, digest_size=16).hexdigest()  # the same part again is a duplicate
        await self.js.publish(
            wire.subject(partition), data, timeout=self.timeout_s, stream=wire.STREAM, headers={"Nats-Msg-Id": msg_id}
        )

    async def close(self) -> None:
        pass


class SeenPublisher:
    def __init__(self, nc: Client, every_s: float = 1.0) -> None:
        self.nc = nc
        self.every_s = every_s
        self._ids: set[int] = set()
        self._task: asyncio.Task[None] | None = None

    def seen(self, device_id: int) -> None:
        self._ids.add(device_id)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="seen-publisher")

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.every_s)
            await self.flush()

    async def flush(self) -> None:
        if not self._ids:
            return
        ids, self._ids = sorted(self._ids), set()
        try:
            await self.nc.publish(wire.SEEN_SUBJECT, msgpack.packb(ids))
        except nats.errors.Error as e:
            log.warning("heartbeats of %d devices not passed on: %s", len(ids), e)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self.flush()
