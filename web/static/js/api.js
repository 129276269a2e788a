// The HTTP API (docs/api.md) with the session's token. A 401 anywhere means the session is over.

const TOKEN_KEY = "telematics.token";
const USER_KEY = "telematics.user";

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

export class Api {
  constructor() {
    this.crs = "wgs84"; // the coordinate system of the basemap: positions are asked for and sent in it
    this.onUnauthorized = () => {};
  }

  get token() {
    return sessionStorage.getItem(TOKEN_KEY);
  }

  get user() {
    try {
      return JSON.parse(sessionStorage.getItem(USER_KEY) ?? "null");
    } catch {
      return null;
    }
  }

  setSession(token, user) {
    sessionStorage.setItem(TOKEN_KEY, token);
    sessionStorage.setItem(USER_KEY, JSON.stringify(user ?? null));
  }

  clearSession() {
    sessionStorage.removeItem(TOKEN_KEY);
    sessionStorage.removeItem(USER_KEY);
  }

  // `geo`: the request or its answer has coordinates, so it carries the basemap's crs.
  async request(method, path, { query = {}, body, geo = false, auth = true } = {}) {
    const params = new URLSearchParams();
    for (const [k, v] of Object.entries(query)) if (v !== null && v !== undefined && v !== "") params.set(k, v);
    if (geo && this.crs !== "wgs84") params.set("crs", this.crs);
    const url = params.size ? `${path}?${params}` : path;
    const headers = { Accept: "application/json" };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    if (auth && this.token) headers.Authorization = `Bearer ${this.token}`;
    const response = await fetch(url, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    let data = null;
    try {
      data = await response.json();
    } catch {
      data = null;
    }
    if (!response.ok) {
      if (response.status === 401 && auth) this.onUnauthorized();
      throw new ApiError(response.status, data?.error ?? `HTTP ${response.status}`);
    }
    return data;
  }

  async login(name, password) {
    const data = await this.request("POST", "/api/login", { body: { name, password }, auth: false });
    this.setSession(data.token, data.user);
    return data.user;
  }

  logout() {
    return this.request("POST", "/api/logout");
  }
  me() {
    return this.request("GET", "/api/me");
  }
  units() {
    return this.request("GET", "/api/units");
  }
  devices(query) {
    return this.request("GET", "/api/devices", { query });
  }
  live(query = {}) {
    return this.request("GET", "/api/live", { query, geo: true });
  }
  counts() {
    return this.request("GET", "/api/live/counts");
  }
  select(shape) {
    return this.request("POST", "/api/select", { body: shape, geo: true });
  }
  sendMessage(devices, text, expiresS) {
    return this.request("POST", "/api/messages", { body: { devices, text, expires_s: expiresS } });
  }
  message(id) {
    return this.request("GET", `/api/messages/${id}`);
  }
  messages(limit = 20) {
    return this.request("GET", "/api/messages", { query: { limit } });
  }
  device(id) {
    return this.request("GET", `/api/devices/${id}`);
  }
  // Stored positions are WGS-84 whatever the basemap's system.
  latest(uid) {
    return this.request("GET", `/api/devices/${encodeURIComponent(uid)}/latest`);
  }
  alerts(query) {
    return this.request("GET", "/api/alerts", { query });
  }
  ackAlert(id, comment, close) {
    return this.request("POST", `/api/alerts/${id}/ack`, { body: { comment, close } });
  }
  track(id, query) {
    return this.request("GET", `/api/devices/${id}/track`, { query, geo: true });
  }
  trips(id, query) {
    return this.request("GET", `/api/devices/${id}/trips`, { query, geo: true });
  }
  attendanceNow() {
    return this.request("GET", "/api/attendance/now");
  }

  // A file the API sends as an attachment (an export), fetched with the token in the header: an address with
  // the token in it would end up in the browser's history and the server's logs. -> {blob, name}
  async download(path, query = {}) {
    const response = await fetch(`${path}?${new URLSearchParams(query)}`, {
      headers: { Authorization: `Bearer ${this.token}` },
    });
    if (!response.ok) {
      const data = await response.json().catch(() => null);
      if (response.status === 401) this.onUnauthorized();
      throw new ApiError(response.status, data?.error ?? `HTTP ${response.status}`);
    }
    const name = /filename="([^"]+)"/.exec(response.headers.get("Content-Disposition") ?? "")?.[1] ?? "export";
    return { blob: await response.blob(), name };
  }

  liveSocketUrl() {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    return `${scheme}://${location.host}/api/live/ws?token=${encodeURIComponent(this.token ?? "")}`;
  }
}
