"""Which processor owns which partitions: leases in JetStream key-value buckets.

Every processor announces itself in `telematics_processors` (one key per node, expiring after
`lease_s` unless renewed). Each partition has a wanted owner among the processors alive: the
rendezvous-hash winner of (node, partition), so every processor computes the same answer and a
processor joining or leaving moves only its own share. A partition is owned by whoever holds its key
in `telematics_partitions` (expiring after `lease_s` too): created only if absent, renewed only at
the revision it holds, so two processors can never both believe they hold it for longer than a lease.

`Leases.tick` runs every `lease_s / 3`: renew what is held (a renewal that fails means the partition
was lost: stop at once), give back what another processor should now have (after the caller has
drained it), take what is wanted and free. A processor killed with -9 stops renewing; its member key
and its leases lapse after `lease_s`, and the others take its partitions over.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from nats.js import JetStreamContext
from nats.js.api import KeyValueConfig, StorageType
from nats.js.errors import BucketNotFoundError, KeyWrongLastSequenceError, NoKeysError
from nats.js.kv import KeyValue

log = logging.getLogger("telematics.distributed")

MEMBERS = "telematics_processors"
LEASES = "telematics_partitions"


def owner(partition: int, nodes: Sequence[str]) -> str | None:
    """The rendezvous winner: the node whose hash with the partition is highest."""

    def score(node: str) -> bytes:
        return hashlib.blake2b(f"{node}/{partition}".encode(), digest_size=8).digest()

    return max(nodes, key=score) if nodes else None


async def bucket(js: JetStreamContext, name: str, ttl_s: float) -> KeyValue:
    try:
        return await js.key_value(name)
    except BucketNotFoundError:
        return await js.create_key_value(KeyValueConfig(bucket=name, ttl=ttl_s, storage=StorageType.MEMORY))


@dataclass
class Leases:
    node: str
    partitions: int
    members: KeyValue
    leases: KeyValue
    held: dict[int, int] = field(default_factory=dict)  # partition -> revision of our lease

    @classmethod
    async def open(cls, js: JetStreamContext, node: str, partitions: int, lease_s: float) -> Leases:
        return cls(node, partitions, await bucket(js, MEMBERS, lease_s), await bucket(js, LEASES, lease_s))

    async def nodes(self) -> list[str]:
        try:
            return sorted(await self.members.keys())
        except NoKeysError:
            return []

    async def tick(
        self,
        take: Callable[[int], Awaitable[None]],
        give_back: Callable[[int], Awaitable[None]],
        lost: Callable[[int], Awaitable[None]],
    ) -> None:
        """One round: announce, renew, give back, take (the callbacks start, drain or stop a partition)."""
        await self.members.put(self.node, b"1")
        nodes = await self.nodes()
        if self.node not in nodes:
            nodes.append(self.node)
        for p in sorted(self.held):
            try:
                self.held[p] = await self.leases.update(_key(p), self.node.encode(), last=self.held[p])
            except KeyWrongLastSequenceError:
                log.error("partition %d: lease lost (not renewed in time); stopping it", p)
                del self.held[p]
                await lost(p)
        for p in sorted(self.held):
            if owner(p, nodes) != self.node:
                await give_back(p)  # drained: everything it took in is settled
                revision = self.held.pop(p)
                with contextlib.suppress(KeyWrongLastSequenceError):
                    await self.leases.delete(_key(p), last=revision)
                log.info("partition %d: given back to %s", p, owner(p, nodes))
        for p in range(self.partitions):
            if p in self.held or owner(p, nodes) != self.node:
                continue
            try:
                self.held[p] = await self.leases.create(_key(p), self.node.encode())
            except KeyWrongLastSequenceError:
                continue  # its owner has not let it go yet (or its lease has not lapsed): next round
            log.info("partition %d: taken", p)
            await take(p)

    async def let_go(self, partition: int) -> None:
        """Give up a partition taken (its takeover failed): free for the next round to take again."""
        revision = self.held.pop(partition, None)
        if revision is not None:
            with contextlib.suppress(KeyWrongLastSequenceError):
                await self.leases.delete(_key(partition), last=revision)

    async def release_all(self) -> None:
        """On a clean stop: leave, so the others need not wait for the leases to lapse."""
        for p, revision in list(self.held.items()):
            with contextlib.suppress(KeyWrongLastSequenceError):
                await self.leases.delete(_key(p), last=revision)
        self.held.clear()
        await self.members.delete(self.node)


def _key(partition: int) -> str:
    return f"p{partition}"
