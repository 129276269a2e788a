"""Durability of the ingest pipeline, against the real server process, real sockets, real PostgreSQL.

A terminal that got an ack may forget the report: so whatever was acked must be in the database,
once, whatever happens to the server or the database after the ack. Whatever was not acked the
terminal sends again, and that must be stored once as well.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import socket
from collections import Counter, deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta

import aiohttp
import psycopg
import pytest

from protocols import jt808
from store import devices
from store.cluster import Cluster
from store.devices import DeviceRecord
from tests.server_process import ROOT, ServerProcess, children, free_port, process_state, rss_kb, scratch_database
from tests.terminal import Terminal

# Opens a connection to look at what the server stored (closed after the test).
Looker = Callable[[str], Awaitable[psycopg.AsyncConnection]]

TOKEN = "durability-" + secrets.token_hex(6)


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def _uid() -> str:
    return "13" + str(secrets.randbelow(10**9)).rjust(9, "0")


def _body(fix: datetime, i: int) -> bytes:
    return jt808.encode_location_body(time=fix, lat=22.5 + (i % 1000) / 10_000, lon=114.0, speed_kmh=i % 90)


class LoadTerminal:
    """A JT/T 808 terminal that reports as fast as acks come back, `window` reports in flight, and
    remembers which fixes were acknowledged. When its connection breaks it reconnects, authenticates
    and sends again whatever was not acknowledged, as terminals in the field do."""

    def __init__(self, uid: str, port: int, base: datetime, *, window: int = 8, alternates: Sequence[int] = ()) -> None:
        self.terminal = Terminal(uid)
        self.port = port
        self.ports = [port, *alternates]  # a connection refused: the next one (another gateway behind a balancer)
        self.base = base
        self.window = window
        self.code = ""
        self.count = 0  # fixes made so far: fix i is base + i seconds
        self.in_flight: dict[int, datetime] = {}  # serial of the frame -> its fix
        self.resend: deque[datetime] = deque()
        self.sent: set[datetime] = set()
        self.acked: set[datetime] = set()
        self.ack_times: list[float] = []
        self.refused: list[tuple[datetime, int]] = []
        self.unexpected: list[tuple[int, int, int]] = []
        self.connections = 0
        self.connected = False

    @property
    def uid(self) -> str:
        return self.terminal.device

    async def run(self, stop: asyncio.Event, deadline: float) -> None:
        """Report until `stop`, then until everything sent is acked; reconnect whenever cut off."""
        loop = asyncio.get_running_loop()
        while True:
            await self._connect(deadline)
            try:
                if await self._pump(stop, deadline):
                    await self.terminal.close()
                    return
            except TimeoutError:
                raise AssertionError(f"{self.uid}: no ack in time, {len(self.in_flight)} in flight") from None
            except (ConnectionError, asyncio.IncompleteReadError, OSError, RuntimeError):
                # The server went away (uvloop raises RuntimeError for a write on a closed transport).
                pass
            self.connected = False
            # What was in flight was never acked: it goes out again first, oldest first.
            self.resend.extendleft(reversed(list(self.in_flight.values())))
            self.in_flight.clear()
            with contextlib.suppress(Exception):
                await self.terminal.close()
            if loop.time() > deadline:
                raise AssertionError(f"{self.uid}: still cut off at the deadline")

    async def _connect(self, deadline: float) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                await self.terminal.connect(self.port)
                if not self.code:
                    result, self.code = await self.terminal.register()
                    assert result == 0 and self.code, f"{self.uid}: registration refused ({result})"
                result = await self.terminal.authenticate(self.code)
                assert result == 0, f"{self.uid}: authentication refused ({result})"
                self.connections += 1
                self.connected = True
                return
            except (ConnectionError, asyncio.IncompleteReadError, OSError, RuntimeError):
                # Refused while the server is down, or cut off during the handshake: try again.
                with contextlib.suppress(Exception):
                    await self.terminal.close()
                self.port = self.ports[(self.ports.index(self.port) + 1) % len(self.ports)]
                if loop.time() > deadline:
                    raise AssertionError(f"{self.uid}: could not connect before the deadline") from None
                await asyncio.sleep(0.05)

    def _next_fix(self, stop: asyncio.Event) -> datetime | None:
        if self.resend:
            return self.resend.popleft()
        if stop.is_set():
            return None
        fix = self.base + timedelta(seconds=self.count)
        self.count += 1
        return fix

    async def _pump(self, stop: asyncio.Event, deadline: float) -> bool:
        """True once stopped with nothing left unacknowledged; raises when the connection breaks."""
        t = self.terminal
        assert t.writer is not None
        loop = asyncio.get_running_loop()
        while True:
            while len(self.in_flight) < self.window:
                fix = self._next_fix(stop)
                if fix is None:
                    break
                serial, frame = t.frame(jt808.MSG_LOCATION, _body(fix, int((fix - self.base).total_seconds())))
                self.in_flight[serial] = fix
                self.sent.add(fix)
                t.writer.write(frame)
            await t.writer.drain()
            if not self.in_flight:
                return True
            reply_serial, reply_id, result = jt808.parse_general_response(
                await t.recv(max(0.1, deadline - loop.time()))
            )
            fix = self.in_flight.pop(reply_serial, None) if reply_id == jt808.MSG_LOCATION else None
            if fix is None:
                self.unexpected.append((reply_serial, reply_id, result))
            elif result == jt808.RESULT_OK:
                self.acked.add(fix)
                self.ack_times.append(loop.time())
            else:
                self.refused.append((fix, result))


# --- helpers ----------------------------------------------------------------------------------


@pytest.fixture
def database(admin_dsn: str) -> Iterator[str]:
    """A database of its own for the server processes of one test."""
    with scratch_database(admin_dsn, "telematics_durability") as dsn:
        yield dsn


@pytest.fixture
async def looker() -> AsyncIterator[Looker]:
    """Opens connections that look at what the server stored; closes them after the test."""
    opened: list[psycopg.AsyncConnection] = []

    async def open_(dsn: str) -> psycopg.AsyncConnection:
        conn = await psycopg.AsyncConnection.connect(dsn, autocommit=True)
        opened.append(conn)
        return conn

    yield open_
    for conn in opened:
        await conn.close()


async def _make_devices(conn: psycopg.AsyncConnection, n: int, kind: str = "sanitation") -> dict[str, int]:
    """n new JT/T 808 devices of a kind: uid -> device id."""
    uids: set[str] = set()
    while len(uids) < n:
        uids.add(_uid())
    await devices.upsert_devices(conn, [DeviceRecord(uid=u, kind=kind, protocol="jt808") for u in uids])
    ids = {}
    for u in uids:
        device = await devices.by_uid(conn, u)
        assert device is not None
        ids[u] = device.id
    return ids


async def _stored(conn: psycopg.AsyncConnection, ids: dict[str, int]) -> dict[str, Counter[datetime]]:
    """Per device uid: how many rows each fix time has (exactly once means every count is 1)."""
    cur = await conn.execute(
        "SELECT device_id, fix_time, count(*) FROM positions WHERE device_id = ANY(%s) GROUP BY 1, 2",
        (list(ids.values()),),
    )
    by_id = {v: k for k, v in ids.items()}
    out: dict[str, Counter[datetime]] = {u: Counter() for u in ids}
    for device_id, fix, n in await cur.fetchall():
        out[by_id[device_id]][fix] = n
    return out


def _duplicates(stored: dict[str, Counter[datetime]]) -> dict[str, list[datetime]]:
    return {u: [f for f, n in c.items() if n != 1] for u, c in stored.items() if any(n != 1 for n in c.values())}


async def _until(check: Callable[[], bool], within: float, what: str, tasks: Sequence[asyncio.Task[None]] = ()) -> None:
    """Wait for `check`; a terminal task that failed meanwhile is raised at once, not as a timeout."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not check():
        for task in tasks:
            if task.done() and not task.cancelled() and task.exception() is not None:
                raise AssertionError(f"while waiting for {what}: {task.exception()!r}") from task.exception()
        if loop.time() > deadline:
            raise AssertionError(f"not within {within} s: {what}")
        await asyncio.sleep(0.02)


async def _finish(tasks: list[asyncio.Task[None]], within: float) -> None:
    """Wait for the terminals; a failure in one is raised, the others are cancelled."""
    try:
        async with asyncio.timeout(within):
            await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def _assert_all_acked_and_stored(terms: list[LoadTerminal], stored: dict[str, Counter[datetime]]) -> None:
    assert _duplicates(stored) == {}
    for t in terms:
        assert t.refused == [] and t.unexpected == [], t.uid
        assert not t.in_flight and not t.resend, t.uid
        assert t.acked == t.sent, f"{t.uid}: {len(t.sent - t.acked)} sent but never acked"
        assert set(stored[t.uid]) == t.sent, (
            f"{t.uid}: {len(t.sent - set(stored[t.uid]))} missing, {len(set(stored[t.uid]) - t.sent)} never sent"
        )


# --- 1. kill -9 in the middle of a load -------------------------------------------------------


async def test_kill_9_mid_load_loses_no_acked_report(database: str, looker: Looker) -> None:
    srv = ServerProcess(database, TOKEN)
    tasks: list[asyncio.Task[None]] = []
    try:
        async with asyncio.timeout(45):
            await srv.start()
            db: psycopg.AsyncConnection = await looker(database)
            ids = await _make_devices(db, 30)
            base = _now() - timedelta(hours=6)
            terms = [LoadTerminal(uid, srv.ports["jt808"], base) for uid in ids]
            stop = asyncio.Event()
            deadline = asyncio.get_running_loop().time() + 45
            tasks = [asyncio.create_task(t.run(stop, deadline)) for t in terms]

            def acked() -> int:
                return sum(len(t.acked) for t in terms)

            await _until(lambda: acked() >= 3000, 20, "3000 reports acked before the kill", tasks)
            in_flight = sum(len(t.in_flight) for t in terms)
            srv.kill()
            assert in_flight > 0  # the kill hit a load with reports on their way
            # Let the terminals read what the dead process had sent (acks of committed batches too).
            await _until(lambda: not any(t.connected for t in terms), 10, "every terminal saw the server die", tasks)
            acked_before = {t.uid: set(t.acked) for t in terms}
            sent_before = {t.uid: set(t.sent) for t in terms}

            # With the server dead, the database alone must hold every acknowledged report, once.
            stored = await _stored(db, ids)
            assert _duplicates(stored) == {}
            missing = {u: sorted(a - set(stored[u]))[:3] for u, a in acked_before.items() if a - set(stored[u])}
            assert missing == {}, f"acked but not stored: {missing}"
            assert all(set(stored[u]) <= sent_before[u] for u in ids)
            committed_unacked = sum(len(set(stored[u]) - acked_before[u]) for u in ids)

            await srv.start()  # the same ports and database: the terminals find it again
            await _until(
                lambda: all(t.connections >= 2 and len(t.acked) >= len(acked_before[t.uid]) + 50 for t in terms),
                20,
                "every terminal reconnected and reported again",
                tasks,
            )
            stop.set()
            await _finish(tasks, 20)
            _assert_all_acked_and_stored(terms, await _stored(db, ids))
            assert await srv.stop() == 0
            assert "Traceback" not in srv.log(), srv.log_tail()
            print(
                f"kill -9 with {in_flight} reports in flight; {sum(map(len, acked_before.values()))} acked before, "
                f"{committed_unacked} committed but not acked (stored once after the resend), "
                f"{sum(len(t.sent) for t in terms)} in all"
            )
    finally:
        for task in tasks:
            task.cancel()
        srv.cleanup()


# --- 2. the database stops answering ----------------------------------------------------------


class Flooder:
    """A terminal that writes reports without waiting for acks: only the server's flow control
    (reading paused while too much waits for the database) keeps its data out of server memory."""

    def __init__(self, terminal: Terminal, base: datetime, distinct: int = 2000) -> None:
        self.terminal = terminal
        self.fixes = [base + timedelta(seconds=i) for i in range(distinct)]
        # The same fixes over and over, as a terminal replaying its blind-area store would.
        self.blob = b"".join(terminal.frame(jt808.MSG_LOCATION, _body(f, i))[1] for i, f in enumerate(self.fixes))
        self.frames_written = 0
        self.blocked_at: float | None = None  # when a write stopped draining
        self.unblocked_at: float | None = None
        self.replies = bytearray()
        # A small send buffer (no autotuning to megabytes): the kernel holds little of what the server
        # does not read, so the writes block soon and the backlog is quick to store after the pause.
        assert terminal.writer is not None
        terminal.writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * 1024)

    async def write(self, stop: asyncio.Event) -> None:
        """Write until a write does not drain within a second (the server stopped reading), then wait
        for that write to drain."""
        loop = asyncio.get_running_loop()
        writer = self.terminal.writer
        assert writer is not None
        while not stop.is_set():
            writer.write(self.blob)
            self.frames_written += len(self.fixes)
            drain = asyncio.ensure_future(writer.drain())
            done, _ = await asyncio.wait({drain}, timeout=1.0)
            if done:
                drain.result()  # raises if the connection broke
                continue
            self.blocked_at = loop.time()
            await drain
            self.unblocked_at = loop.time()
            return

    async def read(self) -> None:
        reader = self.terminal.reader
        assert reader is not None
        while chunk := await reader.read(1 << 16):
            self.replies += chunk

    def replies_seen(self) -> int:
        return self.replies.count(b"\x7e") // 2  # 0x7e only ever marks a frame's ends (escaped inside)

    def results(self) -> Counter[tuple[int, int]]:
        """(reply id, result) of every answer so far: all should be (0x0200, 0)."""
        frames = bytes(self.replies).split(b"\x7e")[1::2]  # "", frame, "", frame, ...
        return Counter(jt808.parse_general_response(b"\x7e" + f + b"\x7e")[1:] for f in frames)


def _stop_postgres(cluster: Cluster, stopped: list[int]) -> None:
    """SIGSTOP the postmaster, then everything it started (backends, checkpointer, TimescaleDB
    workers), scanning again until no child is left running: one forked meanwhile is caught too."""
    postmaster = int((cluster.data / "postmaster.pid").read_text().split()[0])
    os.kill(postmaster, signal.SIGSTOP)  # first, so it starts nothing new meanwhile
    stopped.append(postmaster)
    while new := [pid for pid in children(postmaster) if pid not in stopped]:
        for pid in new:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGSTOP)
            stopped.append(pid)


def _all_stopped(pids: list[int]) -> bool:
    def state(pid: int) -> str:
        try:
            return process_state(pid)
        except OSError:
            return "T"  # exited: not running either

    return all(state(pid) in "TZX" for pid in pids)


async def test_database_paused_under_load(looker: Looker) -> None:
    # A private cluster: stopping the shared one would stall every other test's database.
    cluster = Cluster(ROOT / "var" / "tmp" / f"pg-{secrets.token_hex(4)}", port=free_port())
    stopped: list[int] = []
    tasks: list[asyncio.Task[None]] = []
    srv: ServerProcess | None = None
    try:
        async with asyncio.timeout(60):
            await asyncio.to_thread(cluster.start)
            srv = ServerProcess(cluster.dsn, TOKEN, ingest={"max_pending_rows": 2000, "batch_max_rows": 500})
            await srv.start()
            db: psycopg.AsyncConnection = await looker(cluster.dsn)
            ids = await _make_devices(db, 21)
            flood_uid, *uids = ids
            base = _now() - timedelta(hours=6)
            terms = [LoadTerminal(uid, srv.ports["jt808"], base) for uid in uids]
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 60
            tasks = [asyncio.create_task(t.run(stop, deadline)) for t in terms]
            flood_terminal = await Terminal(flood_uid).connect(srv.ports["jt808"])
            _, code = await flood_terminal.register()
            assert await flood_terminal.authenticate(code) == 0
            flooder = Flooder(flood_terminal, base)
            tasks.append(asyncio.create_task(flooder.read()))

            def acks() -> list[float]:
                return sorted(a for t in terms for a in t.ack_times)

            await _until(lambda: len(acks()) >= 2000, 20, "2000 reports acked before the pause", tasks)
            rss_before = rss_kb(srv.pid)

            _stop_postgres(cluster, stopped)
            paused_at = loop.time()
            assert len(stopped) >= 5  # postmaster, background processes, the server's connections
            assert any(a > paused_at - 1.0 for a in acks())  # the load was running when the database stopped
            await _until(lambda: _all_stopped(stopped), 2, "PostgreSQL stopped")
            flood = asyncio.create_task(flooder.write(stop))
            tasks.append(flood)
            rss_max = rss_before
            while loop.time() < paused_at + 5:
                assert srv.alive(), srv.log_tail()
                rss_max = max(rss_max, rss_kb(srv.pid))
                await asyncio.sleep(0.1)
            acks_in_pause = [a for a in acks() if paused_at + 1.0 <= a]  # a second for acks already on the way
            flood_blocked, flood_unblocked = flooder.blocked_at, flooder.unblocked_at
            for pid in reversed(stopped):
                os.kill(pid, signal.SIGCONT)
            stopped.clear()
            resumed_at = loop.time()

            assert acks_in_pause == [], f"{len(acks_in_pause)} acks while the database was stopped"
            # The flooder's last write stopped draining, and stayed so to the end of the pause: the server
            # stopped reading its socket (a server that reads on drains it, however slowly it decodes).
            assert flood_blocked is not None and flood_blocked < paused_at + 3, "the flooder was never blocked"
            assert flood_unblocked is None, f"the server read on {flood_unblocked - paused_at:.2f} s into the pause"
            assert (rss_max - rss_before) < 64 * 1024, f"RSS grew from {rss_before} to {rss_max} KiB"

            await _until(lambda: flooder.unblocked_at is not None, 20, "the flooder's writes drained", tasks)
            assert flooder.unblocked_at is not None and flooder.unblocked_at >= resumed_at
            stop.set()
            await _until(lambda: all(t.done() for t in tasks[: len(terms)]), 20, "terminals acked", tasks)
            await _until(
                lambda: flooder.replies_seen() >= flooder.frames_written,
                20,
                f"the flooder's {flooder.frames_written} reports answered",
            )
            await _finish(tasks[: len(terms)], 5)
            recovered = loop.time() - resumed_at
            assert srv.alive()
            stored = await _stored(db, ids)
            _assert_all_acked_and_stored(terms, stored)
            assert set(stored[flood_uid]) == set(flooder.fixes)
            assert flooder.results() == Counter({(jt808.MSG_LOCATION, jt808.RESULT_OK): flooder.frames_written})
            assert await srv.stop() == 0
            assert "Traceback" not in srv.log(), srv.log_tail()
            print(
                f"pause: RSS {rss_before} -> max {rss_max} KiB; flooder wrote {flooder.frames_written} reports, "
                f"blocked {flood_blocked - paused_at:.2f} s after SIGSTOP; "
                f"{sum(len(t.sent) for t in terms)} load reports, all acked and stored {recovered:.2f} s after SIGCONT"
            )
    finally:
        for pid in stopped:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if srv is not None:
            srv.cleanup()
        await asyncio.to_thread(cluster.destroy)


# --- 3. duplicates and late fixes -------------------------------------------------------------


async def test_duplicates_and_late_fixes_through_the_real_server(database: str, looker: Looker) -> None:
    srv = ServerProcess(database, TOKEN)
    try:
        async with asyncio.timeout(40):
            await srv.start()
            db: psycopg.AsyncConnection = await looker(database)
            ids = await _make_devices(db, 1)
            (uid,) = ids
            t = await Terminal(uid).connect(srv.ports["jt808"])
            _, code = await t.register()
            assert await t.authenticate(code) == 0
            newest = _now() - timedelta(minutes=1)
            late = newest - timedelta(minutes=10)
            later_still = newest - timedelta(hours=1)
            new_body = jt808.encode_location_body(time=newest, lat=22.61, lon=113.91, speed_kmh=30)
            late_body = jt808.encode_location_body(time=late, lat=22.55, lon=113.85)

            async def reports(*bodies: bytes) -> None:
                """Sent back to back (they may share a batch); each answered with result 0."""
                serials = [await t.send(jt808.MSG_LOCATION, b) for b in bodies]
                for serial in serials:
                    assert await t.general_response() == (serial, jt808.MSG_LOCATION, 0)

            await reports(new_body)
            await reports(late_body)  # an older fix after a newer one
            await reports(new_body, new_body, late_body, new_body)  # resends, pipelined
            # A batch upload (blind-area backfill) repeating both and a fix older still, twice.
            items = [new_body, late_body, jt808.encode_location_body(time=later_still, lat=22.4, lon=113.8)]
            items.append(items[-1])
            body = len(items).to_bytes(2) + b"\x01" + b"".join(len(i).to_bytes(2) + i for i in items)
            serial = await t.send(jt808.MSG_BATCH_LOCATION, body)
            assert await t.general_response() == (serial, jt808.MSG_BATCH_LOCATION, 0)
            await t.close()
            # A new connection resends the late one, as after a lost ack.
            t = await Terminal(uid).connect(srv.ports["jt808"])
            assert await t.authenticate(code) == 0
            await reports(late_body)
            await t.close()

            stored = await _stored(db, ids)
            assert stored[uid] == Counter({newest: 1, late: 1, later_still: 1})
            url = f"http://127.0.0.1:{srv.ports['api']}/api/devices/{uid}/latest"
            async with aiohttp.ClientSession() as http:
                async with http.get(url, headers={"Authorization": f"Bearer {TOKEN}"}) as r:
                    assert r.status == 200, await r.text()
                    latest = await r.json()
                async with http.get(url) as r:
                    assert r.status == 401
            assert latest["time"] == newest.isoformat().replace("+00:00", "Z")
            assert latest["lat"] == pytest.approx(22.61) and latest["lon"] == pytest.approx(113.91)
            assert latest["speed_kmh"] == pytest.approx(30)
            assert await srv.stop() == 0
            assert "Traceback" not in srv.log(), srv.log_tail()
    finally:
        srv.cleanup()
