// The map both pages open alike: the basemap (or none when it cannot be read: the vehicles matter more),
// no rotation, the navigation and scale controls, the graticule, and the cursor's coordinates in the
// page's coordinate system.
import * as maplibregl from "maplibre-gl";
import { buildStyle, followGraticule } from "./basemap.js";
import { formatLonLat } from "./geo.js";

const CHINA = { center: [105, 35], zoom: 3.5 }; // the first view when none is configured

export async function openMap(config, notice, coords) {
  let style;
  try {
    style = await buildStyle(config);
  } catch (e) {
    console.error("basemap", e);
    notice(`底图无法读取 (basemap unreadable): ${e.message}`);
    style = await buildStyle({ ...config, basemap: "none" });
  }
  const map = new maplibregl.Map({
    container: "map",
    style,
    center: config.center ?? CHINA.center,
    zoom: config.center ? config.zoom : CHINA.zoom,
    dragRotate: false,
    pitchWithRotate: false,
    touchPitch: false,
    maxPitch: 0,
    attributionControl: { compact: true },
  });
  window.fleetMap = map; // for the browser console (and the pages' tests)
  map.touchZoomRotate.disableRotation();
  map.addControl(new maplibregl.NavigationControl({ showCompass: false }), "top-right");
  map.addControl(new maplibregl.ScaleControl({ unit: "metric" }), "bottom-left");
  let basemapFailed = false;
  map.on("error", (e) => {
    if (e.sourceId !== "basemap" || basemapFailed) return;
    basemapFailed = true; // said once: a tile server that is down fails every tile
    notice(`底图加载失败 (basemap tiles failed): ${e.error?.message ?? ""}`);
  });
  await map.once("load");
  followGraticule(map);
  const crsLabel = config.crs === "gcj02" ? "GCJ-02" : "WGS-84";
  coords.textContent = `坐标系 ${crsLabel}`;
  map.on("mousemove", (e) => (coords.textContent = `${formatLonLat(e.lngLat.toArray())} ${crsLabel}`));
  return map;
}
