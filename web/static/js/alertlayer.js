// The open alerts on the map: a disc in the severity's colour where each was seen (its evidence's lat/lon, else
// where its device is now), a pulsing ring over critical ones nobody has acknowledged yet, and a ring around the
// device of the alert in focus.

import * as maplibregl from "maplibre-gl";
import { severityOf } from "./alerts.js";
import { fromWgs84 } from "./crs.js";
import { el } from "./labels.js";

const EMPTY = { type: "FeatureCollection", features: [] };
const FOCUS_ZOOM = 16;

const has = (v) => v !== null && v !== undefined;

export class AlertLayer {
  // deviceOf(id): the device's live row when it is in view; onPick(alert id): a click on an alert's disc;
  // drawing(): true while a shape is being drawn (clicks belong to the shape then)
  constructor(map, api, { deviceOf, onPick, drawing }) {
    this.map = map;
    this.api = api;
    this.deviceOf = deviceOf;
    this.onPick = onPick;
    this.drawing = drawing;
    this.alerts = [];
    this.focused = null; // alert id
    this.positions = new Map(); // device id -> [lon, lat] from the API (a device out of view), or null: none
    this.asking = new Map(); // device id -> its position asked for
    this.pulses = new Map(); // alert id -> maplibregl.Marker
    this.pending = null;
    this.addLayers();
  }

  addLayers() {
    const map = this.map;
    map.addSource("alerts", { type: "geojson", data: EMPTY });
    map.addSource("alerts-focus", { type: "geojson", data: EMPTY });
    // Under the fleet's icons, so a device stays visible on its own alert.
    const below = map.getLayer("fleet-clusters") ? "fleet-clusters" : undefined;
    map.addLayer(
      {
        id: "alerts-focus",
        type: "circle",
        source: "alerts-focus",
        paint: {
          "circle-radius": 24,
          "circle-color": "rgba(23, 50, 79, 0.08)",
          "circle-stroke-color": "#17324f",
          "circle-stroke-width": 3,
        },
      },
      below,
    );
    map.addLayer(
      {
        id: "alerts",
        type: "circle",
        source: "alerts",
        layout: { "circle-sort-key": ["get", "severity"] }, // the most severe drawn on top
        paint: {
          "circle-radius": ["+", 9, ["*", 2, ["get", "severity"]]],
          "circle-color": ["get", "color"],
          "circle-opacity": ["case", ["get", "acknowledged"], 0.15, 0.35],
          "circle-stroke-color": ["get", "color"],
          "circle-stroke-width": ["case", ["get", "acknowledged"], 1.5, 3],
        },
      },
      below,
    );
    map.on("mouseenter", "alerts", () => (map.getCanvas().style.cursor = "pointer"));
    map.on("mouseleave", "alerts", () => (map.getCanvas().style.cursor = ""));
    map.on("click", "alerts", (e) => {
      if (this.drawing()) return;
      this.focused = e.features[0].properties.id;
      this.scheduleRender();
      this.onPick(this.focused);
    });
  }

  setAlerts(alerts) {
    this.alerts = alerts;
    if (this.focused !== null && !alerts.some((a) => a.id === this.focused)) this.focused = null;
    for (const a of alerts) if (!this.where(a)) this.askPosition(a);
    this.scheduleRender();
  }

  // The fleet changed: alerts placed at their device follow it.
  devicesMoved() {
    if (this.alerts.length) this.scheduleRender();
  }

  // Flies to the alert and rings its device; false when neither has a position.
  async focus(alert) {
    this.focused = alert.id;
    this.scheduleRender();
    let at = this.evidenceAt(alert) ?? this.liveAt(alert.device);
    if (!at) {
      this.positions.delete(alert.device); // out of view: where it is now, not where it was when first asked
      at = await this.askPosition(alert);
    }
    if (!at || this.focused !== alert.id) return Boolean(at);
    this.map.flyTo({ center: at, zoom: Math.max(this.map.getZoom(), FOCUS_ZOOM) });
    return true;
  }

  where(alert) {
    return this.evidenceAt(alert) ?? this.deviceAt(alert.device);
  }

  // Evidence coordinates are WGS-84, like everything the server stores.
  evidenceAt(alert) {
    const e = alert.evidence ?? {};
    return Number.isFinite(e.lat) && Number.isFinite(e.lon) ? fromWgs84([e.lon, e.lat], this.api.crs) : null;
  }

  liveAt(id) {
    const d = this.deviceOf(id);
    return d && has(d.lat) && has(d.lon) ? [d.lon, d.lat] : null;
  }

  deviceAt(id) {
    return this.liveAt(id) ?? this.positions.get(id) ?? null;
  }

  // The latest stored position of a device out of view, asked once (404: it has none yet).
  askPosition(alert) {
    const id = alert.device;
    if (this.positions.has(id)) return Promise.resolve(this.positions.get(id));
    if (!this.asking.has(id)) {
      const asked = this.api
        .latest(alert.uid)
        .then((p) => this.positions.set(id, fromWgs84([p.lon, p.lat], this.api.crs)))
        .catch((e) => e.status === 404 && this.positions.set(id, null))
        .then(() => {
          this.asking.delete(id);
          this.scheduleRender();
          return this.positions.get(id) ?? null;
        });
      this.asking.set(id, asked);
    }
    return this.asking.get(id);
  }

  scheduleRender() {
    this.pending ??= requestAnimationFrame(() => this.render());
  }

  render() {
    this.pending = null;
    const features = [];
    const pulsing = new Map();
    for (const a of this.alerts) {
      const at = this.where(a);
      if (!at) continue;
      const severity = severityOf(a.severity);
      features.push({
        type: "Feature",
        properties: { id: a.id, severity: severity.level, color: severity.color, acknowledged: a.state !== "raised" },
        geometry: { type: "Point", coordinates: at },
      });
      // A late alert happened in the past: recorded, not announced as going on now.
      if (severity.level === 4 && a.state === "raised" && !a.late) pulsing.set(a.id, at);
    }
    this.map.getSource("alerts").setData({ type: "FeatureCollection", features });
    this.map.getContainer().dataset.alerts = String(features.length);
    this.renderPulses(pulsing);
    const focused = this.alerts.find((a) => a.id === this.focused);
    const ring = focused && (this.deviceAt(focused.device) ?? this.where(focused));
    const feature = ring && { type: "Feature", properties: { id: focused.id }, geometry: { type: "Point", coordinates: ring } };
    this.map.getSource("alerts-focus").setData(feature ? { type: "FeatureCollection", features: [feature] } : EMPTY);
  }

  // DOM markers animated by CSS: the map's canvas is not redrawn for the pulse.
  renderPulses(pulsing) {
    for (const [id, marker] of this.pulses)
      if (!pulsing.has(id)) {
        marker.remove();
        this.pulses.delete(id);
      }
    for (const [id, at] of pulsing) {
      const marker = this.pulses.get(id);
      if (marker) marker.setLngLat(at);
      else {
        const element = el("div", { class: "alert-pulse", "data-testid": `alert-pulse-${id}` }, el("div", { class: "alert-pulse-ring" }));
        this.pulses.set(id, new maplibregl.Marker({ element }).setLngLat(at).addTo(this.map));
      }
    }
  }
}
