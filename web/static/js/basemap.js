// The map style for the configured basemap: a local PMTiles file, XYZ raster tiles, or nothing at all (a plain
// background with a graticule). No glyphs or sprites are needed: the page works with no server but its own.

import * as maplibregl from "maplibre-gl";
import { PMTiles, Protocol, TileType } from "pmtiles";
import { layers as protomapsLayers, namedFlavor } from "@protomaps/basemaps";
import { graticule } from "./geo.js";

const BACKGROUND = "#eef1f4";
const EMPTY = { type: "FeatureCollection", features: [] };

function graticuleLayers() {
  const line = (id, major) => ({
    id,
    type: "line",
    source: "graticule",
    filter: ["==", ["get", "major"], major],
    paint: { "line-color": major ? "#a9b3be" : "#d2d8df", "line-width": major ? 1.2 : 0.8 },
  });
  return [line("graticule-minor", false), line("graticule-major", true)];
}

async function pmtilesSources(config) {
  const protocol = new Protocol();
  maplibregl.addProtocol("pmtiles", protocol.tile);
  const url = new URL(config.pmtiles_url, location.href).href;
  const archive = new PMTiles(url);
  protocol.add(archive);
  const header = await archive.getHeader();
  if (header.tileType === TileType.Mvt) {
    // Vector tiles in the Protomaps schema (what `pmtiles extract` of a Protomaps build gives); no labels,
    // since labels would need a glyph server.
    return {
      sources: { basemap: { type: "vector", url: `pmtiles://${url}` } },
      layers: protomapsLayers("basemap", namedFlavor("light")),
    };
  }
  return {
    sources: { basemap: { type: "raster", url: `pmtiles://${url}`, tileSize: 256 } },
    layers: [{ id: "basemap", type: "raster", source: "basemap" }],
  };
}

export async function buildStyle(config) {
  const style = {
    version: 8,
    sources: { graticule: { type: "geojson", data: EMPTY } },
    layers: [{ id: "background", type: "background", paint: { "background-color": BACKGROUND } }],
  };
  if (config.basemap === "pmtiles") {
    const { sources, layers } = await pmtilesSources(config);
    Object.assign(style.sources, sources);
    if (layers.some((l) => l.type === "background")) style.layers = []; // the vector style brings its own
    style.layers.push(...layers);
  } else if (config.basemap === "xyz") {
    style.sources.basemap = { type: "raster", tiles: [config.tile_url], tileSize: 256, maxzoom: 19 };
    style.layers.push({ id: "basemap", type: "raster", source: "basemap" });
  } else {
    style.layers.push(...graticuleLayers());
  }
  if (config.boundaries_url) {
    // District outlines (web.boundaries): a reference that needs no tile server.
    style.sources.boundaries = { type: "geojson", data: new URL(config.boundaries_url, location.href).href };
    style.layers.push(
      {
        id: "boundaries-parts",
        type: "line",
        source: "boundaries",
        filter: ["==", ["get", "level"], "part"],
        paint: { "line-color": "#7b8794", "line-width": 1, "line-dasharray": [3, 2] },
      },
      {
        id: "boundaries-region",
        type: "line",
        source: "boundaries",
        filter: ["==", ["get", "level"], "region"],
        paint: { "line-color": "#52606d", "line-width": 2 },
      },
    );
  }
  return style;
}

// Redraws the graticule for the view (only the no-basemap style has one).
export function followGraticule(map) {
  const source = map.getSource("graticule");
  if (!source || !map.getLayer("graticule-major")) return;
  const update = () => {
    const b = map.getBounds();
    source.setData(graticule([b.getWest(), b.getSouth(), b.getEast(), b.getNorth()]));
  };
  map.on("moveend", update);
  update();
}
