// The open alerts (raised or acknowledged, not closed), newest first: loaded from the API, kept current by the live
// socket's `alert` events (an alert raised or ended), acknowledged and closed from the page.

import { el, formatTime } from "./labels.js";

export const ALERT_KIND = {
  forbidden_zone: { label: "进入禁区", en: "forbidden zone" },
  off_route: { label: "偏离路线", en: "off route" },
  overspeed: { label: "超速", en: "overspeed" },
  alarm: { label: "报警", en: "alarm" },
  forbidden_hours: { label: "非许可时段行驶", en: "outside permitted hours" },
  stopped: { label: "超时停车", en: "stopped too long" },
  dumping: { label: "疑似乱倒乱卸", en: "suspected dumping" },
  offline: { label: "离线", en: "offline" },
  coverage: { label: "作业覆盖率不足", en: "low coverage" },
  working_speed: { label: "作业超速", en: "working too fast" },
  late: { label: "迟到", en: "late" },
  absent: { label: "缺勤", en: "absent" },
  early_leave: { label: "早退", en: "early leave" },
  off_post: { label: "脱岗", en: "off post" },
  stationary: { label: "长时间静止", en: "stationary" },
  offline_on_duty: { label: "在岗离线", en: "offline on duty" },
  fake_checkin: { label: "虚假签到", en: "fake check-in" },
};

export const SEVERITY = {
  1: { level: 1, label: "提示", en: "low", color: "#3b7dd8" },
  2: { level: 2, label: "一般", en: "medium", color: "#d39b00" },
  3: { level: 3, label: "严重", en: "high", color: "#e8590c" },
  4: { level: 4, label: "紧急", en: "critical", color: "#d62828" },
};

export function severityOf(severity) {
  return SEVERITY[Math.min(4, Math.max(1, Math.round(Number(severity) || 1)))];
}

// A kind the page has no label for yet shows as the server names it.
export function kindLabel(kind) {
  return ALERT_KIND[kind] ?? { label: kind, en: kind };
}

const OPEN_STATES = ["raised", "acknowledged"];
const LIMIT = 200; // per state: the newest ones
const REFRESH_MS = 30000; // acknowledging and closing are not pushed: what other dispatchers did shows this late
const RANK = { raised: 0, acknowledged: 1, closed: 2 };

// Two copies of one alert (a live event, an API answer) in either order: its lifecycle only moves forward.
export function merge(a, b) {
  if (!a || !b) return a ?? b;
  const [behind, ahead] = (RANK[a.state] ?? 0) > (RANK[b.state] ?? 0) ? [b, a] : [a, b];
  return { ...ahead, ended: ahead.ended ?? behind.ended };
}

function newestFirst(a, b) {
  return Date.parse(b.started) - Date.parse(a.started) || b.id - a.id;
}

export class AlertList {
  // deviceOf(id): the device's live row when it is in view; canAck(): whether the user may acknowledge;
  // onChange(open alerts); onFocus(alert): a click on an alert; onNotice(text)
  constructor(api, { deviceOf, canAck, onChange, onFocus, onNotice }) {
    this.api = api;
    this.deviceOf = deviceOf;
    this.canAck = canAck;
    this.onChange = onChange;
    this.onFocus = onFocus;
    this.onNotice = onNotice;
    this.alerts = new Map(); // id -> ALERT, open ones only
    this.devices = new Map(); // device id -> DEVICE from the API (null while asked or unknown): names out of view
    this.nodes = new Map(); // id -> the list item
    this.forms = new Map(); // id -> its open acknowledge form, kept across renders so typing is not lost
    this.touched = null; // id -> ALERT changed while a load is under way
    this.loading = null;
    this.session = 0; // counts sessions, so an answer for an ended one is dropped
    this.active = false;
    this.focused = null;
    this.full = false; // the newest LIMIT unacknowledged ones only
    this.root = document.querySelector("[data-testid=alert-list]");
    this.badge = document.querySelector("[data-testid=alert-badge]");
    this.empty = el("li", { class: "empty" }, "暂无告警");
    this.root.replaceChildren(this.empty);
    setInterval(() => this.active && this.load().catch((e) => console.warn("alerts", e)), REFRESH_MS);
  }

  load() {
    if (!this.loading) {
      const loading = this.fetchOpen().finally(() => this.loading === loading && (this.loading = null));
      this.loading = loading;
    }
    return this.loading;
  }

  async fetchOpen() {
    const session = this.session;
    this.active = true;
    this.touched = new Map();
    try {
      const answers = await Promise.all(OPEN_STATES.map((state) => this.api.alerts({ state, limit: LIMIT })));
      if (session !== this.session) return;
      const fresh = new Map();
      for (const { alerts } of answers) for (const a of alerts) fresh.set(a.id, merge(fresh.get(a.id), a));
      for (const [id, a] of this.touched) fresh.set(id, merge(fresh.get(id), a));
      this.alerts = new Map([...fresh].filter(([, a]) => a.state !== "closed"));
      this.full = answers[0].alerts.length >= LIMIT;
      this.root.dataset.loaded = "true";
    } finally {
      if (session === this.session) this.touched = null;
    }
    this.changed();
  }

  clear() {
    this.session += 1;
    this.active = false;
    this.loading = null; // an answer still on its way is for the session that ended
    this.touched = null;
    this.alerts.clear();
    this.forms.clear();
    this.focused = null;
    delete this.root.dataset.loaded;
    this.changed();
  }

  // A live event or an answer of the API.
  upsert(alert) {
    const merged = merge(this.alerts.get(alert.id), alert);
    this.touched?.set(alert.id, merge(this.touched.get(alert.id), merged));
    if (merged.state === "closed") {
      this.alerts.delete(alert.id);
      this.forms.delete(alert.id);
    } else this.alerts.set(alert.id, merged);
    this.changed();
  }

  // A click on the alert's marker.
  focus(id) {
    if (!this.alerts.has(id)) return;
    this.focused = id;
    this.render();
    this.nodes.get(id)?.scrollIntoView({ block: "nearest" });
  }

  open() {
    return [...this.alerts.values()].sort(newestFirst);
  }

  changed() {
    this.render();
    this.onChange(this.open());
  }

  deviceName(alert) {
    const live = this.deviceOf(alert.device);
    const known = live ?? this.devices.get(alert.device);
    if (!known && !this.devices.has(alert.device)) {
      this.devices.set(alert.device, null);
      this.api
        .device(alert.device)
        .then((d) => {
          this.devices.set(alert.device, d);
          this.render();
        })
        .catch((e) => console.warn("device", alert.device, e));
    }
    return { name: known?.name || alert.uid, sub: known?.plate || alert.uid };
  }

  render() {
    const open = this.open();
    const unacknowledged = open.filter((a) => a.state === "raised").length;
    this.badge.textContent = `${unacknowledged}${this.full ? "+" : ""}`;
    this.badge.dataset.count = String(unacknowledged);
    for (const [id, node] of this.nodes)
      if (!this.alerts.has(id)) {
        node.remove();
        this.nodes.delete(id);
      }
    // Items are moved only where the order changed: moving the one being typed in would take its focus away.
    let cursor = this.root.firstChild;
    for (const a of open) {
      const node = this.item(a);
      if (node === cursor) cursor = cursor.nextSibling;
      else this.root.insertBefore(node, cursor);
    }
    this.empty.hidden = open.length > 0;
    this.root.append(this.empty);
  }

  // The item of an alert, made or brought up to date; its form (while open) is left as it is.
  item(a) {
    const device = this.deviceName(a);
    const signature = JSON.stringify([a.state, a.ended, a.ack, device, this.focused === a.id, this.forms.has(a.id)]);
    let node = this.nodes.get(a.id);
    if (node?.dataset.signature === signature) return node;
    const severity = severityOf(a.severity);
    const main = this.itemMain(a, severity, device);
    if (!node) {
      node = el("li", { "data-testid": `alert-${a.id}` }, main);
      this.nodes.set(a.id, node);
    } else node.firstChild.replaceWith(main);
    node.className = [
      "alert",
      `severity-${severity.level}`,
      severity.level === 4 ? "critical" : "",
      a.state === "raised" ? "unacknowledged" : "",
      a.late ? "late" : "",
      this.focused === a.id ? "focused" : "",
    ]
      .filter(Boolean)
      .join(" ");
    const ended = a.ended ? "true" : "false";
    Object.assign(node.dataset, { signature, state: a.state, severity: String(severity.level), ended });
    const form = this.forms.get(a.id);
    for (const child of [...node.children]) if (child !== main && child !== form) child.remove(); // a form done with
    if (form && form.parentNode !== node) node.append(form);
    return node;
  }

  itemMain(a, severity, device) {
    const kind = kindLabel(a.kind);
    const tag = (name, title, text) => el("span", { class: `alert-tag tag-${name}`, "data-testid": `alert-${name}-${a.id}`, title }, text);
    const tags = [
      a.late ? tag("late", "补传数据中发现 (late: found in backfilled reports)", "补传") : null,
      a.ended ? tag("ended", "已结束 (ended)", `已结束 ${formatTime(a.ended)}`) : null,
      a.state === "acknowledged" ? tag("acknowledged", a.ack?.comment || "已确认 (acknowledged)", `已确认 ${a.ack?.by ?? ""}`) : null,
    ];
    const may = this.canAck();
    return el(
      "div",
      { class: "alert-main" },
      el(
        "button",
        {
          type: "button",
          class: "alert-head",
          "data-testid": `alert-locate-${a.id}`,
          title: `${a.rule?.name ?? ""} · 在地图上查看 (show on map)`,
          onclick: () => this.clicked(a.id),
        },
        el(
          "span",
          { class: "alert-line" },
          el("span", { class: "alert-severity", style: `background:${severity.color}`, title: severity.en }, severity.label),
          el("span", { class: "alert-kind", "data-testid": `alert-kind-${a.id}`, title: kind.en }, kind.label),
          el("span", { class: "alert-time", title: "开始 (started)" }, formatTime(a.started)),
        ),
        el(
          "span",
          { class: "alert-line" },
          el("span", { class: "device-name", "data-testid": `alert-device-${a.id}` }, device.name),
          el("span", { class: "device-sub" }, device.sub),
          ...tags,
        ),
      ),
      may
        ? el(
            "button",
            { type: "button", class: "alert-ack-open", "data-testid": `alert-ack-${a.id}`, onclick: () => this.toggleForm(a.id) },
            a.state === "raised" ? "确认" : "关闭",
          )
        : null,
    );
  }

  clicked(id) {
    this.focused = id;
    this.render();
    const a = this.alerts.get(id);
    if (a) this.onFocus(a);
  }

  toggleForm(id) {
    const form = this.forms.get(id);
    if (form) {
      form.remove();
      this.forms.delete(id);
    } else {
      this.forms.set(id, this.ackForm(this.alerts.get(id)));
    }
    this.render();
    this.forms.get(id)?.querySelector("textarea, button[type=submit]")?.focus();
  }

  // Raised: a comment (optional) and whether to close it at once. Acknowledged: only closing is left (the
  // server keeps the first comment).
  ackForm(a) {
    const closing = a.state !== "raised";
    const error = el("div", { class: "error", "data-testid": `alert-error-${a.id}` });
    const comment = closing
      ? null
      : el("textarea", { rows: 2, maxlength: 1000, placeholder: "处理说明，可不填 (comment)", "data-testid": `alert-comment-${a.id}` });
    const close = el("input", { type: "checkbox", checked: closing, disabled: closing, "data-testid": `alert-close-${a.id}` });
    const submit = el(
      "button",
      { type: "submit", class: "primary", "data-testid": `alert-ack-submit-${a.id}` },
      closing ? "关闭告警" : "确认",
    );
    close.addEventListener("change", () => (submit.textContent = close.checked ? "确认并关闭" : "确认"));
    return el(
      "form",
      {
        class: "alert-ack",
        "data-testid": `alert-ack-form-${a.id}`,
        onsubmit: (e) => {
          e.preventDefault();
          this.acknowledge(a.id, comment?.value.trim() ?? "", close.checked, submit, error);
        },
      },
      comment,
      el(
        "div",
        { class: "row" },
        el("label", {}, close, "同时关闭 (close)"),
        el("span", { class: "spacer" }),
        el("button", { type: "button", onclick: () => this.toggleForm(a.id) }, "取消"),
        submit,
      ),
      error,
    );
  }

  async acknowledge(id, comment, close, submit, error) {
    submit.disabled = true;
    error.textContent = "";
    try {
      const done = await this.api.ackAlert(id, comment, close);
      this.forms.delete(id);
      this.upsert(done);
    } catch (e) {
      submit.disabled = false;
      error.textContent = `操作失败：${e.message}`;
      if (e.status === 409) {
        // closed by someone else meanwhile
        this.forms.delete(id);
        this.alerts.delete(id);
        this.changed();
        this.onNotice(`告警 ${id} 已被他人关闭 (closed already)`);
      }
    }
  }
}
