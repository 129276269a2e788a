// Spherical geometry for drawing shapes (the server decides what is inside; this only draws).

const EARTH_RADIUS_M = 6371008.8;
const rad = (deg) => (deg * Math.PI) / 180;
const deg = (r) => (r * 180) / Math.PI;

export function distanceM([lon1, lat1], [lon2, lat2]) {
  const dLat = rad(lat2 - lat1);
  const dLon = rad(lon2 - lon1);
  const a = Math.sin(dLat / 2) ** 2 + Math.cos(rad(lat1)) * Math.cos(rad(lat2)) * Math.sin(dLon / 2) ** 2;
  return 2 * EARTH_RADIUS_M * Math.asin(Math.min(1, Math.sqrt(a)));
}

function destination([lon, lat], distance, bearing) {
  const d = distance / EARTH_RADIUS_M;
  const lat1 = rad(lat);
  const lat2 = Math.asin(Math.sin(lat1) * Math.cos(d) + Math.cos(lat1) * Math.sin(d) * Math.cos(bearing));
  const lon2 = rad(lon) + Math.atan2(Math.sin(bearing) * Math.sin(d) * Math.cos(lat1), Math.cos(d) - Math.sin(lat1) * Math.sin(lat2));
  return [deg(lon2), deg(lat2)];
}

// A closed ring approximating a circle, for display.
export function circleRing(center, radiusM, steps = 72) {
  const ring = [];
  for (let i = 0; i < steps; i++) ring.push(destination(center, radiusM, (2 * Math.PI * i) / steps));
  ring.push(ring[0]);
  return ring;
}

// The graticule step (degrees) that puts about 6 to 15 lines across `spanDeg`.
const STEPS = [30, 10, 5, 2, 1, 0.5, 0.2, 0.1, 0.05, 0.02, 0.01, 0.005, 0.002, 0.001, 0.0005];
export function graticuleStep(spanDeg) {
  return STEPS.find((s) => spanDeg / s >= 6) ?? STEPS[STEPS.length - 1];
}

// Graticule lines over a bbox as GeoJSON; every fifth line is a major one.
export function graticule([west, south, east, north]) {
  const step = graticuleStep(Math.max(east - west, north - south));
  const features = [];
  const line = (coords, value) => {
    const major = Math.abs(Math.round(value / step) % 5) === 0;
    features.push({ type: "Feature", properties: { major }, geometry: { type: "LineString", coordinates: coords } });
  };
  const lo = Math.max(-85, south - step);
  const hi = Math.min(85, north + step);
  for (let x = Math.floor(west / step) * step; x <= east + step; x += step) line([[x, lo], [x, hi]], x);
  for (let y = Math.floor(lo / step) * step; y <= hi; y += step) line([[west - step, y], [east + step, y]], y);
  return { type: "FeatureCollection", features };
}

export function formatLonLat([lon, lat]) {
  const f = (v, pos, neg) => `${Math.abs(v).toFixed(5)}°${v >= 0 ? pos : neg}`;
  return `${f(lon, "E", "W")} ${f(lat, "N", "S")}`;
}
