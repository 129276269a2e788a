// A loaded track as the replay page plays it: the clean fixes as typed columns (times in ms), the excluded ones
// apart, where the vehicle is at any moment, and the speed-coloured line. No map and no DOM here.

export const GAP_MS = 5 * 60 * 1000; // fixes further apart are not joined: where it was between them is unknown

// Speed bands of the line and the legend (km/h, upper bounds exclusive).
export const SPEED_BANDS = [
  { below: 5, color: "#7b8794", label: "< 5" },
  { below: 20, color: "#2e9d4f", label: "5–20" },
  { below: 40, color: "#9ac431", label: "20–40" },
  { below: 60, color: "#f0a202", label: "40–60" },
  { below: Infinity, color: "#d62828", label: "≥ 60" },
];
export const UNKNOWN_SPEED = "#4f6d8f";

export const EXCLUDED_REASON = {
  invalid: { label: "无效定位", en: "no position" },
  zero: { label: "零坐标", en: "zero coordinates" },
  future: { label: "未来时间", en: "time in the future" },
  jump: { label: "跳点", en: "jump" },
};

const rad = (deg) => (deg * Math.PI) / 180;

// The track answer's columns (`fixes`) -> {n, time, lon, lat, speed (NaN: not reported), bearing, excluded}.
export function trackModel(fixes) {
  const clean = [];
  const excluded = [];
  fixes.time.forEach((_, i) => (fixes.excluded[i] ? excluded : clean).push(i));
  const n = clean.length;
  const column = (values, empty = NaN) => Float64Array.from(clean, (i) => values[i] ?? empty);
  const model = {
    n,
    time: Float64Array.from(clean, (i) => Date.parse(fixes.time[i])),
    lon: column(fixes.lon),
    lat: column(fixes.lat),
    speed: column(fixes.speed_kmh),
    bearing: new Float64Array(n),
    excluded: excluded.map((i) => ({
      time: Date.parse(fixes.time[i]),
      lon: fixes.lon[i],
      lat: fixes.lat[i],
      reason: fixes.excluded[i],
    })),
  };
  // The heading of each leg; a fix that did not move keeps the one it had (the terminal's course to start).
  let heading = fixes.course?.[clean[0]] ?? 0;
  for (let i = 0; i < n; i++) {
    if (i + 1 < n) {
      const dx = (model.lon[i + 1] - model.lon[i]) * Math.cos(rad(model.lat[i]));
      const dy = model.lat[i + 1] - model.lat[i];
      if (dx || dy) heading = ((Math.atan2(dx, dy) * 180) / Math.PI + 360) % 360;
    }
    model.bearing[i] = heading;
  }
  return model;
}

// The index of the last fix at or before `t` (-1 before the first).
function indexAt(time, t) {
  let lo = 0;
  let hi = time.length - 1;
  if (!time.length || t < time[0]) return -1;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if (time[mid] <= t) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}

// Where the vehicle is at `t` (ms): interpolated in time between the fixes around it; over a gap it stays at
// the last fix and its speed is unknown. -> {lon, lat, speed (null: unknown), bearing, gap}
export function stateAt(model, t) {
  const i = Math.max(0, indexAt(model.time, t));
  const at = (k) => ({
    lon: model.lon[k],
    lat: model.lat[k],
    speed: finite(model.speed[k]),
    bearing: model.bearing[k],
    gap: false,
  });
  if (i >= model.n - 1 || t <= model.time[i]) return at(i);
  const span = model.time[i + 1] - model.time[i];
  if (span > GAP_MS) return { ...at(i), speed: null, gap: true };
  const f = (t - model.time[i]) / span;
  const mix = (a, b) => a + (b - a) * f;
  const [s0, s1] = [finite(model.speed[i]), finite(model.speed[i + 1])];
  return {
    lon: mix(model.lon[i], model.lon[i + 1]),
    lat: mix(model.lat[i], model.lat[i + 1]),
    speed: s0 === null || s1 === null ? (s0 ?? s1) : mix(s0, s1),
    bearing: model.bearing[i],
    gap: false,
  };
}

function finite(v) {
  return Number.isFinite(v) ? v : null;
}

export function speedColor(kmh) {
  if (kmh === null) return UNKNOWN_SPEED;
  return SPEED_BANDS.find((b) => kmh < b.below).color;
}

// The line as a FeatureCollection: runs of legs in one speed band joined into one LineString each (a few
// hundred features for thousands of fixes); legs over a gap apart, as `gap` features.
export function lineFeatures(model) {
  const features = [];
  let run = null;
  for (let i = 0; i + 1 < model.n; i++) {
    const gap = model.time[i + 1] - model.time[i] > GAP_MS;
    const speeds = [finite(model.speed[i]), finite(model.speed[i + 1])].filter((s) => s !== null);
    const color = gap ? "gap" : speedColor(speeds.length ? Math.max(...speeds) : null);
    const a = [model.lon[i], model.lat[i]];
    const b = [model.lon[i + 1], model.lat[i + 1]];
    if (run?.properties.color === color) run.geometry.coordinates.push(b);
    else {
      run = { type: "Feature", properties: { color, gap }, geometry: { type: "LineString", coordinates: [a, b] } };
      features.push(run);
    }
  }
  return { type: "FeatureCollection", features };
}

const pad = (n) => String(n).padStart(2, "0");

// Local time, to the second, with the date.
export function formatClock(ms) {
  const d = new Date(ms);
  const day = `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}`;
  return `${day} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

export function formatDuration(seconds) {
  const s = Math.round(seconds);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  if (h) return `${h}小时${m}分`;
  return m ? `${m}分${pad(s % 60)}秒` : `${s}秒`;
}

// A Date as the value of an <input type="datetime-local"> (local time, to the minute).
export function localInputValue(d) {
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
}
