"""The processor's side: the partitions it owns, consumed from JetStream into the database.

Each owned partition has a durable pull consumer (`p<partition>`) on the work-queue stream. Its
reports go through the same batcher as a single-node server's terminals (COPY, duplicates skipped,
then the live state, geofence and rules), and a message is acked to JetStream only after its
reports are committed. Taking a partition over (`PartitionConsumer.start`): the consumer is made
again so that whatever the previous owner had not acked comes first, in stream order, at once
(instead of after the ack wait); the reports it had already committed are skipped by the database
and, having been replayed by `warm` beforehand, are old news to the rules.

Flow control: at most `max_in_flight` messages per partition wait for their commit, and no message is
fetched while the batcher is pausing its producers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from functools import partial

import nats.errors
import numpy as np
import numpy.typing as npt
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError

from distributed import wire
from distributed.leases import Leases
from ingest.background import Background
from ingest.batcher import FlowGate, Settle
from ingest.counters import Counters
from store.batch import PositionBatch

log = logging.getLogger("telematics.distributed")

Submit = Callable[[PositionBatch, Settle], None]


class PartitionConsumer:
    def __init__(
        self,
        js: JetStreamContext,
        partition: int,
        submit: Submit,
        gate: FlowGate,
        counters: Counters,
        *,
        fetch: int = 64,
        max_in_flight: int = 256,
        ack_wait_s: float = 30.0,
    ) -> None:
        self.js = js
        self.partition = partition
        self.submit = submit
        self.gate = gate
        self.counters = counters
        self.fetch = fetch
        self.max_in_flight = max_in_flight
        self.ack_wait_s = ack_wait_s
        self.durable = f"p{partition}"
        self._in_flight = 0
        self._settled = asyncio.Event()
        self._acks = Background(f"an ack of partition {partition}", lambda _: counters.inc("distributed.ack_failures"))
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    async def start(self) -> None:
        # The previous owner's consumer: made again, so its unacked messages come at once and in order.
        with contextlib.suppress(NotFoundError):
            await self.js.delete_consumer(wire.STREAM, self.durable)
        config = ConsumerConfig(
            durable_name=self.durable,
            filter_subject=wire.subject(self.partition),
            deliver_policy=DeliverPolicy.ALL,  # a work queue holds only what no one has acked
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=self.ack_wait_s,
            max_ack_pending=self.max_in_flight * 2,
        )
        sub = await self.js.pull_subscribe(wire.subject(self.partition), durable=self.durable, stream=wire.STREAM,
                                           config=config)  # fmt: skip
        self._task = asyncio.create_task(self._run(sub), name=f"partition-{self.partition}")
        self._task.add_done_callback(self._ended)

    def _ended(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            self.counters.inc("distributed.consumer_failures")
            log.error("partition %d: consuming stopped", self.partition, exc_info=task.exception())

    async def _run(self, sub: JetStreamContext.PullSubscription) -> None:
        try:
            while not self._stopping:
                await self.gate.open.wait()
                while self._in_flight >= self.max_in_flight:
                    self._settled.clear()
                    await self._settled.wait()
                try:
                    msgs = await sub.fetch(self.fetch, timeout=1.0)
                except (nats.errors.TimeoutError, TimeoutError):  # nothing came (the client raises either)
                    continue
                except Exception as e:  # NATS away or refusing: the loop must go on, not die
                    log.warning("partition %d: fetch failed (%r); again shortly", self.partition, e)
                    await asyncio.sleep(0.5)
                    continue
                for msg in msgs:
                    self._take(msg)
        finally:
            with contextlib.suppress(nats.errors.Error):
                await sub.unsubscribe()

    def _take(self, msg: Msg) -> None:
        try:
            batch = wire.decode_batch(msg.data)
        except wire.WireError as e:
            self.counters.inc("distributed.bad_messages")
            log.error("partition %d: message refused (%s); terminated", self.partition, e)
            self._acks.spawn(msg.term())
            return
        self._in_flight += 1
        self.counters.inc("distributed.messages")
        self.submit(batch, partial(self._committed, msg))

    def _committed(self, msg: Msg, stored: npt.NDArray[np.bool_]) -> None:
        # Refused rows were refused for good (a check the database makes): acked too, never redelivered.
        self._in_flight -= 1
        self._settled.set()
        self._acks.spawn(msg.ack())

    async def drain(self) -> None:
        """Stop fetching and wait until every message taken is committed and acked (giving it back)."""
        self._stopping = True
        if self._task is not None:  # a fetch waiting is cut short: what it would bring goes to the next owner
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        while self._in_flight:
            self._settled.clear()
            await self._settled.wait()
        await self._acks.wait()

    async def abort(self) -> None:
        """Stop fetching now (the lease is lost: the new owner gets what was not acked)."""
        self._stopping = True
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)


class Processor:
    """Keeps this node's share of the partitions: takes, gives back and loses them as `Leases` says."""

    def __init__(
        self,
        js: JetStreamContext,
        leases: Leases,
        submit: Submit,
        gate: FlowGate,
        counters: Counters,
        warm: Callable[[int], Awaitable[None]],
        *,
        lease_s: float,
    ) -> None:
        self.js = js
        self.leases = leases
        self.submit = submit
        self.gate = gate
        self.counters = counters
        self.warm = warm
        self.lease_s = lease_s
        self.consumers: dict[int, PartitionConsumer] = {}
        self._opening: dict[int, asyncio.Task[None]] = {}  # taken, replaying before consuming
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self._tick()
        self._task = asyncio.create_task(self._run(), name="partitions")

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.lease_s / 3)
            try:
                await self._tick()
            except Exception:
                log.exception("partitions: a round failed; again in %.1f s", self.lease_s / 3)

    async def _tick(self) -> None:
        await self.leases.tick(self._take, self._give_back, self._lost)

    async def _take(self, partition: int) -> None:
        # In a task of its own: a long replay must not hold up the renewal of the leases already held.
        self._opening[partition] = asyncio.create_task(self._open(partition), name=f"take-{partition}")

    async def _open(self, partition: int) -> None:
        try:
            await self.warm(partition)
            consumer = PartitionConsumer(self.js, partition, self.submit, self.gate, self.counters)
            await consumer.start()
        except Exception:
            log.exception("partition %d: taking it over failed; letting it go to try again", partition)
            await self.leases.let_go(partition)
            return
        finally:
            self._opening.pop(partition, None)
        self.consumers[partition] = consumer
        self.counters.inc("distributed.partitions_taken")

    async def _stop_opening(self, partition: int) -> None:
        opening = self._opening.pop(partition, None)
        if opening is not None:
            opening.cancel()
            await asyncio.gather(opening, return_exceptions=True)

    async def _give_back(self, partition: int) -> None:
        await self._stop_opening(partition)
        consumer = self.consumers.pop(partition, None)
        if consumer is not None:
            await consumer.drain()
        self.counters.inc("distributed.partitions_given_back")

    async def _lost(self, partition: int) -> None:
        await self._stop_opening(partition)
        consumer = self.consumers.pop(partition, None)
        if consumer is not None:
            await consumer.abort()
        self.counters.inc("distributed.partitions_lost")

    async def close(self) -> None:
        """Drain every partition and let the leases go, so the others take over without waiting."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await asyncio.gather(*(self._give_back(p) for p in {*self.consumers, *self._opening}))
        try:
            await self.leases.release_all()
        except nats.errors.Error as e:
            log.warning("partitions: leases not released (%s); they lapse in %.0f s", e, self.lease_s)
