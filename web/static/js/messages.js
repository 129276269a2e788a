// Selected devices and the message to them; the messages sent and the state of each delivery, kept current by
// the live socket's `message` events and, as a fallback, by asking the API while deliveries are open.

import { DELIVERY, FINAL_DELIVERY, STATUS, el, formatTime, kindOf } from "./labels.js";

const POLL_MS = 15000;

export class SelectionPanel {
  constructor(api, { onSent, onClear }) {
    this.api = api;
    this.onSent = onSent;
    this.onClear = onClear;
    this.devices = [];
    this.excluded = new Set();
    this.root = document.querySelector("[data-testid=selection-panel]");
    this.count = document.querySelector("[data-testid=selection-count]");
    this.list = document.querySelector("[data-testid=selection-list]");
    this.text = document.querySelector("[data-testid=message-text]");
    this.expires = document.querySelector("[data-testid=message-expires]");
    this.send = document.querySelector("[data-testid=message-send]");
    this.error = document.querySelector("[data-testid=message-error]");
    this.send.addEventListener("click", () => this.submit());
    this.text.addEventListener("input", () => this.updateButton());
    document.querySelector("[data-testid=selection-clear]").addEventListener("click", () => this.onClear());
  }

  show(devices, note) {
    this.devices = devices;
    this.excluded.clear();
    this.root.hidden = false;
    this.error.textContent = note ?? "";
    this.render();
  }

  hide() {
    this.devices = [];
    this.root.hidden = true;
  }

  recipients() {
    return this.devices.filter((d) => !this.excluded.has(d.id));
  }

  render() {
    this.count.textContent = `已选 ${this.recipients().length} / ${this.devices.length} 台`;
    this.count.dataset.count = String(this.recipients().length);
    this.list.replaceChildren(
      ...this.devices.map((d) => {
        const kind = kindOf(d.kind);
        return el(
          "li",
          { "data-testid": `selected-${d.id}` },
          el(
            "label",
            {},
            el("input", {
              type: "checkbox",
              checked: !this.excluded.has(d.id),
              onchange: (e) => {
                if (e.target.checked) this.excluded.delete(d.id);
                else this.excluded.add(d.id);
                this.render();
              },
            }),
            el("span", { class: `status-dot status-${d.status}`, title: STATUS[d.status]?.label ?? "" }),
            el("span", { class: "device-name" }, d.name || d.uid),
            el("span", { class: "kind-tag", style: `color:${kind.color}` }, kind.label),
          ),
        );
      }),
    );
    this.updateButton();
  }

  updateButton() {
    this.send.disabled = !this.text.value.trim() || this.recipients().length === 0;
  }

  async submit() {
    const text = this.text.value.trim();
    const ids = this.recipients().map((d) => d.id);
    if (!text || !ids.length) return;
    this.send.disabled = true;
    this.error.textContent = "";
    try {
      const message = await this.api.sendMessage(ids, text, Number(this.expires.value));
      this.text.value = "";
      this.onSent(message);
    } catch (e) {
      this.error.textContent = `发送失败：${e.message}`;
    } finally {
      this.updateButton();
    }
  }
}

export class MessageList {
  constructor(api, { nameOf }) {
    this.api = api;
    this.nameOf = nameOf; // device id -> a name to show, when known
    this.messages = new Map(); // id -> MESSAGE
    this.expanded = new Set();
    this.root = document.querySelector("[data-testid=message-list]");
    setInterval(() => this.pollOpen(), POLL_MS);
  }

  async load() {
    const { messages } = await this.api.messages(20);
    for (const m of messages) this.messages.set(m.id, m);
    this.render();
  }

  clear() {
    this.messages.clear();
    this.expanded.clear();
    this.render();
  }

  upsert(message) {
    this.messages.set(message.id, message);
    this.render();
  }

  sent(message) {
    this.expanded.add(message.id);
    this.upsert(message);
  }

  // Asks again for messages whose deliveries may still change (in case a live event was missed).
  async pollOpen() {
    const now = Date.now();
    for (const m of this.messages.values()) {
      const open = m.deliveries.some((d) => !FINAL_DELIVERY.has(d.state));
      if (!open || (m.expires && Date.parse(m.expires) < now - POLL_MS)) continue;
      try {
        this.upsert(await this.api.message(m.id));
      } catch (e) {
        console.warn("message", m.id, e);
      }
    }
  }

  render() {
    const sorted = [...this.messages.values()].sort((a, b) => b.id - a.id);
    if (!sorted.length) {
      this.root.replaceChildren(el("li", { class: "empty" }, "暂无消息"));
      return;
    }
    this.root.replaceChildren(...sorted.map((m) => this.item(m)));
  }

  item(m) {
    const tally = {};
    for (const d of m.deliveries) tally[d.state] = (tally[d.state] ?? 0) + 1;
    const summary = Object.keys(DELIVERY)
      .filter((s) => tally[s])
      .map((s) => el("span", { class: `delivery-state state-${s}` }, `${DELIVERY[s]} ${tally[s]}`));
    const open = this.expanded.has(m.id);
    return el(
      "li",
      { class: "message", "data-testid": `message-${m.id}` },
      el(
        "button",
        {
          type: "button",
          class: "message-head",
          onclick: () => {
            if (open) this.expanded.delete(m.id);
            else this.expanded.add(m.id);
            this.render();
          },
        },
        el("span", { class: "message-text" }, m.text),
        el("span", { class: "message-meta" }, `${formatTime(m.created)} · ${m.by ?? ""} · ${m.deliveries.length} 台`),
        el("span", { class: "message-summary", "data-testid": `message-summary-${m.id}` }, summary),
      ),
      open
        ? el(
            "ul",
            { class: "deliveries" },
            m.deliveries.map((d) =>
              el(
                "li",
                { "data-testid": `delivery-${m.id}-${d.device}`, "data-state": d.state },
                el("span", { class: "device-name" }, this.nameOf(d.device) ?? d.uid),
                el("span", { class: `delivery-state state-${d.state}`, title: d.detail ?? "" }, DELIVERY[d.state] ?? d.state),
                el("span", { class: "delivery-time" }, formatTime(d.updated)),
              ),
            ),
          )
        : null,
    );
  }
}
