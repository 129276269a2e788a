"""Coverage per shift (rules of kind `coverage`): computed from the stored fixes once a shift is over.

Every `interval_s` (on one process: worker 0) the job looks for shifts of the enabled coverage rules
that ended at least the rule's `grace_s` ago (time for late fixes to come in) and at most LOOKBACK
ago, and that have not been computed. For each, the (device, zone) pairs, among the devices in the
rule's scope (its device kinds and unit, as for every rule) and the enabled zones of its `zone_kind`:

- every device a zone is assigned to by id, whether it worked there or not (a share of 0);
- every device that has working fixes inside a zone that applies to it (an unassigned zone applies to
  every device of its unit, or to all; a zone assigned to kinds or units, to those): a zone that
  applies to a whole kind is not an order to every vehicle of that kind to cover it.

Each pair gets a row of `shift_coverage`; a share under `min_share` raises an alert (kind `coverage`,
from the shift's start to its end) in the same transaction, and the listeners hear of it after the
commit. Computed from the database alone, the job gives the same answer after a restart and on any
process; a result is stored once per rule, device, zone and shift and its alert only by whoever
stored it, so a repeated or concurrent run doubles nothing. Fixes that arrive after `grace_s` are
not counted: a computed shift is final.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
import numpy.typing as npt
from psycopg_pool import AsyncConnectionPool

from alerts.coverage_rule import COVERAGE, LOOKBACK, CoverageParams, parse, shifts_ending
from alerts.listeners import tell
from alerts.scope import rule_applies
from geofence import shapes
from geofence.coverage import Cells, measure, route_cells, visited_cells, working
from geofence.service import GeofenceService, units_below
from store import alerts, coverage, devices, live_state, users, zones
from store.alerts import Alert, NewAlert, Rule
from store.coverage import ShiftResult
from store.devices import KINDS
from store.live_state import Columns

log = logging.getLogger("telematics.coverage")

_I64 = npt.NDArray[np.int64]
CHUNK = 1000  # devices whose fixes are read and evaluated at a time: memory stays bounded on long shifts


@dataclass(frozen=True, slots=True)
class _Zone:
    id: int
    shape: shapes.AnyShape
    version: datetime  # updated_at: a changed shape gets its cells again


class CoverageJob:
    def __init__(
        self,
        pool: AsyncConnectionPool,
        geofence: GeofenceService,
        listeners: list[Callable[[Alert], None]],
        *,
        interval_s: float = 30.0,
    ) -> None:
        self.pool = pool
        self.geofence = geofence
        self.listeners = listeners  # the alert engine's: the live WebSocket
        self.interval_s = interval_s
        self._routes: dict[tuple[int, datetime, int], Cells] = {}
        self._bad: set[tuple[int, str]] = set()  # rules whose params were refused (logged once)
        self._running = asyncio.Lock()  # one run at a time (the periodic one, one asked for)

    async def run_forever(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                await self.run_once()
            except Exception:
                log.exception("coverage: a run failed; trying again in %.0f s", self.interval_s)

    async def run_once(self, now: datetime | None = None) -> int:
        """Compute the shifts that are due and not computed yet; how many were computed."""
        async with self._running:
            return await self._run(now or datetime.now(UTC))

    async def _run(self, now: datetime) -> int:
        async with self.pool.connection() as conn:
            rules = [r for r in await alerts.rules(conn, enabled_only=True) if r.kind == COVERAGE]
            done = await coverage.computed_since(conn, now - LOOKBACK) if rules else set()
        count = 0
        for rule in rules:
            params = self._params(rule)
            if params is None:
                continue
            for start, end in shifts_ending(params, now - LOOKBACK, now - timedelta(seconds=params.grace_s)):
                if (rule.id, start) in done:
                    continue
                try:
                    await self._compute(rule, params, start, end)
                    count += 1
                except Exception:
                    log.exception("coverage: rule %d, shift %s-%s failed", rule.id, start, end)
        return count

    def _params(self, rule: Rule) -> CoverageParams | None:
        try:
            return parse(rule.params)
        except ValueError as e:
            if (rule.id, str(e)) not in self._bad:
                self._bad.add((rule.id, str(e)))
                log.error("coverage: rule %d (%s) not applied: %s", rule.id, rule.name, e)
            return None

    async def _compute(self, rule: Rule, p: CoverageParams, start: datetime, end: datetime) -> None:
        async with self.pool.connection() as conn:
            found = await zones.search(conn, unit_ids=None, with_unitless=True, kind=p.zone_kind, enabled=True)
            assigned = await zones.assignments_of(conn, [z.id for z in found])
            catalog = [d for d in await live_state.device_catalog(conn) if d.enabled]
            existed = await devices.registered_before(conn, start)
            below = units_below(await users.all_units(conn)) if rule.org_unit_id is not None else {}
        device = np.array([d.id for d in catalog], dtype=np.int64)
        kind = np.array([KINDS.index(d.kind) for d in catalog], dtype=np.int64)
        unit = np.array([-1 if d.org_unit_id is None else d.org_unit_id for d in catalog], dtype=np.int64)
        scope = rule_applies(rule, kind, unit, below)
        device, kind, unit = device[scope], kind[scope], unit[scope]
        # A vehicle assigned a route is judged even if it never drove, unless it was not registered yet then
        # (and reported nothing in the shift).
        by_id = [(d, z.id) for z in found for d in assigned[z.id].devices]
        shaped = self._zones(found)
        results: list[ShiftResult] = []
        for at in range(0, len(device) if shaped else 0, CHUNK):
            part = slice(at, at + CHUNK)
            async with self.pool.connection() as conn:
                fixes = await coverage.fixes(conn, device[part].tolist(), start, end)
            measured = await asyncio.to_thread(
                self._evaluate, p, shaped, device[part], kind[part], unit[part], by_id, existed, fixes
            )
            results += [ShiftResult(rule.id, d, z, start, end, n, hit, share) for d, z, n, hit, share in measured]
        raised = await self._save(rule, p, start, end, results)
        tell(self.listeners, raised)
        log.info(
            "coverage: rule %d, shift %s-%s: %d results, %d alerts", rule.id, start, end, len(results), len(raised)
        )

    def _zones(self, found: Sequence[zones.Zone]) -> dict[int, _Zone]:
        out = {}
        for z in found:
            try:
                out[z.id] = _Zone(z.id, shapes.from_json(z.shape), z.updated_at)
            except ValueError as e:  # stored before a check existed
                log.error("coverage: zone %d (%s) skipped: %s", z.id, z.code, e)
        return out

    def _evaluate(
        self,
        p: CoverageParams,
        found: dict[int, _Zone],
        device: _I64,
        kind: _I64,
        unit: _I64,
        by_id: list[tuple[int, int]],
        existed: set[int],
        fixes: Columns,
    ) -> list[tuple[int, int, int, int, float]]:
        """(device, zone, cells of the zone, cells visited, share) of each pair of these devices (sorted ids, their
        kind codes and units) and zones (see the module docstring); zones of no cells left out."""
        in_scope = set(device.tolist())
        expected = existed | set(np.unique(fixes["device_id"]).tolist())
        pairs = {(d, z) for d, z in by_id if d in in_scope and z in found and d in expected}
        if len(fixes["device_id"]):
            ok = np.flatnonzero(working(fixes["speed_kmh"], p.min_speed_kmh, p.max_speed_kmh))
            point, zone = self.geofence.index.containing(fixes["lat"][ok], fixes["lon"][ok])
            ours = np.isin(zone, np.fromiter(found, np.int64, len(found)))
            keys = np.unique((zone[ours] << 32) | fixes["device_id"][ok][point[ours]].astype(np.int64))
            zone, dev = keys >> 32, keys & 0xFFFFFFFF
            slot = np.searchsorted(device, dev)
            applies = self.geofence.applies(zone, dev, kind[slot], unit[slot])
            pairs |= set(zip(dev[applies].tolist(), zone[applies].tolist(), strict=True))
        routes = {z: self._route(found[z], p.resolution) for _, z in pairs}
        zones_of: dict[int, list[int]] = {}
        for d, z in sorted(pairs):
            zones_of.setdefault(d, []).append(z)
        out = []
        for d, its_zones in zones_of.items():
            a, b = np.searchsorted(fixes["device_id"], [d, d + 1])
            visited = visited_by(p, {k: v[a:b] for k, v in fixes.items()})
            for z in its_zones:
                if len(routes[z]):
                    c = measure(routes[z], visited)
                    out.append((d, z, c.total, c.visited, c.share))
        return out

    def _route(self, zone: _Zone, resolution: int) -> Cells:
        key = (zone.id, zone.version, resolution)
        if key not in self._routes:
            # An older shape of the zone goes (a deleted zone's cells stay until a restart: a few kilobytes).
            self._routes = {k: v for k, v in self._routes.items() if k[0] != zone.id or k[1] == zone.version}
            self._routes[key] = route_cells(zone.shape, resolution)
        return self._routes[key]

    async def _save(
        self, rule: Rule, p: CoverageParams, start: datetime, end: datetime, results: list[ShiftResult]
    ) -> list[Alert]:
        """The results, each with its alert when under the minimum, and the shift as computed: one transaction."""
        raised: list[Alert] = []
        async with self.pool.connection() as conn, conn.transaction():
            for r in results:
                if not await coverage.save(conn, r) or r.share >= p.min_share:
                    continue  # stored before (another run), or good enough
                evidence = {
                    "share": round(r.share, 4), "visited": r.cells_visited, "total": r.cells_total,
                    "min_share": p.min_share, "shift_start": _iso(start), "shift_end": _iso(end),
                }  # fmt: skip
                new = NewAlert(start, r.device_id, rule.id, r.zone_id, COVERAGE, rule.severity, False, evidence)
                for alert_id in await alerts.raise_alerts(conn, [new]):
                    await alerts.end_alerts(conn, r.device_id, rule.id, r.zone_id, end, False)
                    await coverage.set_alert(conn, r, alert_id)
                    stored = await alerts.get(conn, alert_id)
                    if stored is not None:
                        raised.append(stored)
            await coverage.mark_computed(conn, rule.id, start, end, len(results))
        return raised


def visited_by(p: CoverageParams, fixes: Columns) -> Cells:
    """The cells one device worked in, from its fixes as store.coverage.fixes gives them."""
    return visited_cells(
        fixes["lat"], fixes["lon"], fixes["fix_time_us"], fixes["speed_kmh"],
        p.resolution, p.min_speed_kmh, p.max_speed_kmh, p.max_gap_s, p.tolerance_m,
    )  # fmt: skip


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).isoformat().replace("+00:00", "Z")
