"""Wires the server together: database, batcher, listeners, API, retention."""

from __future__ import annotations

import asyncio
import logging
import os
import resource
import socket
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import fields
from datetime import UTC, datetime, timedelta
from types import ModuleType
from typing import Any

import msgpack
from aiohttp import web
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from psycopg_pool import AsyncConnectionPool

from access import audit
from alerts import coverage_routes
from alerts import routes as alerts_routes
from alerts.coverage_job import CoverageJob
from alerts.engine import AlertEngine
from alerts.listeners import Listener, tell
from alerts.offline import OfflineWatcher
from alerts.outputs import AlertOutputs
from attendance import admin_routes as attendance_admin
from attendance import report_routes as attendance_reports
from attendance.job import AttendanceJob
from attendance.phone_events import CheckinDesk
from distributed import link, wire
from distributed.gateway import JetStreamWriter, SeenPublisher
from distributed.leases import Leases
from distributed.processor import Processor
from geofence.service import GeofenceService
from geofence.transitions import Transition
from ingest.background import Background
from ingest.batcher import Batcher, BatchWriter, FlowGate
from ingest.counters import Counters
from ingest.downlink import Downlink
from ingest.jt808_lane import Jt808Lane
from ingest.jt808_server import Jt808Connection
from ingest.metrics import IngestMetrics
from ingest.mqtt_ingest import MqttIngest
from ingest.osmand_http import OsmAndListener
from ingest.ratelimit import ConnectLimiter
from ingest.reports import ReportSink
from ingest.terminal import ListenerContext, TcpListener, TerminalConnection
from protocols import gt06, h02, jt808, nmea, phone_mqtt
from replay import query_routes
from replay import routes as replay_routes
from store import db, messages, partition_fixes, positions
from store.cluster import Cluster
from store.migrate import migrate
from store.positions import PositionWriter
from telematics import openapi
from telematics.broker import Broker
from telematics.config import TCP_PROTOCOLS, ListenerSettings, Settings
from telematics.http import make_app
from telematics.nats_server import NatsServer, NatsServerError
from tracking import messages_api
from tracking import routes as tracking_routes
from tracking.live import LiveState
from tracking.live_api import LIVE, LiveHub
from tracking.live_service import LiveService
from tracking.registry import Registry
from web import routes as web_routes

log = logging.getLogger("telematics")


def raise_open_files_limit() -> int:
    """Every terminal is a socket: take the hard limit on open files as the soft one (the common
    default soft limit of 1,024 would refuse the 1,021st terminal). The soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else 1 << 20
    if soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError) as e:
            log.warning("could not raise the open files limit from %d to %d: %s", soft, target, e)
    return soft


def cluster_for(settings: Settings) -> Cluster:
    return Cluster(settings.embedded_db_path, port=settings.database.embedded_port)


def dsn_for(settings: Settings) -> str:
    return settings.database.dsn or cluster_for(settings).dsn


async def prepare_database(settings: Settings) -> str:
    """Start the embedded cluster when it is the one in use, check TimescaleDB, apply migrations."""
    if settings.uses_embedded_db:
        await asyncio.to_thread(cluster_for(settings).start)
    dsn = dsn_for(settings)
    conn = await db.connect(dsn, autocommit=True)
    try:
        await db.check_timescaledb(conn)
        applied = await migrate(conn)
        for mig in applied:
            log.info("applied migration %04d %s", mig.version, mig.name)
        await positions.set_chunk_interval(conn, timedelta(hours=settings.database.chunk_interval_hours))
    finally:
        await conn.close()
    return dsn


def _tcp_listener(
    name: str,
    s: Settings,
    reports: ReportSink,
    registry: Registry,
    counters: Counters,
    downlink: Downlink,
    seen: Callable[[int], None],
) -> TcpListener:
    codecs: dict[str, tuple[ModuleType, Callable[[], object], type[TerminalConnection]]] = {
        "jt808": (jt808, lambda: jt808.Jt808Decoder(lenient=s.jt808.lenient), Jt808Connection),
        "gt06": (gt06, gt06.Gt06Decoder, TerminalConnection),
        "h02": (h02, h02.H02Decoder, TerminalConnection),
        "nmea": (nmea, nmea.NmeaDecoder, TerminalConnection),
    }
    codec, make_decoder, connection = codecs[name]
    connects = ConnectLimiter(s.ingest.connects_per_ip_per_s, s.ingest.connects_burst)
    ctx = ListenerContext(reports, registry, counters, codec, make_decoder, connects, downlink, seen)
    factory: Callable[[set[Any]], TerminalConnection] = lambda conns: connection(ctx, conns)  # noqa: E731
    if name == "jt808" and s.jt808.bulk:
        lane = Jt808Lane(reports, delay=s.jt808.bulk_delay_ms / 1000)
        factory = lambda conns: Jt808Connection(ctx, conns, lane)  # noqa: E731
    return TcpListener(name, factory, counters, idle_timeout=getattr(s, name).idle_timeout_s)


ROLES = ("all", "gateway", "processor", "api")


class Server:
    """One process: every role (`all`), or one part of the distributed mode. `start` returns once all
    listeners are up."""

    def __init__(self, settings: Settings, *, worker: int = 0, reuse_port: bool = False, role: str = "all") -> None:
        if role not in ROLES:
            raise ValueError(f"role must be one of {', '.join(ROLES)}")
        self.settings = settings
        self.worker = worker  # worker 0 also runs the once-per-installation jobs (retention)
        self.reuse_port = reuse_port
        # all: the single-node server. gateway, processor, api: the distributed mode's parts (distributed/).
        self.role = role
        self.node = settings.cluster.node or f"{socket.gethostname()}-{os.getpid()}"
        self.nc: NatsClient | None = None
        self.js: JetStreamContext | None = None
        self.processor: Processor | None = None
        self.seen_publisher: SeenPublisher | None = None
        self._publishes = Background("a publish to NATS", lambda _: self.counters.inc("distributed.publish_failures"))
        self.counters = Counters()
        self.metrics = IngestMetrics(self.counters)
        self.pool: AsyncConnectionPool | None = None
        self.batcher: Batcher | None = None
        self.listeners: list[TcpListener] = []
        self.http_listeners: list[OsmAndListener] = []
        self.mqtt: MqttIngest | None = None
        self.downlink: Downlink | None = None
        self.live: LiveService | None = None
        self.hub: LiveHub | None = None
        self.geofence: GeofenceService | None = None
        self.alerts: AlertEngine | None = None
        self.offline: OfflineWatcher | None = None
        self.coverage: CoverageJob | None = None
        self.attendance: AttendanceJob | None = None
        self.alert_outputs: AlertOutputs | None = None
        self.runner: web.AppRunner | None = None
        self.ports: dict[str, int] = {}
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        s = self.settings
        role = self.role
        log.info("open files limit: %d", raise_open_files_limit())
        dsn = await prepare_database(s)
        self.pool = AsyncConnectionPool(dsn, min_size=1, max_size=10, open=False, kwargs=db.connection_settings(dsn))
        await self.pool.open(wait=True)
        if role != "all":
            await self._connect_nats()
        if role in ("all", "gateway", "processor"):
            self._start_batcher(dsn)
        state = LiveState(
            {f.name: getattr(s.live.online_timeout_s, f.name) for f in fields(s.live.online_timeout_s)},
            moving_kmh=s.live.moving_kmh,
        )
        if role != "gateway":
            self.live = LiveService(self.pool, state, save_s=s.live.save_s, shared=s.workers > 1 or role != "all")
            await self.live.start()
            jobs = role == "api" or (role == "all" and self.worker == 0)
            await self._start_rules(state, judge_fixes=role != "api", jobs=jobs)
        if role == "processor":
            await self._start_processor()
        if role in ("all", "gateway"):
            await self._start_terminals(dsn)
        if role == "api":
            await self._start_publisher(dsn)
        if role in ("all", "api"):
            await self._start_api(dsn)
        if role == "api":  # the processors' live traffic, into this process's map, alert panel and outputs
            await self._follow_processors()
        elif role != "all" and s.cluster.metrics_port:
            await self._serve_metrics(s.cluster.metrics_port)

    async def _connect_nats(self) -> None:
        c = self.settings.cluster
        if c.embedded:
            nats_server = NatsServer.for_url(self.settings.state_path / "nats", c.nats_url)
            try:
                await asyncio.to_thread(nats_server.start)
            except NatsServerError:
                if not nats_server.running():  # another role on this machine may have just started it
                    raise
        self.nc = await link.connect(c.nats_url, f"telematics-{self.role}-{self.node}")
        self.js = self.nc.jetstream()
        await link.ensure_stream(self.js, c.stream_max_age_h)

    def _start_batcher(self, dsn: str) -> None:
        s = self.settings

        async def connect_writer() -> BatchWriter:
            if self.role == "gateway":
                assert self.js is not None
                return JetStreamWriter(self.js, s.cluster.partitions, timeout_s=s.cluster.publish_timeout_s)
            return PositionWriter(await db.connect(dsn, autocommit=True))

        self.batcher = Batcher(
            connect_writer,
            self.counters,
            max_rows=s.ingest.batch_max_rows,
            max_delay=s.ingest.batch_max_delay_ms / 1000,
            max_pending=s.ingest.max_pending_rows,
            observe=self.metrics.observe_batch,
            writers=s.ingest.writers,
        )
        self.metrics.watch_batcher(self.batcher)
        self.batcher.start()

    async def _start_rules(self, state: LiveState, *, judge_fixes: bool, jobs: bool) -> None:
        """The geofence and the alert engine; fed by the committed batches (`judge_fixes`) and running the
        jobs that judge every device at once (`jobs`: in one process of all)."""
        s = self.settings
        assert self.pool is not None and self.live is not None
        if self.batcher is not None:
            self.batcher.on_commit.append(self.live.committed)
        self.geofence = GeofenceService(
            self.pool, state.device_info, resolution=s.database.h3_resolution, gather_ms=s.alerts.gather_ms
        )
        self.geofence.consumers.append(self._count_transitions)
        await self.geofence.start()
        self.alerts = AlertEngine(self.pool, self.geofence, state.device_info)
        await self.alerts.start()
        if jobs:
            self.offline = self.alerts.watch_offline(state)  # silence is judged once, over every device
            self.coverage = CoverageJob(self.pool, self.geofence, self.alerts.listeners)  # from the stored fixes
            self._tasks.append(asyncio.create_task(self.coverage.run_forever(), name="coverage"))
            self.attendance = AttendanceJob(self.pool, s.attendance.zone(), self.alerts.listeners)
            self._tasks.append(asyncio.create_task(self.attendance.run(), name="attendance"))
        if judge_fixes and self.batcher is not None:
            self.geofence.consumers.append(self.alerts.transitions)
            self.geofence.fix_consumers.append(self.alerts.committed)
            self.batcher.on_commit.append(self.geofence.committed)

    async def _start_processor(self) -> None:
        c = self.settings.cluster
        assert self.js is not None and self.nc is not None and self.batcher is not None and self.live is not None
        nc, live = self.nc, self.live
        self.batcher.on_commit.append(
            lambda batch: self._publishes.spawn(nc.publish(wire.LIVE_SUBJECT, wire.encode_batch(batch)))
        )
        assert self.alerts is not None
        self.alerts.listeners.append(
            lambda alert: self._publishes.spawn(nc.publish(wire.ALERTS_SUBJECT, wire.encode_alert(alert)))
        )
        await nc.subscribe(wire.SEEN_SUBJECT, cb=self._heard(live))
        gate = FlowGate()
        self.batcher.register(gate)
        leases = await Leases.open(self.js, self.node, c.partitions, c.lease_s)
        self.processor = Processor(
            self.js, leases, self.batcher.submit_batch, gate, self.counters, self._warm, lease_s=c.lease_s
        )
        await self.processor.start()

    async def _warm(self, partition: int) -> None:
        """Before consuming a partition taken over: its recent stored fixes through the geofence and the rules,
        so their runs and transitions are where the previous owner left them (alerts it had raised come out
        the same and are not raised again)."""
        c = self.settings.cluster
        assert self.pool is not None and self.geofence is not None
        if c.warmup_s <= 0:
            return
        now = datetime.now(UTC)
        async with self.pool.connection() as conn:
            batch = await partition_fixes.read(
                conn, partition, c.partitions, now - timedelta(seconds=c.warmup_s),
                now + timedelta(seconds=self.settings.ingest.max_future_s),
            )  # fmt: skip
        if len(batch):
            self.geofence.flush()  # what waits is older news than the replay, which the engine would take as late
            self.geofence.committed(batch)
            self.geofence.flush()
        log.info("partition %d: %d stored fixes replayed to the rules", partition, len(batch))

    def _heard(self, live: LiveService) -> Callable[[Msg], Awaitable[None]]:
        async def heard(msg: Msg) -> None:
            try:
                ids = msgpack.unpackb(msg.data)
                for device_id in ids:
                    live.seen(int(device_id))
            except (ValueError, TypeError, msgpack.UnpackException):
                self.counters.inc("distributed.bad_messages")

        return heard

    async def _follow_processors(self) -> None:
        assert self.nc is not None and self.live is not None
        live = self.live

        async def committed(msg: Msg) -> None:
            try:
                live.committed(wire.decode_batch(msg.data))
            except wire.WireError as e:
                self.counters.inc("distributed.bad_messages")
                log.error("a live batch refused: %s", e)

        async def alert(msg: Msg) -> None:
            try:
                changed = wire.decode_alert(msg.data)
            except wire.WireError as e:
                self.counters.inc("distributed.bad_messages")
                log.error("an alert change refused: %s", e)
                return
            assert self.hub is not None and self.alert_outputs is not None
            tell([self.hub.alert, self.alert_outputs.changed], [changed])

        await self.nc.subscribe(wire.LIVE_SUBJECT, cb=committed)
        await self.nc.subscribe(wire.SEEN_SUBJECT, cb=self._heard(live))
        await self.nc.subscribe(wire.ALERTS_SUBJECT, cb=alert)

    async def _start_publisher(self, dsn: str) -> None:
        """The API process of the distributed mode sends what goes out once: messages to phones and alert
        changes over MQTT (a connection that subscribes to nothing; the gateways take the phones' reports)."""
        s = self.settings
        assert self.pool is not None
        self.downlink = Downlink(self.pool)
        if s.mqtt.enabled:
            self.mqtt = self._mqtt_client(None, None, f"{s.mqtt.client_id}-api-{self.node}", ())  # publishes only
            self.downlink.publish_phone = self.mqtt.publish_message
            self._tasks.append(asyncio.create_task(self._start_mqtt(self.mqtt), name="mqtt-start"))
        await self.downlink.start(dsn)

    async def _start_terminals(self, dsn: str) -> None:
        """The listeners: TCP protocols, OsmAnd over HTTP, phones over MQTT."""
        s = self.settings
        assert self.pool is not None and self.batcher is not None
        registry = Registry(self.pool, register_unknown=s.ingest.unknown_devices == "register")
        reports = ReportSink(
            self.batcher,
            self.counters,
            h3_resolution=s.database.h3_resolution,
            max_future=timedelta(seconds=s.ingest.max_future_s),
        )
        if self.live is not None:
            registry.on_device = self.live.know
            seen = self.live.seen
        else:  # a gateway: heartbeats go to the processors and the API
            assert self.nc is not None
            self.seen_publisher = SeenPublisher(self.nc)
            self.seen_publisher.start()
            seen = self.seen_publisher.seen
        self.downlink = Downlink(self.pool)
        await self.downlink.start(dsn)
        for name in TCP_PROTOCOLS:
            listener_settings: ListenerSettings = getattr(s, name)
            if not listener_settings.enabled:
                continue
            listener = _tcp_listener(name, s, reports, registry, self.counters, self.downlink, seen)
            self.ports[name] = await listener.start(
                listener_settings.host, listener_settings.port, reuse_port=self.reuse_port
            )
            self.listeners.append(listener)
            self.metrics.watch_connections(name, listener.connections.__len__)
        if s.osmand.enabled:
            osmand = OsmAndListener(
                reports,
                registry,
                self.counters,
                speed_unit=s.osmand.speed_unit,
                max_body=s.osmand.max_body,
                request_timeout=s.osmand.request_timeout_s,
                idle_timeout=s.osmand.idle_timeout_s,
            )
            self.ports["osmand"] = await osmand.start(s.osmand.host, s.osmand.port, reuse_port=self.reuse_port)
            self.http_listeners.append(osmand)

        if s.mqtt.enabled:
            # One process: one subscriber with one persistent session. Several workers: one each, on
            # shared subscriptions, so the broker spreads the phones over them (one core is not enough
            # for MQTT parsing past about 4,000 messages a second).
            shared = s.workers > 1 or self.role == "gateway"
            self.mqtt = self._mqtt_client(
                reports,
                registry,
                f"{s.mqtt.client_id}-{self.node if self.role == 'gateway' else self.worker}"
                if shared
                else s.mqtt.client_id,
                [f"$share/{s.mqtt.shared_group}/{t}" for t in phone_mqtt.SUBSCRIPTIONS]
                if shared
                else phone_mqtt.SUBSCRIPTIONS,
            )
            self.mqtt.downlink = self.downlink
            self.mqtt.attendance = CheckinDesk(self.pool, s.attendance.zone(), self.mqtt.publish)
            if self.worker == 0 and self.role == "all":  # messages to phones go out once (distributed: the API)
                self.downlink.publish_phone = self.mqtt.publish_message
            self._tasks.append(asyncio.create_task(self._start_mqtt(self.mqtt), name="mqtt-start"))

    async def _start_api(self, dsn: str) -> None:
        s = self.settings
        assert self.pool is not None and self.live is not None and self.alerts is not None
        app = make_app(
            s.api_token(),
            self.pool,
            tracking_routes.routes()
            + alerts_routes.routes()
            + coverage_routes.routes()
            + audit.routes()
            + attendance_admin.routes()
            + attendance_reports.routes()
            + query_routes.routes()
            + replay_routes.routes()
            + self.metrics.routes()
            + web_routes.routes(s.web)
            + openapi.routes(),
        )
        app[tracking_routes.POOL] = self.pool
        app[messages_api.POOL] = self.pool
        self.hub = LiveHub(self.live, self.pool, max_rate=s.live.ws_max_rate)
        await self.hub.start(dsn)
        app[LIVE] = self.hub
        app[alerts_routes.POOL] = self.pool
        app[audit.POOL] = self.pool
        app[attendance_admin.ATTENDANCE] = attendance_admin.Attendance(self.pool, s.attendance.zone())
        app[query_routes.POOL] = self.pool
        app[query_routes.RESOLUTION] = s.database.h3_resolution
        app[replay_routes.POOL] = self.pool
        self.alerts.listeners.append(self.hub.alert)
        # Every worker sends what its own engine raises and its own API acknowledges: MQTT on its connection.
        await self._start_alert_outputs()
        assert self.alert_outputs is not None
        acknowledged: list[Listener] = [self.hub.alert, self.alert_outputs.acknowledged]
        app[alerts_routes.ACK_LISTENERS] = acknowledged
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, s.api.host, s.api.port, reuse_address=True, reuse_port=self.reuse_port or None)
        await site.start()
        self.ports["api"] = int(self.runner.addresses[0][1])
        if self.worker == 0:
            self._tasks.append(asyncio.create_task(self._retention(), name="retention"))
            self._tasks.append(asyncio.create_task(self._expire_messages(), name="message-expiry"))

    async def _serve_metrics(self, port: int) -> None:
        """A gateway's or processor's own counters (reports in, messages, partitions taken and lost...)."""
        assert self.pool is not None
        self.runner = web.AppRunner(make_app(self.settings.api_token(), self.pool, self.metrics.routes()))
        await self.runner.setup()
        await web.TCPSite(self.runner, self.settings.api.host, port, reuse_address=True).start()
        self.ports["metrics"] = port

    async def _start_alert_outputs(self) -> None:
        """MQTT and webhook outputs of what this process's engine raises and its API acknowledges."""
        s = self.settings
        assert self.alerts is not None
        a = s.alerts
        self.alert_outputs = AlertOutputs(
            self.counters.inc,
            publish=self.mqtt.publish if self.mqtt is not None else None,
            topic_prefix=a.mqtt_topic_prefix,
            webhook_url=a.webhook_url,
            webhook_secret=a.webhook_secret,
            webhook_timeout_s=a.webhook_timeout_s,
            webhook_retries=a.webhook_retries,
            webhook_retry_delay_s=a.webhook_retry_delay_s,
            queue_size=a.queue_size,
        )
        await self.alert_outputs.start()
        self.alerts.listeners.append(self.alert_outputs.changed)

    def _mqtt_client(
        self, reports: ReportSink | None, registry: Registry | None, client_id: str, subscriptions: Sequence[str]
    ) -> MqttIngest:
        m = self.settings.mqtt
        return MqttIngest(
            reports,
            registry,
            self.counters,
            host=m.host,
            port=m.port,
            client_id=client_id,
            subscriptions=subscriptions,
            qos=m.qos,
            username=m.username or None,
            password=m.password or None,
            keepalive_s=m.keepalive_s,
            session_expiry_s=m.session_expiry_s,
            receive_maximum=m.receive_maximum,
            reconnect_max_s=float(m.reconnect_max_s),
        )

    async def _start_mqtt(self, ingest: MqttIngest) -> None:
        """Start the embedded broker if it is ours, then subscribe; a broker that is away at start
        delays only the phones over MQTT, not the server."""
        s = self.settings.mqtt
        if s.embedded and self.worker == 0:  # the others wait for it below
            await asyncio.to_thread(Broker(self.settings.state_path / "mosquitto", port=s.port, host=s.host).start)
        delay = 1.0
        while True:
            try:
                await ingest.start()
                return
            except Exception as e:  # the broker is away or refuses us: say so, keep trying
                log.warning("MQTT broker %s:%d not available (%s); retrying in %.0fs", s.host, s.port, e, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, float(s.reconnect_max_s))

    def terminal_ports(self) -> str:
        transport = {"osmand": "http"}
        return ", ".join(
            f"{name} {transport.get(name, 'tcp')} {port}"
            for name, port in self.ports.items()
            if name not in ("api", "metrics")
        )

    async def _retention(self) -> None:
        assert self.pool is not None
        age = timedelta(days=self.settings.database.retention_days)
        while True:
            try:
                async with self.pool.connection() as conn:
                    dropped = await positions.drop_older_than(conn, age)
                if dropped:
                    log.info("retention: dropped %d chunks older than %s", len(dropped), age)
            except Exception:
                log.exception("retention run failed; trying again at the next interval")
            await asyncio.sleep(self.settings.database.retention_check_minutes * 60)

    def _count_transitions(self, found: list[Transition]) -> None:
        # Until the alert rules take them: counted, and logged at debug level.
        for t in found:
            self.counters.inc(f"geofence.{'enter' if t.entered else 'exit'}{'_late' if t.late else ''}")
            log.debug("device %d %s zone %d", t.device_id, "entered" if t.entered else "left", t.zone_id)

    async def _expire_messages(self) -> None:
        assert self.pool is not None
        while True:
            try:
                async with self.pool.connection() as conn:
                    await messages.expire(conn)
            except Exception:
                log.exception("expiring messages failed; trying again shortly")
            await asyncio.sleep(30)

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        if self.processor is not None:
            await self.processor.close()  # its partitions drained (committed and acked) and let go
        if self.downlink is not None:
            await self.downlink.close()
        if self.hub is not None:
            await self.hub.close()
        for listener in self.listeners:
            await listener.close()
        if self.alert_outputs is not None:
            await self.alert_outputs.close()  # before the MQTT connection it publishes on
        if self.mqtt is not None:
            await self.mqtt.close()
        for http_listener in self.http_listeners:
            await http_listener.close()  # before the batcher: pending answers still get their commit
        if self.runner is not None:
            await self.runner.cleanup()
        if self.batcher is not None:
            await self.batcher.close()
        if self.seen_publisher is not None:
            await self.seen_publisher.close()
        if self.live is not None:
            await self.live.close()
        if self.geofence is not None:
            await self.geofence.close()
        if self.alerts is not None:
            await self.alerts.close()
        await self._publishes.wait()
        if self.nc is not None:
            try:
                await self.nc.drain()
            except Exception as e:  # NATS away: nothing of ours is left to flush (acks wait for nobody)
                log.warning("NATS connection not drained (%r); closing it", e)
                await self.nc.close()
        if self.pool is not None:
            await self.pool.close()
