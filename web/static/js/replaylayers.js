// The replayed track on the map: the line coloured by speed, excluded fixes greyed (not part of the line), stops,
// alerts in their severity's colour, start and end, and the vehicle. Sources and layers are made once; a new track
// replaces their data, and playback moves the vehicle by setting its source's one point.

import * as maplibregl from "maplibre-gl";
import { kindLabel, severityOf } from "./alerts.js";
import { el } from "./labels.js";
import { EXCLUDED_REASON, formatClock, formatDuration, lineFeatures } from "./replaydata.js";

const EMPTY = { type: "FeatureCollection", features: [] };
const PIXEL_RATIO = 2;
const VEHICLE = "replay-vehicle";

const point = (coordinates, properties) => ({ type: "Feature", properties, geometry: { type: "Point", coordinates } });

// The vehicle: a dark disc with a white arrow pointing north; the layer turns it to the heading.
function vehicleIcon() {
  const size = 30;
  const c = document.createElement("canvas");
  c.width = c.height = size * PIXEL_RATIO;
  const ctx = c.getContext("2d");
  ctx.scale(PIXEL_RATIO, PIXEL_RATIO);
  const mid = size / 2;
  ctx.beginPath();
  ctx.arc(mid, mid, 12, 0, 2 * Math.PI);
  ctx.fillStyle = "#17324f";
  ctx.fill();
  ctx.lineWidth = 2.5;
  ctx.strokeStyle = "#ffffff";
  ctx.stroke();
  ctx.beginPath();
  ctx.moveTo(mid, mid - 8);
  ctx.lineTo(mid + 6, mid + 6);
  ctx.lineTo(mid, mid + 3);
  ctx.lineTo(mid - 6, mid + 6);
  ctx.closePath();
  ctx.fillStyle = "#ffffff";
  ctx.fill();
  return ctx.getImageData(0, 0, c.width, c.height);
}

// What a stop, an alert or an excluded fix says (its feature's properties).
function tip(p) {
  const when = formatClock(p.time);
  if (p.what === "stop") {
    const title = `停留 ${formatDuration(p.duration_s)}`;
    return [el("b", {}, title), el("small", {}, " stop"), el("br"), `${when} – ${formatClock(p.end)}`];
  }
  if (p.what === "alert") {
    const until = p.end ? ` – ${formatClock(p.end)}` : " 起，未结束 (ongoing)";
    const title = el("b", { style: `color:${p.color}` }, p.label);
    return [title, el("small", {}, ` ${p.en} · ${p.severityLabel}`), el("br"), when + until];
  }
  return [el("b", {}, `剔除点 · ${p.label}`), el("small", {}, ` excluded: ${p.en}`), el("br"), when];
}

export class ReplayLayers {
  // onPick(time ms): a stop, an alert or an excluded fix was clicked
  constructor(map, { onPick }) {
    this.map = map;
    this.onPick = onPick;
    this.popup = new maplibregl.Popup({ closeButton: false, closeOnClick: false, offset: 12 });
    this.pinned = false;
    map.addImage(VEHICLE, vehicleIcon(), { pixelRatio: PIXEL_RATIO });
    for (const id of ["replay-line", "replay-excluded", "replay-stops", "replay-alerts", "replay-ends", VEHICLE])
      map.addSource(id, { type: "geojson", data: EMPTY });
    this.addLayers();
    for (const layer of ["replay-stops", "replay-alerts", "replay-excluded"]) this.hoverable(layer);
    map.on("click", (e) => {
      if (!e.defaultPrevented) this.unpin();
    });
  }

  addLayers() {
    const map = this.map;
    const color = ["match", ["get", "color"], "gap", "#9aa5b1", ["get", "color"]];
    map.addLayer({
      id: "replay-line-casing",
      type: "line",
      source: "replay-line",
      filter: ["!", ["get", "gap"]],
      layout: { "line-join": "round", "line-cap": "round" },
      paint: { "line-color": "#ffffff", "line-width": 7 },
    });
    map.addLayer({
      id: "replay-line",
      type: "line",
      source: "replay-line",
      filter: ["!", ["get", "gap"]],
      layout: { "line-join": "round", "line-cap": "round" },
      paint: { "line-color": color, "line-width": 4 },
    });
    map.addLayer({
      id: "replay-gaps",
      type: "line",
      source: "replay-line",
      filter: ["get", "gap"],
      paint: { "line-color": color, "line-width": 2, "line-dasharray": [2, 2] },
    });
    map.addLayer({
      id: "replay-excluded",
      type: "circle",
      source: "replay-excluded",
      paint: {
        "circle-radius": 4,
        "circle-color": "#b8c0c9",
        "circle-opacity": 0.8,
        "circle-stroke-color": "#7b8794",
        "circle-stroke-width": 1,
      },
    });
    map.addLayer({
      id: "replay-ends",
      type: "circle",
      source: "replay-ends",
      paint: {
        "circle-radius": 6,
        "circle-color": ["match", ["get", "end"], "start", "#1e9e4a", "#17324f"],
        "circle-stroke-color": "#ffffff",
        "circle-stroke-width": 2,
      },
    });
    map.addLayer({
      id: "replay-stops",
      type: "circle",
      source: "replay-stops",
      paint: {
        "circle-radius": 8,
        "circle-color": "#1f5fbf",
        "circle-stroke-color": "#ffffff",
        "circle-stroke-width": 2.5,
      },
    });
    map.addLayer({
      id: "replay-alerts",
      type: "circle",
      source: "replay-alerts",
      layout: { "circle-sort-key": ["get", "severity"] },
      paint: {
        "circle-radius": ["+", 6, ["*", 1.5, ["get", "severity"]]],
        "circle-color": ["get", "color"],
        "circle-opacity": 0.35,
        "circle-stroke-color": ["get", "color"],
        "circle-stroke-width": 3,
      },
    });
    map.addLayer({
      id: VEHICLE,
      type: "symbol",
      source: VEHICLE,
      layout: {
        "icon-image": VEHICLE,
        "icon-rotate": ["get", "bearing"],
        "icon-rotation-alignment": "map",
        "icon-allow-overlap": true,
        "icon-ignore-placement": true,
      },
    });
  }

  // A popup on hover, kept (and the time picked) on click; a click elsewhere on the map lets it go.
  hoverable(layer) {
    const map = this.map;
    map.on("mouseenter", layer, (e) => {
      map.getCanvas().style.cursor = "pointer";
      if (!this.pinned) this.show(e.features[0]);
    });
    map.on("mouseleave", layer, () => {
      map.getCanvas().style.cursor = "";
      if (!this.pinned) this.popup.remove();
    });
    map.on("click", layer, (e) => {
      e.preventDefault();
      const feature = e.features[0];
      this.show(feature);
      this.pinned = true;
      this.onPick(feature.properties.time);
    });
  }

  show(feature) {
    const p = feature.properties;
    this.popup
      .setLngLat(feature.geometry.coordinates)
      .setDOMContent(el("div", { class: "replay-tip", "data-testid": `replay-tip-${p.what}` }, ...tip(p)))
      .addTo(this.map);
  }

  unpin() {
    this.pinned = false;
    this.popup.remove();
  }

  // model: replaydata.trackModel; stops: STOP (in the map's crs); alerts: [{alert, at: [lon, lat] | null}]
  setTrack(model, stops, alerts) {
    const src = (id) => this.map.getSource(id);
    this.unpin();
    src("replay-line").setData(lineFeatures(model));
    src("replay-excluded").setData({
      type: "FeatureCollection",
      features: model.excluded
        .filter((x) => Number.isFinite(x.lon) && Number.isFinite(x.lat))
        .map((x) => point([x.lon, x.lat], { what: "excluded", time: x.time, ...EXCLUDED_REASON[x.reason] })),
    });
    src("replay-stops").setData({
      type: "FeatureCollection",
      features: stops.map((s, i) =>
        point([s.lon, s.lat], { what: "stop", time: Date.parse(s.start), end: Date.parse(s.end), duration_s: s.duration_s }),
      ),
    });
    src("replay-alerts").setData({
      type: "FeatureCollection",
      features: alerts
        .filter(({ at }) => at)
        .map(({ alert, at }) => {
          const severity = severityOf(alert.severity);
          const kind = kindLabel(alert.kind);
          return point(at, {
            what: "alert",
            id: alert.id,
            time: Date.parse(alert.started),
            end: alert.ended ? Date.parse(alert.ended) : null,
            severity: severity.level,
            severityLabel: severity.label,
            color: severity.color,
            label: kind.label,
            en: kind.en,
          });
        }),
    });
    const last = model.n - 1;
    const ends = model.n
      ? [point([model.lon[0], model.lat[0]], { end: "start" }), point([model.lon[last], model.lat[last]], { end: "end" })]
      : [];
    src("replay-ends").setData({ type: "FeatureCollection", features: ends });
    this.setVehicle(null);
  }

  clear() {
    this.setTrack({ n: 0, excluded: [], time: [], lon: [], lat: [], speed: [] }, [], []);
  }

  // The one point of the vehicle's source (null: none).
  setVehicle(state) {
    const features = state ? [point([state.lon, state.lat], { bearing: state.bearing })] : [];
    this.map.getSource(VEHICLE).setData({ type: "FeatureCollection", features });
  }
}
