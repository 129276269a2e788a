// Drawing a circle (press, drag, release) or a polygon (click the corners; click the last or the first corner
// again, or double-click, to close it; Esc cancels) to select the devices inside.

import { circleRing, distanceM } from "./geo.js";

const EMPTY = { type: "FeatureCollection", features: [] };
const CLOSE_PX = 8; // a click this close to the first or last corner closes the polygon

export class DrawTool {
  // onShape({circle: {lon, lat, radius_m}} | {polygon: GeoJSON Polygon}); onMode(mode | null)
  constructor(map, { onShape, onMode }) {
    this.map = map;
    this.onShape = onShape;
    this.onMode = onMode;
    this.mode = null;
    this.points = [];
    this.center = null;
    this.listeners = [];
    map.addSource("draw", { type: "geojson", data: EMPTY });
    map.addLayer({
      id: "draw-fill",
      type: "fill",
      source: "draw",
      filter: ["==", ["geometry-type"], "Polygon"],
      paint: { "fill-color": "#e0a800", "fill-opacity": 0.12 },
    });
    map.addLayer({
      id: "draw-line",
      type: "line",
      source: "draw",
      filter: ["!=", ["geometry-type"], "Point"],
      paint: { "line-color": "#c98f00", "line-width": 2, "line-dasharray": [2, 1] },
    });
    map.addLayer({
      id: "draw-corners",
      type: "circle",
      source: "draw",
      filter: ["==", ["geometry-type"], "Point"],
      paint: { "circle-radius": 4, "circle-color": "#ffffff", "circle-stroke-color": "#c98f00", "circle-stroke-width": 2 },
    });
    document.addEventListener("keydown", (e) => {
      if (e.key === "Escape" && this.mode) this.cancel();
    });
  }

  start(mode) {
    this.cancel();
    this.mode = mode;
    this.map.getCanvas().style.cursor = "crosshair";
    this.map.dragPan.disable();
    this.map.doubleClickZoom.disable();
    if (mode === "circle") {
      this.on("mousedown", (e) => this.circleStart(e));
      this.on("mousemove", (e) => this.circleMove(e));
      this.on("mouseup", (e) => this.circleEnd(e));
    } else {
      this.on("click", (e) => this.polygonClick(e));
      this.on("mousemove", (e) => this.polygonMove(e));
      this.on("dblclick", (e) => {
        e.preventDefault();
        this.polygonFinish();
      });
    }
    this.onMode(mode);
  }

  // Removes the shape and leaves drawing.
  clear() {
    this.cancel();
    this.map.getSource("draw").setData(EMPTY);
  }

  cancel() {
    if (!this.mode) return;
    for (const [type, fn] of this.listeners) this.map.off(type, fn);
    this.listeners = [];
    this.mode = null;
    this.points = [];
    this.center = null;
    this.map.getCanvas().style.cursor = "";
    this.map.dragPan.enable();
    // The second click of a closing double-click would zoom in: enable double-click zoom after it.
    setTimeout(() => this.mode || this.map.doubleClickZoom.enable(), 400);
    this.map.getSource("draw").setData(EMPTY);
    this.onMode(null);
  }

  on(type, fn) {
    this.map.on(type, fn);
    this.listeners.push([type, fn]);
  }

  show(geometries) {
    this.map.getSource("draw").setData({
      type: "FeatureCollection",
      features: geometries.map((geometry) => ({ type: "Feature", properties: {}, geometry })),
    });
  }

  finish(shape, geometry) {
    this.cancel();
    this.show([geometry]);
    this.onShape(shape);
  }

  circleStart(e) {
    this.center = e.lngLat.toArray();
  }

  circleMove(e) {
    if (!this.center) return;
    const radius = distanceM(this.center, e.lngLat.toArray());
    this.show([{ type: "Polygon", coordinates: [circleRing(this.center, radius)] }, { type: "Point", coordinates: this.center }]);
  }

  circleEnd(e) {
    if (!this.center) return;
    const center = this.center;
    const radius = distanceM(center, e.lngLat.toArray());
    const px = this.map.project(center).dist(e.point);
    if (px < 4) {
      this.center = null; // a click, not a drag: keep waiting for a drag
      this.show([]);
      return;
    }
    this.finish(
      { circle: { lon: center[0], lat: center[1], radius_m: Math.round(radius * 10) / 10 } },
      { type: "Polygon", coordinates: [circleRing(center, radius)] },
    );
  }

  polygonClick(e) {
    const near = (p) => this.map.project(p).dist(e.point) <= CLOSE_PX;
    if (this.points.length >= 3 && (near(this.points[0]) || near(this.points[this.points.length - 1]))) {
      this.polygonFinish();
      return;
    }
    if (this.points.length && near(this.points[this.points.length - 1])) return;
    this.points.push(e.lngLat.toArray());
    this.polygonPreview(null);
  }

  polygonMove(e) {
    if (this.points.length) this.polygonPreview(e.lngLat.toArray());
  }

  polygonPreview(cursor) {
    const line = cursor ? [...this.points, cursor] : this.points;
    const shapes = this.points.map((p) => ({ type: "Point", coordinates: p }));
    if (line.length >= 3) shapes.push({ type: "Polygon", coordinates: [[...line, line[0]]] });
    else if (line.length === 2) shapes.push({ type: "LineString", coordinates: line });
    this.show(shapes);
  }

  polygonFinish() {
    if (this.points.length < 3) return;
    const ring = [...this.points, this.points[0]];
    const polygon = { type: "Polygon", coordinates: [ring] };
    this.finish({ polygon }, polygon);
  }
}
