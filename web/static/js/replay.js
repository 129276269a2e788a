// The auditors' track replay: pick a device and a time range, see the track with its stops, alerts and excluded
// fixes, play it back on a timeline, export it. Every replay call is recorded in the audit log by the server.

import * as maplibregl from "maplibre-gl";
import { kindLabel, severityOf } from "./alerts.js";
import { Api } from "./api.js";
import { fromWgs84 } from "./crs.js";
import { DevicePicker } from "./devicepicker.js";
import { el } from "./labels.js";
import { askLogin } from "./login.js";
import { openMap } from "./mapview.js";
import { notice, onLogout, start } from "./page.js";
import { Playback } from "./playback.js";
import {
  EXCLUDED_REASON,
  SPEED_BANDS,
  UNKNOWN_SPEED,
  formatClock,
  formatDuration,
  localInputValue,
  trackModel,
} from "./replaydata.js";
import { ReplayLayers } from "./replaylayers.js";

const ALERT_LIMIT = 1000; // the API's most per call
const FOLLOW_MARGIN = 0.2; // the marker is brought back to the centre when it gets this close to an edge (share)
const $ = (testid) => document.querySelector(`[data-testid=${testid}]`);

// Yesterday 00:00 to 24:00, local time.
function defaultRange() {
  const today = new Date();
  today.setHours(0, 0, 0, 0);
  const yesterday = new Date(today);
  yesterday.setDate(today.getDate() - 1);
  $("replay-from").value = localInputValue(yesterday);
  $("replay-to").value = localInputValue(today);
}

// The range of the form as the API takes it (UTC), or an error text.
function askedRange() {
  const from = new Date($("replay-from").value);
  const to = new Date($("replay-to").value);
  if (Number.isNaN(from.getTime()) || Number.isNaN(to.getTime())) return "请填写开始和结束时间 (from, to)";
  if (to <= from) return "结束时间须晚于开始时间 (to after from)";
  return { from: from.toISOString(), to: to.toISOString() };
}

function saveFile({ blob, name }) {
  const url = URL.createObjectURL(blob);
  const link = el("a", { href: url, download: name, hidden: true });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60000); // not at once: the browser reads it after the click returns
}

function legend() {
  const item = (cls, color, label) => el("li", {}, el("span", { class: cls, style: `background:${color}` }), label);
  $("replay-legend").replaceChildren(
    ...SPEED_BANDS.map((b) => item("swatch", b.color, `${b.label} km/h`)),
    item("swatch", UNKNOWN_SPEED, "未知 (unknown)"),
    item("dot", "#1f5fbf", "停留 (stop)"),
    item("dot excluded", "#b8c0c9", "剔除点 (excluded)"),
  );
}

async function boot() {
  const config = await (await fetch("/map-config.json")).json();
  const api = new Api();
  api.crs = config.crs;
  const map = await openMap(config, notice, $("cursor-coords"));
  legend();
  defaultRange();

  let loginOpen = false;
  let loadSeq = 0;
  let loaded = null; // {device, range}: what the exports are of

  const layers = new ReplayLayers(map, { onPick: (t) => playback.seek(t) });
  const playback = new Playback({
    onState: (state) => {
      layers.setVehicle(state);
      if ($("replay-follow").checked) keepInView([state.lon, state.lat]);
    },
  });
  const picker = new DevicePicker(api, { onPick: () => ($("replay-error").textContent = "") });

  function keepInView(at) {
    if (map.isMoving()) return;
    const p = map.project(at);
    const { clientWidth: w, clientHeight: h } = map.getContainer();
    const m = FOLLOW_MARGIN;
    if (p.x < w * m || p.x > w * (1 - m) || p.y < h * m || p.y > h * (1 - m)) map.easeTo({ center: at, duration: 300 });
  }

  $("replay-form").addEventListener("submit", (e) => {
    e.preventDefault();
    load().catch((err) => console.error("replay", err));
  });

  async function load() {
    const error = $("replay-error");
    const device = picker.device;
    const range = askedRange();
    error.textContent = !device ? "请选择设备 (pick a device)" : typeof range === "string" ? range : "";
    if (error.textContent) return;
    const seq = ++loadSeq;
    delete $("map").dataset.loaded;
    const button = $("replay-load");
    button.disabled = true;
    try {
      // The trips first: their answer counts the fixes, so a track that fits the budget comes raw, with its
      // excluded fixes listed (a simplified track holds clean fixes only).
      const [trips, alerts] = await Promise.all([
        api.trips(device.id, range),
        api.alerts({ device: device.id, since: range.from, until: range.to, limit: ALERT_LIMIT }),
      ]);
      const budget = $("replay-points").value;
      const raw = budget === "raw" || trips.total <= Number(budget);
      const track = await api.track(device.id, raw ? range : { ...range, points: budget });
      if (seq !== loadSeq) return;
      show(device, range, track, trips, alerts.alerts);
    } catch (e) {
      if (seq === loadSeq) error.textContent = `加载失败：${e.message}`;
    } finally {
      if (seq === loadSeq) button.disabled = false;
    }
  }

  function show(device, range, track, trips, alerts) {
    const model = trackModel(track.fixes);
    // Alert evidence is WGS-84, as stored; the track came in the basemap's system.
    const placed = alerts.map((alert) => {
      const e = alert.evidence ?? {};
      const known = Number.isFinite(e.lat) && Number.isFinite(e.lon);
      return { alert, at: known ? fromWgs84([e.lon, e.lat], api.crs) : null };
    });
    layers.setTrack(model, track.stops, placed);
    summary(track, trips, alerts, model);
    events(track.stops, placed);
    loaded = { device, range };
    $("replay-exports").hidden = false;
    $("map").dataset.loaded = "true";
    if (!model.n) {
      playback.clear();
      notice("该时段没有有效定位 (no clean fixes in the range)");
      return;
    }
    const ticks = [
      ...track.stops.map((s, i) => ({
        kind: "stop",
        start: Date.parse(s.start),
        end: Date.parse(s.end),
        title: `停留 ${formatDuration(s.duration_s)} (stop) ${formatClock(Date.parse(s.start))}`,
        testid: `tick-stop-${i}`,
      })),
      ...alerts.map((a) => ({
        kind: "alert",
        start: Date.parse(a.started),
        color: severityOf(a.severity).color,
        title: `${kindLabel(a.kind).label} (${kindLabel(a.kind).en}) ${formatClock(Date.parse(a.started))}`,
        testid: `tick-alert-${a.id}`,
      })),
    ];
    const bounds = new maplibregl.LngLatBounds();
    for (let i = 0; i < model.n; i++) bounds.extend([model.lon[i], model.lat[i]]);
    map.fitBounds(bounds, { padding: 60, maxZoom: 16, duration: 0 });
    playback.load(model, ticks);
  }

  function summary(track, trips, alerts, model) {
    const set = (testid, text, value) => {
      const node = $(testid);
      node.textContent = text;
      node.dataset.value = String(value);
    };
    set("summary-distance", `${track.distance_km.toFixed(2)} km`, track.distance_km);
    set("summary-trips", String(trips.trips.length), trips.trips.length);
    set("summary-stops", String(track.stops.length), track.stops.length);
    const reported = trips.trips.map((t) => t.max_speed_kmh).filter(Number.isFinite);
    const speeds = reported.length ? reported : Array.from(model.speed).filter(Number.isFinite);
    const max = speeds.length ? Math.max(...speeds) : null;
    set("summary-max-speed", max === null ? "—" : `${max.toFixed(1)} km/h`, max ?? "");
    set("summary-alerts", String(alerts.length), alerts.length);
    const byReason = Object.entries(track.excluded).filter(([, n]) => n);
    const excluded = byReason.reduce((sum, [, n]) => sum + n, 0);
    set("summary-excluded", String(excluded), excluded);
    if (excluded) {
      const detail = byReason.map(([r, n]) => `${EXCLUDED_REASON[r]?.label ?? r} ${n}`).join("，");
      $("summary-excluded").append(el("small", {}, detail));
    }
    const notes = [];
    if (track.simplified) notes.push(`简化显示 ${model.n} / ${track.total} 点 (simplified)`);
    if (track.simplified && excluded)
      notes.push("剔除点只在原始轨迹中列出 (excluded fixes are listed in the raw track)");
    $("summary-note").textContent = notes.join("；");
    $("replay-summary").hidden = false;
  }

  // Stops and alerts in time order; a click goes there on the timeline and the map.
  function events(stops, placed) {
    const items = [
      ...stops.map((s, i) => ({
        t: Date.parse(s.start),
        at: [s.lon, s.lat],
        testid: `event-stop-${i}`,
        dot: "#1f5fbf",
        text: `停留 ${formatDuration(s.duration_s)}`,
        en: "stop",
      })),
      ...placed.map(({ alert, at }) => ({
        t: Date.parse(alert.started),
        at,
        testid: `event-alert-${alert.id}`,
        dot: severityOf(alert.severity).color,
        text: kindLabel(alert.kind).label,
        en: kindLabel(alert.kind).en,
      })),
    ].sort((a, b) => a.t - b.t);
    $("replay-events").replaceChildren(
      ...(items.length
        ? items.map((x) =>
            el(
              "li",
              {},
              el(
                "button",
                {
                  type: "button",
                  "data-testid": x.testid,
                  onclick: () => {
                    playback.seek(x.t);
                    if (x.at) map.easeTo({ center: x.at, zoom: Math.max(map.getZoom(), 15) });
                  },
                },
                el("span", { class: "kind-dot", style: `background:${x.dot}` }),
                el("span", { class: "event-text" }, x.text, el("small", {}, ` ${x.en}`)),
                el("span", { class: "event-time" }, formatClock(x.t)),
              ),
            ),
          )
        : [el("li", { class: "empty" }, "无停留和告警 (no stops or alerts)")]),
    );
    $("replay-events-section").hidden = false;
  }

  for (const button of document.querySelectorAll("[data-export]"))
    button.addEventListener("click", async () => {
      if (!loaded) return;
      const [what, format] = button.dataset.export.split(".");
      button.disabled = true;
      try {
        // Exports are of every fix of the range in WGS-84, as GPX and GeoJSON readers expect.
        saveFile(await api.download(`/api/devices/${loaded.device.id}/${what}`, { ...loaded.range, format }));
      } catch (e) {
        notice(`导出失败 (export failed)：${e.message}`);
      } finally {
        button.disabled = false;
      }
    });

  function reset() {
    loadSeq += 1;
    loaded = null;
    picker.clear();
    playback.clear();
    layers.clear();
    for (const testid of ["replay-summary", "replay-events-section", "replay-exports"]) $(testid).hidden = true;
    delete $("map").dataset.loaded;
    $("replay-error").textContent = "";
  }

  async function beginSession() {
    loginOpen = true;
    if (!api.token) await askLogin(api);
    loginOpen = false;
    try {
      api.setSession(api.token, await api.me());
    } catch (e) {
      if (e.status === 401) return; // onUnauthorized has asked for a login again
    }
    const user = api.user;
    $("user-name").textContent = user ? `${user.name}${user.unit ? ` · ${user.unit.name}` : ""}` : "";
  }

  function endSession() {
    api.clearSession();
    reset();
    $("user-name").textContent = "";
    beginSession().catch((e) => notice(`登录失败：${e.message}`));
  }
  api.onUnauthorized = () => loginOpen || endSession();
  onLogout(api, () => loginOpen, endSession);

  $("map").dataset.ready = "true";
  await beginSession();
}

start(boot);
