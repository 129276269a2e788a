"""The distributed mode on one machine: gateways, processors and an API as separate processes
(`telematics serve --role ...`), one nats-server with JetStream, one database.

- A processor killed with -9 mid-load: its partitions move to the other, every acked report is in
  the database exactly once, and no alert is raised twice.
- A gateway killed with -9: its terminals reconnect to the other gateway; nothing acked is lost.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import re
import secrets
import shutil
import signal
import tempfile
from collections.abc import AsyncIterator, Iterator
from datetime import datetime, timedelta
from pathlib import Path

import aiohttp
import aiomqtt
import psycopg
import pytest
from nats.js.errors import KeyNotFoundError, NoKeysError

from distributed import link
from distributed.leases import LEASES
from store import devices
from store.devices import DeviceRecord
from telematics.nats_server import NatsServer
from tests.server_process import ROOT, ServerProcess, free_port, scratch_database
from tests.test_durability import (
    LoadTerminal,
    _assert_all_acked_and_stored,
    _finish,
    _make_devices,
    _now,
    _stored,
    _until,
)
from tests.test_mqtt_ingest import _new_broker, _remove_broker

TOKEN = "distributed-" + secrets.token_hex(6)
PARTITIONS = 8
OVER_FROM, CYCLE = 61, 90  # LoadTerminal's speed is i % 90 km/h at fix i: over a muck truck's 60 from 61 to 89


@pytest.fixture
def nats_url() -> Iterator[str]:
    (ROOT / "var" / "tmp").mkdir(parents=True, exist_ok=True)
    directory = Path(tempfile.mkdtemp(prefix="nats-", dir=ROOT / "var" / "tmp"))
    server = NatsServer(directory, port=free_port())
    server.start()
    yield server.url
    server.stop()
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def database(admin_dsn: str) -> Iterator[str]:
    """A database of its own for the server processes of one test."""
    with scratch_database(admin_dsn, "telematics_distributed") as dsn:
        yield dsn


class Cluster:
    """The processes of one test, each a `ServerProcess` (killed and cleaned up at the end)."""

    def __init__(self, dsn: str, nats_url: str) -> None:
        self.dsn = dsn
        self.nats_url = nats_url
        self.parts: list[ServerProcess] = []

    def part(self, role: str, node: str, metrics_port: int = 0, mqtt_port: int | None = None) -> ServerProcess:
        extra = (
            f'[cluster]\nnats_url = "{self.nats_url}"\nembedded = false\npartitions = {PARTITIONS}\n'
            f'node = "{node}"\nlease_s = 3.0\nwarmup_s = 3600.0\nmetrics_port = {metrics_port}'
        )
        process = ServerProcess(self.dsn, TOKEN, role=role, extra=extra, mqtt_port=mqtt_port)
        self.parts.append(process)
        return process

    def cleanup(self) -> None:
        for process in self.parts:
            process.cleanup()


@pytest.fixture
async def cluster(database: str, nats_url: str) -> AsyncIterator[Cluster]:
    c = Cluster(database, nats_url)
    yield c
    c.cleanup()


async def _owners(nats_url: str) -> dict[int, str]:
    """Partition -> the processor holding its lease."""
    nc = await link.connect(nats_url, "test")
    try:
        kv = await nc.jetstream().key_value(LEASES)
        try:
            keys = await kv.keys()
        except NoKeysError:
            return {}
        out = {}
        for key in keys:
            try:
                entry = await kv.get(key)
            except KeyNotFoundError:  # let go (or lapsed) since it was listed
                continue
            if entry.value:
                out[int(key[1:])] = entry.value.decode()
        return out
    finally:
        await nc.close()


async def _until_owned(nats_url: str, nodes: set[str], within: float) -> dict[int, str]:
    deadline = asyncio.get_running_loop().time() + within
    while True:
        owners = await _owners(nats_url)
        if len(owners) == PARTITIONS and set(owners.values()) == nodes:
            return owners
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"partitions not owned by {nodes} within {within} s: {owners}")
        await asyncio.sleep(0.2)


def _same_time(shown: str | None, expected: str) -> bool:
    return shown is not None and datetime.fromisoformat(shown.replace("Z", "+00:00")) == datetime.fromisoformat(
        expected
    )


async def _until_stored(
    conn: psycopg.AsyncConnection, terms: list[LoadTerminal], ids: dict[str, int], parts: list[ServerProcess]
) -> None:
    """The processors write behind the gateways' acks: wait until every acked report is in."""
    deadline = asyncio.get_running_loop().time() + 30
    while True:
        stored = await _stored(conn, ids)
        if all(t.acked <= set(stored[t.uid]) for t in terms):
            return
        if asyncio.get_running_loop().time() > deadline:
            missing = {t.uid: sorted(t.acked - set(stored[t.uid])) for t in terms if t.acked - set(stored[t.uid])}
            where = {
                ids[u]: (ids[u] % PARTITIONS, len(m), m[0].isoformat(), m[-1].isoformat()) for u, m in missing.items()
            }
            logs = "\n".join(f"--- {p.role} {p.state_dir.name}\n{p.log_tail(4000)}" for p in parts)
            raise AssertionError(
                f"acked reports not stored within 30 s (device: partition, count, first, last): {where}\n{logs}"
            )
        await asyncio.sleep(0.2)


async def test_processor_killed_mid_load_its_partitions_move_nothing_lost_no_alert_twice(
    cluster: Cluster, nats_url: str
) -> None:
    async with asyncio.timeout(150):
        metrics_port = free_port()
        processors = [cluster.part("processor", "p1"), cluster.part("processor", "p2", metrics_port)]
        for p in processors:
            await p.start()
        api = cluster.part("api", "api")
        await api.start()
        gateways = [cluster.part("gateway", "g1"), cluster.part("gateway", "g2")]
        for g in gateways:
            await g.start()
        await _until_owned(nats_url, {"p1", "p2"}, 20)
        db = await psycopg.AsyncConnection.connect(cluster.dsn, autocommit=True)
        tasks: list[asyncio.Task[None]] = []
        try:
            ids = await _make_devices(db, 24, "muck")  # muck trucks: overspeed over 60 km/h for 10 s
            base = _now() - timedelta(minutes=20)
            terms = [
                LoadTerminal(uid, gateways[i % 2].ports["jt808"], base, window=4) for i, uid in enumerate(sorted(ids))
            ]
            stop = asyncio.Event()
            deadline = asyncio.get_running_loop().time() + 90
            tasks = [asyncio.create_task(t.run(stop, deadline)) for t in terms]

            def acked() -> int:
                return sum(len(t.acked) for t in terms)

            # Past the first overspeed of every truck (fix 71 raises it), so the killed processor has
            # raised alerts the newcomer must not raise again.
            await _until(lambda: min(len(t.acked) for t in terms) > 100, 40, "100 acked reports a truck", tasks)
            owners = await _owners(nats_url)
            processors[0].kill()
            moved = {p for p, node in owners.items() if node == "p1"}
            assert moved, owners
            at_kill = acked()
            await _until_owned(nats_url, {"p2"}, 20)
            await _until(lambda: acked() > at_kill + 2000, 40, "2000 more acked after the partitions moved", tasks)
            stop.set()
            await _finish(tasks, 30)
            await _until_stored(db, terms, ids, cluster.parts)
            _assert_all_acked_and_stored(terms, await _stored(db, ids))

            # Every overspeed alert is a true one (its start is a fix where a run over 60 km/h began) and none
            # is raised twice: no two of a truck start together or overlap.
            cur = await db.execute(
                "SELECT device_id, started_at, ended_at FROM alerts WHERE kind = 'overspeed' ORDER BY 1, 2"
            )
            alerts = await cur.fetchall()
            assert alerts
            by_device: dict[int, list[tuple[datetime, datetime | None]]] = {}
            for device_id, started, ended in alerts:
                assert (started - base).total_seconds() % CYCLE == OVER_FROM, started
                by_device.setdefault(device_id, []).append((started, ended))
            for spans in by_device.values():
                for (s1, e1), (s2, _) in itertools.pairwise(spans):
                    assert s1 != s2 and e1 is not None and e1 <= s2, spans
            on_moved = [d for d in ids.values() if d % PARTITIONS in moved]
            assert any(len(by_device.get(d, [])) >= 2 for d in on_moved)  # alerts on both sides of the kill
            cur = await db.execute("SELECT count(*) FROM alerts WHERE kind <> 'overspeed'")
            assert (await cur.fetchone()) == (0,)

            # The API's live map hears of the processors' commits at once, over NATS (the database's saved live
            # state would take its save and refresh intervals, 15 s).
            newest = {t.uid: max(t.acked).isoformat() for t in terms}

            async def live_newest() -> dict[str, str | None]:
                url = f"http://127.0.0.1:{api.ports['api']}/api/live"
                async with (
                    aiohttp.ClientSession(headers={"Authorization": f"Bearer {TOKEN}"}) as http,
                    http.get(url) as r,
                ):
                    assert r.status == 200
                    return {d["uid"]: d["time"] for d in (await r.json())["devices"] if d["uid"] in ids}

            shown: dict[str, str | None] = {}
            for _ in range(30):
                shown = await live_newest()
                if all(_same_time(shown.get(u), t) for u, t in newest.items()):
                    break
                await asyncio.sleep(0.1)
            assert all(_same_time(shown.get(u), t) for u, t in newest.items()), (shown, newest)
            # The survivor's own counters: it took every partition (its share, then the dead one's).
            async with (
                aiohttp.ClientSession(headers={"Authorization": f"Bearer {TOKEN}"}) as http,
                http.get(f"http://127.0.0.1:{metrics_port}/metrics") as r,
            ):
                assert r.status == 200
                text = await r.text()
            taken = re.search(r'telematics_events_total\{area="distributed",event="partitions_taken"\} (\S+)', text)
            assert taken is not None and float(taken.group(1)) >= PARTITIONS, text[-2000:]
            assert 'event="messages"' in text
            for p in [processors[1], api, *gateways]:
                assert "Traceback" not in p.log(), p.log_tail()
        finally:
            for task in tasks:
                task.cancel()
            await db.close()


async def test_gateway_killed_its_terminals_reconnect_to_the_other_nothing_acked_lost(
    cluster: Cluster, nats_url: str
) -> None:
    async with asyncio.timeout(120):
        processor = cluster.part("processor", "p1")
        await processor.start()
        gateways = [cluster.part("gateway", "g1"), cluster.part("gateway", "g2")]
        for g in gateways:
            await g.start()
        await _until_owned(nats_url, {"p1"}, 20)
        db = await psycopg.AsyncConnection.connect(cluster.dsn, autocommit=True)
        tasks: list[asyncio.Task[None]] = []
        try:
            ids = await _make_devices(db, 20, "sanitation")
            base = _now() - timedelta(minutes=20)
            ports = [g.ports["jt808"] for g in gateways]
            terms = [
                LoadTerminal(uid, ports[i % 2], base, window=8, alternates=[ports[(i + 1) % 2]])
                for i, uid in enumerate(sorted(ids))
            ]
            stop = asyncio.Event()
            deadline = asyncio.get_running_loop().time() + 80
            tasks = [asyncio.create_task(t.run(stop, deadline)) for t in terms]

            def acked() -> int:
                return sum(len(t.acked) for t in terms)

            await _until(lambda: acked() >= 2000, 30, "2000 reports acked before the kill", tasks)
            on_first = [t for t in terms if t.port == ports[0]]
            in_flight = sum(len(t.in_flight) for t in on_first)
            gateways[0].kill()
            assert in_flight > 0  # the kill hit reports on their way
            acked_before = {t.uid: set(t.acked) for t in terms}
            await _until(
                lambda: all(t.connections >= 2 and t.port == ports[1] for t in on_first),
                20,
                "the first gateway's terminals on the second",
                tasks,
            )
            await _until(
                lambda: all(len(t.acked) >= len(acked_before[t.uid]) + 50 for t in terms),
                30,
                "every terminal reported again",
                tasks,
            )
            stop.set()
            await _finish(tasks, 30)
            await _until_stored(db, terms, ids, cluster.parts)
            _assert_all_acked_and_stored(terms, await _stored(db, ids))
            for p in [processor, gateways[1]]:
                assert "Traceback" not in p.log(), p.log_tail()
        finally:
            for task in tasks:
                task.cancel()
            await db.close()


async def test_demo_in_the_distributed_mode_runs_every_part_and_stops_them(database: str) -> None:
    """`make run` with `cluster.demo = true`: nats-server, a gateway, two processors and an API as processes,
    the demo fleet online on the API's map; Ctrl-C (SIGTERM) stops every part."""
    (ROOT / "var" / "tmp").mkdir(parents=True, exist_ok=True)
    state = Path(tempfile.mkdtemp(prefix="demo-", dir=ROOT / "var" / "tmp"))
    nats_port, api_port, jt808_port = free_port(), free_port(), free_port()
    config = state / "telematics.toml"
    disabled = "".join(f"[{name}]\nenabled = false\n" for name in ("gt06", "h02", "nmea", "osmand", "mqtt"))
    config.write_text(
        f'state_dir = "{state}"\n[api]\nport = {api_port}\n[jt808]\nport = {jt808_port}\n{disabled}'
        f'[cluster]\ndemo = true\nnats_url = "nats://127.0.0.1:{nats_port}"\nlease_s = 3.0\n'
    )
    env = {k: v for k, v in os.environ.items() if k != "TELEMATICS_CONFIG"}
    env.update(TELEMATICS_DSN=database, TELEMATICS_API_TOKEN=TOKEN)
    out = state / "demo.out"
    with out.open("wb") as f:
        demo = await asyncio.create_subprocess_exec(
            str(ROOT / ".venv" / "bin" / "telematics"), "--config", str(config), "demo",
            stdout=f, stderr=asyncio.subprocess.STDOUT, env=env, start_new_session=True,
        )  # fmt: skip
    try:
        async with asyncio.timeout(150):
            while b"The distributed mode is running" not in out.read_bytes():
                assert demo.returncode is None, out.read_text(errors="replace")[-3000:]
                await asyncio.sleep(0.2)
            parts = [p for p in _processes_of(config) if p != demo.pid]
            assert len(parts) == 4  # an API, two processors, a gateway (the fleet is not `serve`)
            counts: dict[str, int] = {}
            deadline = asyncio.get_running_loop().time() + 40
            async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {TOKEN}"}) as http:
                while counts.get("online") != 60:
                    if asyncio.get_running_loop().time() > deadline:
                        logs = {p.name: p.read_text(errors="replace")[-1500:] for p in (state / "demo-logs").iterdir()}
                        raise AssertionError(f"not all online in 40 s: {counts}\n{logs}")
                    await asyncio.sleep(0.5)
                    async with http.get(f"http://127.0.0.1:{api_port}/api/live/counts") as r:
                        counts = (await r.json())["total"]
            demo.send_signal(signal.SIGTERM)
            try:
                code = await asyncio.wait_for(demo.wait(), 30)
            except TimeoutError:
                logs = {p.name: p.read_text(errors="replace")[-1500:] for p in (state / "demo-logs").iterdir()}
                raise AssertionError(f"the demo did not stop in 30 s: {logs}") from None
            assert code == 0, out.read_text(errors="replace")[-3000:]
            assert not [p for p in parts if _alive(p)]  # the demo waits for each part to end
            for log in (state / "demo-logs").iterdir():
                assert "Traceback" not in log.read_text(errors="replace"), log.name
    finally:
        if demo.returncode is None:
            os.killpg(demo.pid, signal.SIGKILL)
        for pid in _processes_of(config):
            os.kill(pid, signal.SIGKILL)
        NatsServer(state / "nats", port=nats_port).stop()
        shutil.rmtree(state, ignore_errors=True)


def _processes_of(config: Path) -> list[int]:
    """The processes started with this config file (`telematics --config <it> ...`)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                argv = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if str(config).encode() in argv and b"serve" in argv:
                found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"


async def test_phones_over_mqtt_through_two_gateways_are_stored_once(cluster: Cluster, nats_url: str) -> None:
    """Phones publish to the broker; the gateways share the subscription (each message to one of them)."""
    broker = _new_broker()
    try:
        async with asyncio.timeout(90):
            processor = cluster.part("processor", "p1")
            await processor.start()
            metrics = [free_port(), free_port()]
            gateways = []
            for i, port in enumerate(metrics):
                gateway = cluster.part("gateway", f"g{i + 1}", port, mqtt_port=broker.port)
                await gateway.start()
                gateways.append(gateway)
            await _until_owned(nats_url, {"p1"}, 20)
            db = await psycopg.AsyncConnection.connect(cluster.dsn, autocommit=True)
            try:
                uids = [f"insp-{secrets.token_hex(4)}" for _ in range(12)]
                await devices.upsert_devices(db, [DeviceRecord(uid=u, kind="inspector", protocol="mqtt") for u in uids])
                base = _now() - timedelta(minutes=10)
                sent = {u: [base + timedelta(seconds=k) for k in range(25)] for u in uids}
                # A gateway subscribes in the background after its banner: publish once both have.
                await _until(lambda: all("MQTT subscribed" in g.log() for g in gateways), 20, "both subscribed")
                async with aiomqtt.Client(broker.host, broker.port) as client:
                    for k in range(25):
                        for u in uids:
                            body = {
                                "_type": "location",
                                "lat": 22.5 + k / 1e4,
                                "lon": 114.0,
                                "tst": int(sent[u][k].timestamp()),
                            }
                            await client.publish(f"owntracks/inspector/{u}", json.dumps(body).encode(), qos=1)
                ids = {u: (await devices.by_uid(db, u)).id for u in uids}  # type: ignore[union-attr]
                deadline = asyncio.get_running_loop().time() + 30
                while True:
                    stored = await _stored(db, ids)
                    if all(set(stored[u]) == set(sent[u]) for u in uids):
                        break
                    if asyncio.get_running_loop().time() > deadline:
                        logs = "\n".join(p.log_tail(2000) for p in cluster.parts)
                        raise AssertionError(f"phones' fixes not all stored in 30 s:\n{logs}")
                    await asyncio.sleep(0.2)
                assert all(n == 1 for u in uids for n in stored[u].values())
                # Each gateway took some of them (a shared subscription, not two copies).
                took = [await _counter(port, "mqtt", "messages") for port in metrics]
                assert all(n > 0 for n in took) and sum(took) == 12 * 25, took
            finally:
                await db.close()
    finally:
        _remove_broker(broker)


async def _counter(port: int, area: str, event: str) -> float:
    async with (
        aiohttp.ClientSession(headers={"Authorization": f"Bearer {TOKEN}"}) as http,
        http.get(f"http://127.0.0.1:{port}/metrics") as r,
    ):
        text = await r.text()
    found = re.search(rf'telematics_events_total\{{area="{area}",event="{event}"\}} (\S+)', text)
    return float(found.group(1)) if found else 0.0
