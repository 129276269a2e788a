// The fleet on the map: one clustered GeoJSON source, icons drawn on a canvas (kind colour and initial,
// online or offline, an arrow for the heading), a popup with a device's details on click.

import * as maplibregl from "maplibre-gl";
import { KINDS, STATUS, el, formatTime, kindOf } from "./labels.js";

const PIXEL_RATIO = 2;
const EMPTY = { type: "FeatureCollection", features: [] };

function canvas(size) {
  const c = document.createElement("canvas");
  c.width = c.height = size * PIXEL_RATIO;
  const ctx = c.getContext("2d");
  ctx.scale(PIXEL_RATIO, PIXEL_RATIO);
  return [c, ctx];
}

const ICON = 34; // pixels (CSS) of a device icon
const BODY_RADIUS = 11;

// The device: a disc in its kind's colour (a ring only when offline) with the kind's initial, kept upright.
function bodyIcon(kind, online) {
  const [c, ctx] = canvas(ICON);
  const { color, short } = kindOf(kind);
  const mid = ICON / 2;
  ctx.beginPath();
  ctx.arc(mid, mid, BODY_RADIUS, 0, 2 * Math.PI);
  ctx.fillStyle = online ? color : "#eceef1";
  ctx.fill();
  ctx.lineWidth = 2;
  ctx.strokeStyle = online ? "#ffffff" : color;
  ctx.stroke();
  ctx.fillStyle = online ? "#ffffff" : "#4b535c";
  ctx.font = `bold 12px "WenQuanYi Micro Hei", "Microsoft YaHei", "PingFang SC", sans-serif`;
  ctx.textAlign = "center";
  ctx.textBaseline = "middle";
  ctx.fillText(short, mid, mid + 0.5);
  return ctx.getImageData(0, 0, c.width, c.height);
}

// The heading: an arrowhead just outside the disc, pointing north; the layer rotates it by the course.
function headingIcon(kind, online) {
  const [c, ctx] = canvas(ICON);
  const mid = ICON / 2;
  ctx.beginPath();
  ctx.moveTo(mid, 0);
  ctx.lineTo(mid + 6, mid - BODY_RADIUS + 3);
  ctx.lineTo(mid - 6, mid - BODY_RADIUS + 3);
  ctx.closePath();
  ctx.fillStyle = online ? kindOf(kind).color : STATUS.offline.color;
  ctx.fill();
  ctx.lineWidth = 1;
  ctx.strokeStyle = "#ffffff";
  ctx.stroke();
  return ctx.getImageData(0, 0, c.width, c.height);
}

function clusterIcon(label) {
  const size = label.length <= 1 ? 30 : label.length <= 2 ? 34 : label.length <= 3 ? 40 : 46;
  const [c, ctx] = canvas(size);
  ctx.beginPath();
  ctx.arc(size / 2, size / 2, size / 2 - 2, 0, 2 * Math.PI);
  ctx.fillStyle = "rgba(38, 92, 160, 0.88)";
  ctx.fill();
  ctx.lineWidth = 2.5;
  ctx.strokeStyle = "rgba(255, 255, 255, 0.95)";
  ctx.stroke();
  ctx.fillStyle = "#ffffff";
  ctx.font = `bold 12px system-ui, sans-serif`;
  ctx.textAlign = "center";
  ctx.textBaseline = "middle";
  ctx.fillText(label, size / 2, size / 2 + 0.5);
  return ctx.getImageData(0, 0, c.width, c.height);
}

function iconNames(d) {
  const kind = KINDS.includes(d.kind) ? d.kind : "other";
  const online = d.status === "online" ? "on" : "off";
  const heading = d.course !== null && d.course !== undefined && d.moving !== false;
  return { icon: `dev-${kind}-${online}`, heading: heading ? `heading-${kind}-${online}` : "" };
}

export class FleetLayer {
  constructor(map, { unitName, onMessage, drawing }) {
    this.map = map;
    this.unitName = unitName; // unit id -> name, for the popup
    this.onMessage = onMessage; // "send a message to this device" from the popup
    this.drawing = drawing; // true while a shape is being drawn: clicks on markers belong to the shape then
    this.devices = new Map(); // id -> LIVE
    this.kinds = new Set(KINDS); // kinds shown
    this.selected = new Set();
    this.popup = null;
    this.popupId = null;
    this.popupStale = false;
    this.pending = null;
    this.lastRender = 0;
    this.addImages();
    this.addLayers();
    document.addEventListener("keydown", (e) => e.key === "Escape" && this.popup?.remove());
  }

  addImages() {
    for (const kind of KINDS)
      for (const online of [true, false]) {
        const suffix = `${kind}-${online ? "on" : "off"}`;
        this.map.addImage(`dev-${suffix}`, bodyIcon(kind, online), { pixelRatio: PIXEL_RATIO });
        this.map.addImage(`heading-${suffix}`, headingIcon(kind, online), { pixelRatio: PIXEL_RATIO });
      }
    // Cluster icons are drawn when first needed: one per abbreviated count ("7", "42", "1.2k").
    this.map.on("styleimagemissing", (e) => {
      if (e.id.startsWith("cluster-") && !this.map.hasImage(e.id))
        this.map.addImage(e.id, clusterIcon(e.id.slice(8)), { pixelRatio: PIXEL_RATIO });
    });
  }

  addLayers() {
    const map = this.map;
    map.addSource("fleet", { type: "geojson", data: EMPTY, cluster: true, clusterMaxZoom: 14, clusterRadius: 48 });
    map.addSource("fleet-selected", { type: "geojson", data: EMPTY });
    map.addLayer({
      id: "fleet-selected",
      type: "circle",
      source: "fleet-selected",
      paint: { "circle-radius": 15, "circle-color": "rgba(255, 196, 0, 0.35)", "circle-stroke-color": "#e0a800", "circle-stroke-width": 2 },
    });
    const symbol = { "icon-allow-overlap": true, "icon-ignore-placement": true };
    map.addLayer({
      id: "fleet-clusters",
      type: "symbol",
      source: "fleet",
      filter: ["has", "point_count"],
      layout: { ...symbol, "icon-image": ["concat", "cluster-", ["get", "point_count_abbreviated"]] },
    });
    const single = ["!", ["has", "point_count"]];
    map.addLayer({
      id: "fleet-heading",
      type: "symbol",
      source: "fleet",
      filter: ["all", single, ["!=", ["get", "heading"], ""]],
      layout: {
        ...symbol,
        "icon-image": ["get", "heading"],
        "icon-rotate": ["get", "course"],
        "icon-rotation-alignment": "map",
      },
    });
    map.addLayer({
      id: "fleet-devices",
      type: "symbol",
      source: "fleet",
      filter: single,
      layout: {
        ...symbol,
        "icon-image": ["get", "icon"],
        "symbol-sort-key": ["case", ["==", ["get", "status"], "online"], 1, 0], // online drawn above offline
      },
    });
    for (const layer of ["fleet-clusters", "fleet-devices"]) {
      map.on("mouseenter", layer, () => (map.getCanvas().style.cursor = "pointer"));
      map.on("mouseleave", layer, () => (map.getCanvas().style.cursor = ""));
    }
    map.on("click", "fleet-clusters", async (e) => {
      if (this.drawing()) return;
      const feature = e.features[0];
      const zoom = await map.getSource("fleet").getClusterExpansionZoom(feature.properties.cluster_id);
      map.easeTo({ center: feature.geometry.coordinates, zoom });
    });
    map.on("click", "fleet-devices", (e) => this.drawing() || this.showPopup(e.features[0].properties.id));
  }

  // A snapshot replaces what is known (it covers the whole view); deltas update it.
  replace(devices) {
    this.devices = new Map(devices.map((d) => [d.id, d]));
    this.popupStale = true;
    this.scheduleRender();
  }

  update(devices) {
    for (const d of devices) {
      this.devices.set(d.id, { ...this.devices.get(d.id), ...d });
      if (d.id === this.popupId) this.popupStale = true;
    }
    this.scheduleRender();
  }

  setKinds(kinds) {
    this.kinds = new Set(kinds);
    this.scheduleRender();
  }

  setSelected(devices) {
    this.selected = new Set(devices.map((d) => d.id));
    for (const d of devices) if (!this.devices.has(d.id)) this.devices.set(d.id, d);
    this.scheduleRender();
  }

  get(id) {
    return this.devices.get(id);
  }

  // At most four redraws a second, however many deltas arrive.
  scheduleRender() {
    if (this.pending) return;
    const wait = Math.max(0, 250 - (performance.now() - this.lastRender));
    this.pending = setTimeout(() => requestAnimationFrame(() => this.render()), wait);
  }

  render() {
    this.pending = null;
    this.lastRender = performance.now();
    const shown = [];
    const selected = [];
    for (const d of this.devices.values()) {
      if (d.lat === null || d.lat === undefined || d.lon === null || d.lon === undefined) continue;
      const point = { type: "Point", coordinates: [d.lon, d.lat] };
      if (this.selected.has(d.id)) selected.push({ type: "Feature", properties: { id: d.id }, geometry: point });
      if (!this.kinds.has(KINDS.includes(d.kind) ? d.kind : "other")) continue;
      shown.push({
        type: "Feature",
        id: d.id,
        properties: { id: d.id, kind: d.kind, status: d.status, course: d.course ?? 0, ...iconNames(d) },
        geometry: point,
      });
    }
    this.map.getSource("fleet").setData({ type: "FeatureCollection", features: shown });
    this.map.getSource("fleet-selected").setData({ type: "FeatureCollection", features: selected });
    this.map.getContainer().dataset.devices = String(shown.length);
    if (this.popupStale && this.popupId !== null) this.refreshPopup();
    this.popupStale = false;
  }

  showPopup(id) {
    const d = this.devices.get(id);
    if (!d || d.lat === null || d.lat === undefined) return;
    this.popup?.remove();
    this.popupId = id;
    this.popup = new maplibregl.Popup({ closeButton: true, maxWidth: "300px", offset: 14 })
      .setLngLat([d.lon, d.lat])
      .setDOMContent(this.popupContent(d))
      .addTo(this.map);
    this.popup.on("close", () => {
      if (this.popupId === id) this.popupId = null;
    });
  }

  refreshPopup() {
    const d = this.devices.get(this.popupId);
    if (!d || !this.popup || d.lat === null || d.lat === undefined) return;
    this.popup.setLngLat([d.lon, d.lat]).setDOMContent(this.popupContent(d));
  }

  popupContent(d) {
    const kind = kindOf(d.kind);
    const status = STATUS[d.status] ?? STATUS.never;
    const row = (label, value, testid) => el("tr", {}, el("th", {}, label), el("td", { "data-testid": testid }, value ?? "—"));
    return el(
      "div",
      { class: "device-popup", "data-testid": "device-popup", "data-device-id": d.id },
      el("div", { class: "popup-title" }, el("span", { class: "kind-dot", style: `background:${kind.color}` }), d.name || d.uid),
      el(
        "table",
        {},
        row("状态", el("span", { class: `status status-${d.status}` }, status.label), "popup-status"),
        row("类型", `${kind.label} ${kind.en}`, "popup-kind"),
        row("车牌", d.plate, "popup-plate"),
        row("终端号", d.uid, "popup-uid"),
        row("单位", this.unitName(d.unit_id), "popup-unit"),
        row("速度", d.speed_kmh === null || d.speed_kmh === undefined ? null : `${d.speed_kmh.toFixed(1)} km/h`, "popup-speed"),
        row("方向", d.course === null || d.course === undefined ? null : `${Math.round(d.course)}°`, "popup-course"),
        row("定位时间", formatTime(d.time), "popup-time"),
        row("最后通信", formatTime(d.last_seen), "popup-last-seen"),
      ),
      el("button", { type: "button", "data-testid": "popup-message", onclick: () => this.onMessage(d) }, "发消息"),
    );
  }
}
