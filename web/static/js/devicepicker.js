// The replay page's device picker: a search box over GET /api/devices with the answers listed below it; a click
// picks one.

import { el, kindOf } from "./labels.js";

const LIMIT = 20;
const $ = (testid) => document.querySelector(`[data-testid=${testid}]`);

export class DevicePicker {
  constructor(api, { onPick }) {
    this.api = api;
    this.onPick = onPick;
    this.device = null;
    this.seq = 0;
    this.timer = null;
    this.input = $("replay-device-search");
    this.list = $("replay-device-list");
    this.picked = $("replay-device");
    this.input.addEventListener("input", () => {
      this.unpick(); // what the box says is no longer the device picked
      clearTimeout(this.timer);
      this.timer = setTimeout(() => this.search(), 250);
    });
    this.input.addEventListener("focus", () => this.search());
    this.input.addEventListener("keydown", (e) => e.key === "Escape" && (this.list.hidden = true));
    document.addEventListener("click", (e) => {
      if (!e.target.closest(".picker")) this.list.hidden = true;
    });
  }

  async search() {
    if (!this.api.token) return;
    const seq = ++this.seq;
    let result;
    try {
      result = await this.api.devices({ q: this.input.value.trim(), limit: LIMIT });
    } catch (e) {
      if (seq === this.seq) this.show([el("li", { class: "empty" }, `查询失败：${e.message}`)]);
      return;
    }
    if (seq !== this.seq) return; // an older answer after a newer query
    if (!result.devices.length) {
      this.show([el("li", { class: "empty" }, "没有匹配的设备 (no match)")]);
      return;
    }
    this.show(
      result.devices.map((d) =>
        el(
          "li",
          {},
          el(
            "button",
            { type: "button", "data-testid": `replay-device-item-${d.id}`, onclick: () => this.pick(d) },
            el("span", { class: "device-name" }, d.name || d.uid),
            el("span", { class: "device-sub" }, d.plate || d.uid),
            el("span", { class: "kind-tag", style: `color:${kindOf(d.kind).color}` }, kindOf(d.kind).label),
          ),
        ),
      ),
    );
  }

  show(items) {
    this.list.replaceChildren(...items);
    this.list.hidden = false;
  }

  pick(device) {
    this.device = device;
    this.input.value = device.name || device.uid;
    this.list.hidden = true;
    this.picked.dataset.id = String(device.id);
    this.picked.textContent = [device.uid, device.plate, kindOf(device.kind).label].filter(Boolean).join(" · ");
    this.picked.hidden = false;
    this.onPick(device);
  }

  unpick() {
    this.device = null;
    this.picked.hidden = true;
    delete this.picked.dataset.id;
  }

  clear() {
    this.unpick();
    this.input.value = "";
    this.list.hidden = true;
  }
}
