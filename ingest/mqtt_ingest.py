"""Phones over MQTT: subscribe at the broker, store every location once, PUBACK only after the commit.

One MQTT v5 client with a fixed client id and a persistent session (clean start off, a session
expiry interval), subscribed with QoS 1: what phones publish while this server is away waits in
the broker and is delivered when the session resumes.

Acknowledgement after the commit. aiomqtt 2.x has no manual-ack API, but the paho client under it
does (`manual_ack_set`, `ack(mid, qos)`). This module reaches that paho client (`Client._client`,
private to aiomqtt; checked at construction so an aiomqtt that renames it fails loudly instead of
acking early) and turns on manual acks before connecting. Every paho call happens on the event
loop's thread, as aiomqtt's own reader and writer callbacks do, so no locking is involved. So:

- a PUBLISH with positions is acked only after `ReportSink` reports its rows committed; one the
  server keeps nothing from (bad payload, unknown or disabled device, heartbeat, logout, a fix
  refused as out of range) is acked at once, so the broker does not redeliver it forever;
- PUBACKs go out in the order the PUBLISHes came in (MQTT 4.6), so a message waits for the acks
  of those received before it;
- each connection has its own paho client: an ack whose commit finishes after that connection
  died is not sent at all; the broker redelivers the message on the resumed session and the
  store keeps one row per device and fix time;
- the broker sends at most `receive_maximum` unacknowledged messages (MQTT v5 Receive Maximum;
  MQTT 3.1.1 leaves the window to the broker, 20 in Mosquitto, far too few to keep batches
  full); while the batcher applies backpressure these wait here unprocessed, and beyond the
  window they wait in the broker. This is why the client speaks MQTT v5.

Nothing on the way waits for a commit: `workers` tasks take messages as paho reads them; decoding
and `ReportSink.submit` are synchronous, and only a device lookup that misses the registry cache
suspends, so a few lookups run at once while cached devices keep flowing. Batches close on size
or on the batcher's deadline; the acks follow from its commit callbacks.

What can still be lost, and when:

- a message the database refuses for good (`store.rows_refused`, after the batcher has isolated
  the row) is acked, counted as `mqtt.refused` and not stored: redelivering it would fail again;
- a message published with QoS 0, or delivered at QoS 0 because `qos=0`, is at most once by MQTT;
- QoS 2 is not offered: paho answers PUBREC itself before the application sees the message; from
  then on the broker keeps only the packet id (it resends PUBREL, not the message), so an ack held
  back until the commit would protect nothing;
- a topic that is not valid UTF-8 (MQTT forbids it and Mosquitto disconnects its publisher) would
  make aiomqtt drop the connection on each redelivery;
- messages the broker drops: past its queue limit for an offline session (Mosquitto
  `max_queued_messages`), when the session expires (`session_expiry_s` without this client), or
  when the broker itself restarts without persistence;
- an unhandled error while handling one message (a bug, not bad input: bad input is counted and
  acked) is logged, counted as `mqtt.internal_errors` and acked, so that one message cannot stall
  the ordered acks of everything behind it.

Counters: `mqtt.messages`, `mqtt.bad_messages` (and `mqtt.bad_messages.<reason>`),
`mqtt.unknown_devices`, `mqtt.disabled_devices`, `mqtt.logouts`, `mqtt.heartbeats`,
`mqtt.unsupported`, `mqtt.refused`, `mqtt.lookup_errors`, `mqtt.internal_errors`,
`mqtt.fake_checkins` (check-ins/outs from a mock location or an impossible move: acked, not stored),
`mqtt.connections`, `mqtt.disconnects` (one per outage), `mqtt.connect_failures` (attempts during
an outage); positions are counted by `ReportSink` as `ingest.positions.mqtt`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence

import aiomqtt
import paho.mqtt.client as paho
import psycopg
import psycopg_pool
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from ingest.counters import Counters
from ingest.downlink import Downlink
from ingest.reports import ReportSink
from protocols import phone_mqtt
from protocols.messages import CommandReply, FrameError, Heartbeat, Logout, Position, Unsupported
from store.devices import Device
from tracking.registry import Registry

# Published with QoS 1 at close, to a topic nobody subscribes to: see close().
_BARRIER = "telematics/ingest/{}/closing"

log = logging.getLogger("telematics.mqtt")

_REASON_SLUG = re.compile(r"[^a-z0-9]+")
# Judges a phone's check-in or check-out (attendance.phone_events): True when it is to be stored as a fix.
Attendance = Callable[[Device, Position], Awaitable[bool]]


class _Connection:
    """One MQTT connection: its paho client and the received messages not yet acknowledged, in order."""

    __slots__ = ("alive", "paho", "subscribed", "unacked")

    def __init__(self, client: paho.Client) -> None:
        self.paho = client
        self.alive = True
        self.subscribed = False
        self.unacked: deque[_Received] = deque()

    def flush(self) -> None:
        """Send the PUBACKs that are due: those at the head whose messages are settled."""
        unacked = self.unacked
        while unacked and unacked[0].settled:
            received = unacked.popleft()
            if self.alive:
                self.paho.ack(received.mid, received.qos)


class _Received:
    """A PUBLISH in flight; called with True/False once its rows are committed (ReportSink's `done`)."""

    __slots__ = ("conn", "ingest", "mid", "payload", "qos", "settled", "topic")

    def __init__(self, ingest: MqttIngest, conn: _Connection, topic: str, payload: bytes, mid: int, qos: int) -> None:
        self.ingest = ingest
        self.conn = conn
        self.topic = topic
        self.payload = payload
        self.mid = mid
        self.qos = qos
        self.settled = False

    def __call__(self, ok: bool) -> None:
        if not ok:
            # The batcher has logged the refused row; redelivery would only be refused again.
            self.ingest.counters.inc("mqtt.refused")
        self.settle()

    def settle(self) -> None:
        self.settled = True
        self.payload = b""
        self.ingest._progress.set()
        if self.qos:
            self.conn.flush()


class _Flow:
    """The batcher's backpressure: while paused, received messages wait here unprocessed."""

    def __init__(self, ingest: MqttIngest) -> None:
        self._ingest = ingest

    def pause_reading(self) -> None:
        self._ingest._paused = True

    def resume_reading(self) -> None:
        self._ingest._paused = False
        self._ingest._wake_idle()


class MqttIngest:
    """Subscribes to the phone topics and hands positions to `ReportSink`; reconnects on its own."""

    def __init__(
        self,
        reports: ReportSink | None,  # None, with no subscriptions: a publisher only
        registry: Registry | None,
        counters: Counters,
        *,
        host: str,
        port: int,
        client_id: str = "telematics-ingest",
        subscriptions: Sequence[str] = phone_mqtt.SUBSCRIPTIONS,
        qos: int = 1,
        username: str | None = None,
        password: str | None = None,
        keepalive_s: int = 60,
        session_expiry_s: int = 7 * 24 * 3600,
        receive_maximum: int = 2000,
        reconnect_min_s: float = 0.5,
        reconnect_max_s: float = 30.0,
        workers: int = 4,
    ) -> None:
        if qos not in (0, 1):
            raise ValueError("qos must be 0 or 1 (QoS 2 is acknowledged by paho before the commit)")
        if not 1 <= receive_maximum <= 65535:
            raise ValueError("receive_maximum must be 1..65535")
        if not client_id:
            raise ValueError("a persistent session needs a fixed client_id")
        self.reports = reports
        self.registry = registry
        self.counters = counters
        self.host = host
        self.port = port
        self.client_id = client_id
        self.subscriptions = tuple(subscriptions)
        self.qos = qos
        self.username = username
        self.password = password
        self.keepalive_s = keepalive_s
        self.session_expiry_s = session_expiry_s
        self.receive_maximum = receive_maximum
        self.reconnect_min_s = reconnect_min_s
        self.reconnect_max_s = reconnect_max_s
        self.n_workers = workers
        self._inbox: deque[_Received] = deque()
        self._idle: deque[asyncio.Future[None]] = deque()  # workers waiting for a message
        self._progress = asyncio.Event()  # set whenever a message is settled (close() waits on it)
        self._paused = False
        self._accepting = True
        self._flow = _Flow(self)
        self._conn: _Connection | None = None
        self._client_now: aiomqtt.Client | None = None  # while connected: publishes to phones go through it
        self.downlink: Downlink | None = None  # hears phones' acks of dispatcher messages
        self.attendance: Attendance | None = None  # judges check-ins/outs; None: stored as they come
        self._task: asyncio.Task[None] | None = None
        self._workers: list[asyncio.Task[None]] = []

    # --- life cycle -----------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        """Connected and subscribed."""
        return self._conn is not None and self._conn.alive and self._conn.subscribed

    async def start(self) -> None:
        """Connect and subscribe; returns once subscribed. The first connection's failure is raised
        (a wrong host or refused credentials should stop the start); later outages are retried."""
        self._accepting = True
        if self.reports is not None:
            self.reports.batcher.register(self._flow)
        self._workers = [asyncio.create_task(self._work(), name=f"mqtt-worker-{i}") for i in range(self.n_workers)]
        subscribed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._task = asyncio.create_task(self._run(subscribed), name="mqtt-ingest")
        try:
            await subscribed
        except BaseException:
            await self._stop_tasks()
            raise

    async def close(self, drain_timeout: float = 5.0) -> None:
        """Stop taking messages, wait (bounded) for those taken to be committed and acked, disconnect.
        Messages that arrive meanwhile are left unacked: the broker delivers them to the next session."""
        self._accepting = False
        deadline = time.monotonic() + drain_timeout
        while self._inbox or (self._conn is not None and self._conn.unacked):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            self._progress.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._progress.wait(), remaining)
        # The last PUBACKs must reach the broker before the DISCONNECT, or it sends those messages again to
        # the next session. The broker handles a connection's packets in order: once it has acknowledged a
        # publish of ours sent after them, it has taken every PUBACK before it.
        client = self._client_now
        if client is not None and self._conn is not None and self._conn.paho.is_connected():
            barrier = asyncio.ensure_future(client.publish(_BARRIER.format(self.client_id), b"", qos=1))
            # Whatever becomes of it (the connection may be going down), its outcome is taken, not left unread.
            barrier.add_done_callback(lambda f: f.cancelled() or f.exception())
            await asyncio.wait({barrier}, timeout=2)
        await self._stop_tasks()

    async def _stop_tasks(self) -> None:
        # Cancelling the connection task leaves aiomqtt's context: a DISCONNECT after the queued PUBACKs.
        tasks = [t for t in (self._task, *self._workers) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(task, 15)
        self._task = None
        self._workers = []
        if self._conn is not None:
            self._conn.alive = False
            self._conn = None
        self._inbox.clear()
        if self.reports is not None:
            self.reports.batcher.unregister(self._flow)

    # --- the connection -------------------------------------------------------------------

    def _client(self) -> tuple[aiomqtt.Client, _Connection]:
        """A new client for each connection attempt, so a stale ack can never reach a later connection."""
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = self.session_expiry_s
        props.ReceiveMaximum = self.receive_maximum
        ingest = self

        class Inbox(asyncio.Queue[aiomqtt.Message]):
            """aiomqtt's message queue, replaced: each message goes straight to the workers' inbox."""

            def put_nowait(self, item: aiomqtt.Message) -> None:
                ingest._received(conn, item)

        client = aiomqtt.Client(
            self.host,
            self.port,
            identifier=self.client_id,
            username=self.username,
            password=self.password,
            protocol=aiomqtt.ProtocolVersion.V5,
            clean_start=False,
            properties=props,
            keepalive=self.keepalive_s,
            queue_type=Inbox,
            logger=log,
        )
        inner = getattr(client, "_client", None)
        if not isinstance(inner, paho.Client):
            raise RuntimeError("aiomqtt no longer exposes its paho client: acks after the commit are impossible")
        inner.manual_ack_set(True)
        conn = _Connection(inner)
        return client, conn

    async def _run(self, subscribed: asyncio.Future[None]) -> None:
        delay = self.reconnect_min_s
        outage_since: float | None = None
        while True:
            client, conn = self._client()
            try:
                async with client:
                    self._conn = conn
                    self._client_now = client
                    await self._subscribe(client)
                    self.counters.inc("mqtt.connections")
                    conn.subscribed = True
                    if not subscribed.done():
                        subscribed.set_result(None)
                        log.info("MQTT subscribed at %s:%d as %s", self.host, self.port, self.client_id)
                    elif outage_since is not None:
                        log.info("MQTT broker back after %.1f s", time.monotonic() - outage_since)
                    outage_since = None
                    delay = self.reconnect_min_s
                    # Messages arrive through the Inbox; this only waits for the connection to end.
                    async for _ in client.messages:
                        pass
            except aiomqtt.MqttError as e:
                if not subscribed.done():
                    subscribed.set_exception(e)
                    return
                if outage_since is None:
                    outage_since = time.monotonic()
                    self.counters.inc("mqtt.disconnects")
                    log.warning("MQTT broker %s:%d lost (%s); reconnecting", self.host, self.port, e)
                else:
                    self.counters.inc("mqtt.connect_failures")
            except Exception as e:
                # Not expected from aiomqtt, but this task must outlive it: retry like an outage.
                if not subscribed.done():
                    subscribed.set_exception(e)
                    return
                self.counters.inc("mqtt.internal_errors")
                log.exception("MQTT connection to %s:%d failed", self.host, self.port)
            finally:
                self._client_now = None
                if self._conn is not None:
                    self._conn.alive = False  # its pending acks die with it: the broker redelivers
                    self._conn = None
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.reconnect_max_s)

    async def publish_message(self, uid: str, message_id: int, text: str) -> None:
        """A dispatcher's message to a phone, QoS 1: returns once the broker has it."""
        await self.publish(phone_mqtt.message_topic_for(uid), phone_mqtt.encode_message(message_id, text))

    async def publish(self, topic: str, payload: bytes, qos: int = 1) -> None:
        """Publish on this connection (not retained); with QoS 1 returns once the broker has it.
        Raises `aiomqtt.MqttError` while disconnected: the caller decides whether to try again."""
        client = self._client_now
        if client is None:
            raise aiomqtt.MqttError("not connected to the broker")
        await client.publish(topic, payload, qos=qos)

    async def _subscribe(self, client: aiomqtt.Client) -> None:
        if not self.subscriptions:  # a publisher only (the distributed mode's API process)
            return
        # Retained messages only for a subscription the resumed session does not hold already.
        options = SubscribeOptions(qos=self.qos, retainHandling=SubscribeOptions.RETAIN_SEND_IF_NEW_SUB)
        granted: Sequence[int | ReasonCode] = await client.subscribe([(topic, options) for topic in self.subscriptions])
        for topic, code in zip(self.subscriptions, granted, strict=True):
            value = code.value if isinstance(code, ReasonCode) else code
            if value >= 0x80:
                raise aiomqtt.MqttError(f"subscription to {topic!r} refused: {code}")
            if value < self.qos:
                log.warning("broker granted QoS %d for %r: messages may be lost", value, topic)

    # --- messages -------------------------------------------------------------------------

    def _received(self, conn: _Connection, message: aiomqtt.Message) -> None:
        """Called by paho's read callback for each PUBLISH; never blocks."""
        if not self._accepting:
            return  # closing: left unacked, the broker keeps it for the next session
        received = _Received(self, conn, message.topic.value, message.payload, message.mid, message.qos)
        if received.qos:
            conn.unacked.append(received)
        self._inbox.append(received)
        if self._idle and not self._paused:
            self._idle.popleft().set_result(None)  # one idle worker, not all of them

    def _wake_idle(self) -> None:
        for _ in range(min(len(self._inbox), len(self._idle))):
            self._idle.popleft().set_result(None)

    async def _work(self) -> None:
        inbox = self._inbox
        loop = asyncio.get_running_loop()
        while True:
            while not inbox or self._paused:
                idle = loop.create_future()
                self._idle.append(idle)
                try:
                    await idle
                finally:
                    if not idle.done():  # cancelled while idle
                        self._idle.remove(idle)
            received = inbox.popleft()
            try:
                await self._handle(received)
            except asyncio.CancelledError:
                raise
            except Exception:
                self.counters.inc("mqtt.internal_errors")
                log.exception("MQTT message on %s not handled", received.topic)
                if not received.settled:
                    received.settle()

    async def _handle(self, received: _Received) -> None:
        counters = self.counters
        counters.inc("mqtt.messages")
        peer = f"mqtt:{received.topic}"
        positions: list[Position] = []
        device_id = ""
        logouts = heartbeats = 0
        replies: list[CommandReply] = []
        for m in phone_mqtt.decode_publish(received.topic, received.payload):
            if isinstance(m, FrameError):
                counters.bad_input("mqtt.bad_messages", peer, m.reason)
                counters.inc("mqtt.bad_messages." + _REASON_SLUG.sub("_", m.reason.lower()).strip("_"))
            elif isinstance(m, Position):
                positions.append(m)
                device_id = m.device
            elif isinstance(m, Logout):
                logouts += 1
                device_id = m.device
            elif isinstance(m, Heartbeat):
                heartbeats += 1
                device_id = m.device
            elif isinstance(m, CommandReply):
                replies.append(m)
                device_id = m.device
            elif isinstance(m, Unsupported):
                counters.inc("mqtt.unsupported")
        if device_id:
            device = await self._lookup(device_id, peer)
            if device is not None:
                # Logouts and heartbeats only counted for now; the live-state layer will use them.
                if logouts:
                    counters.inc("mqtt.logouts", logouts)
                if heartbeats:
                    counters.inc("mqtt.heartbeats", heartbeats)
                for reply in replies:
                    counters.inc("mqtt.message_acks")
                    if self.downlink is not None:
                        self.downlink.seen(device.id, reply.reply_serial)
                if positions and self.attendance is not None and positions[0].extras.get("event") in phone_mqtt.EVENTS:
                    positions = [p for p in positions if await self.attendance(device, p)]
                    if not positions:
                        counters.inc("mqtt.fake_checkins")
                assert self.reports is not None  # a publisher subscribes to nothing, so receives nothing
                if positions and self.reports.submit(device, positions, received, peer=peer):
                    return  # acked by ReportSink's callback after the commit
        received.settle()

    async def _lookup(self, uid: str, peer: str) -> Device | None:
        delay = 0.1
        assert self.registry is not None
        while True:
            try:
                device = await self.registry.lookup(uid, phone_mqtt.PROTOCOL)
                break
            except (psycopg.OperationalError, psycopg_pool.PoolTimeout, OSError) as e:
                # The database is away: keep the message (unacked) and try again, as the batcher does.
                self.counters.inc("mqtt.lookup_errors")
                log.warning("device lookup for %s failed (%s); retrying in %.1fs", uid, e, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
        if device is None:
            self.counters.bad_input("mqtt.unknown_devices", peer, f"unknown device {uid}")
            return None
        if not device.enabled:
            self.counters.bad_input("mqtt.disabled_devices", peer, f"device {uid} is disabled")
            return None
        return device
