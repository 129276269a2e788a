// The side panel: counts per kind (with a filter per kind), the unit tree with counts, the device search.

import { KIND, KINDS, STATUS, el, kindOf } from "./labels.js";

const SEARCH_LIMIT = 50;

export class SidePanel {
  // onKinds(kinds shown), onUnit(unit id | null), onLocate(device)
  constructor(api, fleet, { onKinds, onUnit, onLocate }) {
    this.api = api;
    this.fleet = fleet;
    this.onKinds = onKinds;
    this.onUnit = onUnit;
    this.onLocate = onLocate;
    this.units = [];
    this.counts = null;
    this.unit = null;
    this.kinds = new Set(KINDS);
    this.searchTimer = null;
    this.searchSeq = 0;
    this.kindTable = document.querySelector("[data-testid=kind-counts]");
    this.unitTree = document.querySelector("[data-testid=unit-tree]");
    this.search = document.querySelector("[data-testid=device-search]");
    this.list = document.querySelector("[data-testid=device-list]");
    this.listTotal = document.querySelector("[data-testid=device-total]");
    this.search.addEventListener("input", () => {
      clearTimeout(this.searchTimer);
      this.searchTimer = setTimeout(() => this.refreshDevices(), 250);
    });
    this.renderCounts();
  }

  async load() {
    const [units, counts] = await Promise.all([this.api.units(), this.api.counts()]);
    this.units = units.units ?? [];
    this.setCounts(counts);
    await this.refreshDevices();
  }

  unitName(id) {
    return this.units.find((u) => u.id === id)?.name ?? null;
  }

  setCounts(counts) {
    this.counts = counts;
    this.renderCounts();
    this.renderUnits();
  }

  renderCounts() {
    const zero = { online: 0, offline: 0, never: 0 };
    const byKind = this.counts?.by_kind ?? {};
    const cells = (c, testid) => [
      el("td", { class: "num online", "data-testid": `${testid}-online` }, c.online),
      el("td", { class: "num offline", "data-testid": `${testid}-offline` }, c.offline + c.never),
    ];
    const rows = KINDS.map((kind) => {
      const c = { ...zero, ...byKind[kind] };
      const info = KIND[kind];
      return el(
        "tr",
        { "data-testid": `count-kind-${kind}` },
        el(
          "td",
          {},
          el(
            "label",
            {},
            el("input", {
              type: "checkbox",
              checked: this.kinds.has(kind),
              "data-testid": `filter-kind-${kind}`,
              onchange: (e) => this.toggleKind(kind, e.target.checked),
            }),
            el("span", { class: "kind-dot", style: `background:${info.color}` }),
            info.label,
          ),
        ),
        ...cells(c, `count-${kind}`),
      );
    });
    const total = { ...zero, ...this.counts?.total };
    this.kindTable.replaceChildren(
      el("thead", {}, el("tr", {}, el("th", {}, "类型"), el("th", {}, STATUS.online.label), el("th", {}, STATUS.offline.label))),
      el("tbody", {}, rows),
      el("tfoot", {}, el("tr", { "data-testid": "count-total" }, el("th", {}, "合计"), ...cells(total, "count-total"))),
    );
  }

  toggleKind(kind, on) {
    if (on) this.kinds.add(kind);
    else this.kinds.delete(kind);
    this.onKinds([...this.kinds]);
  }

  renderUnits() {
    const byUnit = new Map((this.counts?.by_unit ?? []).map((u) => [u.unit.id, u]));
    const ids = new Set(this.units.map((u) => u.id));
    const children = (parent) => this.units.filter((u) => (ids.has(u.parent_id) ? u.parent_id : null) === parent);
    const node = (unit) => {
      const c = byUnit.get(unit.id)?.all ?? { online: 0, offline: 0, never: 0 };
      const total = c.online + c.offline + c.never;
      const kids = children(unit.id);
      return el(
        "li",
        {},
        el(
          "button",
          {
            type: "button",
            class: `unit${this.unit === unit.id ? " active" : ""}`,
            "data-testid": `unit-${unit.id}`,
            "data-online": c.online,
            "data-total": total,
            title: "只看本单位及下级 (filter)",
            onclick: () => this.selectUnit(this.unit === unit.id ? null : unit.id),
          },
          el("span", { class: "unit-name" }, unit.name),
          el("span", { class: "unit-count" }, el("b", {}, c.online), ` / ${total}`),
        ),
        kids.length ? el("ul", {}, kids.map(node)) : null,
      );
    };
    this.unitTree.replaceChildren(...children(null).map(node));
  }

  selectUnit(id) {
    this.unit = id;
    this.renderUnits();
    this.onUnit(id);
    this.refreshDevices();
  }

  async refreshDevices() {
    const seq = ++this.searchSeq;
    const q = this.search.value.trim();
    let result;
    try {
      result = await this.api.devices({ q, unit: this.unit, limit: SEARCH_LIMIT });
    } catch (e) {
      if (seq === this.searchSeq) this.list.replaceChildren(el("li", { class: "empty" }, `查询失败：${e.message}`));
      return;
    }
    if (seq !== this.searchSeq) return; // an older answer after a newer query
    this.listTotal.textContent = `共 ${result.total}`;
    this.renderDevices(result.devices);
  }

  // Statuses come from the live state of the devices in view; others show as unknown until located.
  renderDevices(devices) {
    this.shown = devices;
    if (!devices.length) {
      this.list.replaceChildren(el("li", { class: "empty" }, "没有匹配的设备"));
      return;
    }
    this.list.replaceChildren(
      ...devices.map((d) => {
        const live = this.fleet.get(d.id);
        const status = live?.status;
        const kind = kindOf(d.kind);
        return el(
          "li",
          {},
          el(
            "button",
            { type: "button", "data-testid": `device-item-${d.id}`, "data-status": status ?? "", onclick: () => this.onLocate(d) },
            el("span", { class: `status-dot status-${status ?? "unknown"}`, title: STATUS[status]?.label ?? "" }),
            el("span", { class: "device-name" }, d.name || d.uid),
            el("span", { class: "device-sub" }, d.plate || d.uid),
            el("span", { class: "kind-tag", style: `color:${kind.color}` }, kind.label),
          ),
        );
      }),
    );
  }

  // Live updates change the status dots of the devices listed.
  refreshStatuses() {
    if (this.shown) this.renderDevices(this.shown);
  }
}
