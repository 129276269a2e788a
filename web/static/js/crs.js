// Coordinates the server sends in WGS-84 (stored positions, alert evidence) moved into the basemap's system.
// GCJ-02 is the published algorithm on the Krasovsky ellipsoid, as in geofence/crs.py; outside the rough box of
// China the systems coincide.

const A = 6378245.0; // Krasovsky 1940 semi-major axis, metres
const EE = 0.00669342162296594323; // its first eccentricity squared

function inChina(lat, lon) {
  return lon >= 72.004 && lon <= 137.8347 && lat >= 0.8293 && lat <= 55.8271;
}

function gcjOffset(lat, lon) {
  const x = lon - 105.0;
  const y = lat - 35.0;
  const pi = Math.PI;
  const waveX = ((20.0 * Math.sin(6.0 * x * pi) + 20.0 * Math.sin(2.0 * x * pi)) * 2.0) / 3.0;
  let dlat = -100.0 + 2.0 * x + 3.0 * y + 0.2 * y * y + 0.1 * x * y + 0.2 * Math.sqrt(Math.abs(x)) + waveX;
  dlat += ((20.0 * Math.sin(y * pi) + 40.0 * Math.sin((y / 3.0) * pi)) * 2.0) / 3.0;
  dlat += ((160.0 * Math.sin((y / 12.0) * pi) + 320.0 * Math.sin((y * pi) / 30.0)) * 2.0) / 3.0;
  let dlon = 300.0 + x + 2.0 * y + 0.1 * x * x + 0.1 * x * y + 0.1 * Math.sqrt(Math.abs(x)) + waveX;
  dlon += ((20.0 * Math.sin(x * pi) + 40.0 * Math.sin((x / 3.0) * pi)) * 2.0) / 3.0;
  dlon += ((150.0 * Math.sin((x / 12.0) * pi) + 300.0 * Math.sin((x / 30.0) * pi)) * 2.0) / 3.0;
  const rad = (lat / 180.0) * pi;
  const magic = 1.0 - EE * Math.sin(rad) ** 2;
  const sqrtMagic = Math.sqrt(magic);
  dlat = (dlat * 180.0) / (((A * (1.0 - EE)) / (magic * sqrtMagic)) * pi);
  dlon = (dlon * 180.0) / ((A / sqrtMagic) * Math.cos(rad) * pi);
  return [dlat, dlon];
}

// [lon, lat] in WGS-84 -> [lon, lat] in `crs` ("wgs84" or "gcj02", the basemap's system).
export function fromWgs84([lon, lat], crs) {
  if (crs !== "gcj02" || !inChina(lat, lon)) return [lon, lat];
  const [dlat, dlon] = gcjOffset(lat, lon);
  return [lon + dlon, lat + dlat];
}
