// The dispatcher's live map: boots the map from /map-config.json, logs in, then keeps the fleet, the counts, the
// messages and the alerts current over the live socket.

import * as maplibregl from "maplibre-gl";
import { AlertLayer } from "./alertlayer.js";
import { AlertList } from "./alerts.js";
import { Api } from "./api.js";
import { DrawTool } from "./draw.js";
import { DutyCounts } from "./duty.js";
import { KINDS } from "./labels.js";
import { LiveSocket } from "./live.js";
import { askLogin } from "./login.js";
import { openMap } from "./mapview.js";
import { notice, onLogout, start } from "./page.js";
import { FleetLayer } from "./markers.js";
import { MessageList, SelectionPanel } from "./messages.js";
import { SidePanel } from "./panel.js";

const $ = (testid) => document.querySelector(`[data-testid=${testid}]`);

function throttle(fn, ms) {
  let timer = null;
  return () => {
    if (!timer) timer = setTimeout(() => ((timer = null), fn()), ms);
  };
}

async function boot() {
  const config = await (await fetch("/map-config.json")).json();
  const api = new Api();
  api.crs = config.crs;
  const map = await openMap(config, notice, $("cursor-coords"));

  let unit = null;
  let kinds = [...KINDS];
  let loginOpen = false;

  const fleet = new FleetLayer(map, {
    drawing: () => draw.mode !== null,
    unitName: (id) => panel.unitName(id),
    onMessage: (d) => {
      draw.clear();
      select([d]);
    },
  });
  const panel = new SidePanel(api, fleet, {
    onKinds: (k) => {
      kinds = k;
      fleet.setKinds(k);
    },
    onUnit: (id) => {
      unit = id;
      subscribeView();
    },
    onLocate: (d) => locate(d).catch((e) => notice(`定位失败：${e.message}`)),
  });
  const duty = new DutyCounts(api);
  const nameOf = (id) => fleet.get(id)?.name ?? selection.devices.find((d) => d.id === id)?.name ?? null;
  const messages = new MessageList(api, { nameOf });
  const alertLayer = new AlertLayer(map, api, {
    deviceOf: (id) => fleet.get(id),
    onPick: (id) => alerts.focus(id),
    drawing: () => draw.mode !== null,
  });
  const alerts = new AlertList(api, {
    deviceOf: (id) => fleet.get(id),
    canAck: () => ["admin", "dispatcher"].includes(api.user?.role),
    onChange: (open) => alertLayer.setAlerts(open),
    onFocus: (a) =>
      alertLayer
        .focus(a)
        .then((placed) => placed || notice(`${a.uid}：告警与设备均无位置 (no position)`))
        .catch((e) => notice(`定位失败：${e.message}`)),
    onNotice: notice,
  });
  const selection = new SelectionPanel(api, {
    onSent: (m) => messages.sent(m),
    onClear: () => {
      draw.clear();
      select([]);
    },
  });
  const draw = new DrawTool(map, {
    onShape: (shape) => selectInside(shape),
    onMode: (mode) => {
      for (const m of ["circle", "polygon"]) $(`draw-${m}`).classList.toggle("active", mode === m);
      $("draw-hint").textContent =
        mode === "circle" ? "按住拖动画圆 · Esc 取消" : mode === "polygon" ? "单击添加顶点，双击或点回起点结束 · Esc 取消" : "";
    },
  });
  $("draw-circle").addEventListener("click", () => draw.start("circle"));
  $("draw-polygon").addEventListener("click", () => draw.start("polygon"));
  $("draw-clear").addEventListener("click", () => {
    draw.clear();
    select([]);
  });

  function select(devices) {
    fleet.setSelected(devices);
    if (devices.length) selection.show(devices);
    else selection.hide();
  }

  async function selectInside(shape) {
    if (kinds.length < KINDS.length) shape.kinds = kinds;
    if (unit !== null) shape.units = [unit];
    try {
      const { devices } = await api.select(shape);
      fleet.setSelected(devices);
      selection.show(devices, devices.length ? "" : "范围内没有设备");
    } catch (e) {
      selection.show([], `选择失败：${e.message}`);
    }
  }

  async function locate(device) {
    let d = fleet.get(device.id);
    if (!d || d.lat === null || d.lat === undefined) {
      const { devices } = await api.live({ kind: device.kind });
      d = devices.find((x) => x.id === device.id);
      if (d) fleet.update([d]);
    }
    if (!d || d.lat === null || d.lat === undefined) {
      notice(`${device.name || device.uid}：暂无位置 (no position yet)`);
      return;
    }
    map.once("moveend", () => fleet.showPopup(d.id));
    map.flyTo({ center: [d.lon, d.lat], zoom: Math.max(map.getZoom(), 16) });
  }

  const refreshStatuses = throttle(() => panel.refreshStatuses(), 2000);
  const live = new LiveSocket(api, {
    snapshot: (m) => {
      fleet.replace(m.devices);
      alertLayer.devicesMoved();
      refreshStatuses();
    },
    delta: (m) => {
      fleet.update(m.devices);
      alertLayer.devicesMoved();
      refreshStatuses();
    },
    counts: (m) => panel.setCounts(m),
    message: (m) => messages.upsert(m.message),
    alert: (m) => alerts.upsert(m.alert),
    state: (state) => {
      if (state === "open" && alerts.active) alerts.load().catch((e) => console.warn("alerts", e)); // missed while away
      const box = $("ws-status");
      box.dataset.state = state;
      box.textContent = { open: "实时已连接", connecting: "连接中…", closed: "已断开，重连中…", stopped: "未连接" }[state];
    },
    failing: () => api.me().catch(() => {}), // a 401 here ends the session
  });

  function subscribeView() {
    const b = map.getBounds();
    const clamp = (v, lim) => Math.max(-lim, Math.min(lim, v));
    live.subscribe({
      bbox: [clamp(b.getWest(), 180), clamp(b.getSouth(), 90), clamp(b.getEast(), 180), clamp(b.getNorth(), 90)],
      kinds: null,
      units: unit === null ? null : [unit],
      crs: api.crs,
    });
  }
  let moveTimer = null;
  map.on("moveend", () => {
    clearTimeout(moveTimer);
    moveTimer = setTimeout(subscribeView, 300);
  });

  // With no configured view: the whole fleet in view.
  async function fitFleet() {
    const { devices } = await api.live();
    const placed = devices.filter((d) => d.lat !== null && d.lat !== undefined);
    if (!placed.length) return;
    const bounds = new maplibregl.LngLatBounds();
    for (const d of placed) bounds.extend([d.lon, d.lat]);
    map.fitBounds(bounds, { padding: 60, maxZoom: 15, duration: 0 });
  }

  async function beginSession() {
    loginOpen = true;
    if (!api.token) await askLogin(api);
    loginOpen = false;
    try {
      const me = await api.me();
      api.setSession(api.token, me);
    } catch (e) {
      if (e.status === 401) return; // onUnauthorized has asked for a login again
    }
    const user = api.user;
    $("user-name").textContent = user ? `${user.name}${user.unit ? ` · ${user.unit.name}` : ""}` : "";
    if (!config.center) await fitFleet().catch((e) => console.warn("fit fleet", e));
    subscribeView();
    live.start();
    duty.start();
    const loads = await Promise.allSettled([panel.load(), messages.load(), alerts.load()]);
    const failed = loads.find((r) => r.status === "rejected");
    if (failed) notice(`加载失败：${failed.reason.message}`);
  }

  function endSession() {
    live.stop();
    duty.stop();
    api.clearSession();
    draw.clear();
    select([]);
    fleet.replace([]);
    messages.clear();
    alerts.clear();
    $("user-name").textContent = "";
    beginSession().catch((e) => notice(`登录后加载失败：${e.message}`));
  }
  api.onUnauthorized = () => loginOpen || endSession();
  onLogout(api, () => loginOpen, endSession);

  $("map").dataset.ready = "true";
  await beginSession();
}

start(boot);
