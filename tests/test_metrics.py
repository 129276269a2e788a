"""`/metrics`: Prometheus text behind the bearer token, with figures that move with the traffic."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta

import aiohttp
import psycopg
from prometheus_client.parser import text_string_to_metric_families

from store import devices
from store.devices import DeviceRecord
from telematics.server import Server
from tests.conftest import API_TOKEN
from tests.terminal import Terminal


async def _scrape(server: Server) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    url = f"http://127.0.0.1:{server.ports['api']}/metrics"
    async with aiohttp.ClientSession() as http:
        async with http.get(url) as r:
            assert r.status == 401
        async with http.get(url, headers={"Authorization": f"Bearer {API_TOKEN}"}) as r:
            assert r.status == 200 and r.content_type == "text/plain"
            text = await r.text()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


async def test_metrics_follow_reports(server: Server, db: psycopg.AsyncConnection) -> None:
    before = await _scrape(server)
    uid = "13" + str(secrets.randbelow(10**9)).rjust(9, "0")
    await devices.upsert_devices(db, [DeviceRecord(uid=uid)])
    t = await Terminal(uid).connect(server.ports["jt808"])
    try:
        _, code = await t.register()
        await t.authenticate(code)
        now = datetime.now(UTC).replace(microsecond=0)
        for i in range(5):
            await t.report(now - timedelta(seconds=i), 1.0, 2.0)
            await t.general_response()
        await t.send_raw(b"\x7e\x01\x02\x7e")  # a frame that cannot be decoded
        await t.send(0x0002)  # a heartbeat behind it: once answered, the bad frame has been counted
        await t.general_response()
        after = await _scrape(server)
        assert after[("telematics_connections", (("protocol", "jt808"),))] >= 1
    finally:
        await t.close()

    def delta(name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0.0) - before.get(key, 0.0)

    assert delta("telematics_events_total", area="ingest", event="positions.jt808") == 5
    assert delta("telematics_events_total", area="store", event="rows_written") == 5
    assert delta("telematics_events_total", area="jt808", event="frame_errors") == 1
    assert delta("telematics_batch_rows_sum") == 5
    assert delta("telematics_commit_seconds_count") >= 1
    assert ("telematics_queue_reports", ()) in after and ("telematics_backpressure", ()) in after
