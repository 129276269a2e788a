// The people on duty now (GET /api/attendance/now): how many have a shift going on, and how many of their phones
// are online or offline. Refreshed every 30 s while a session lasts; hidden while nobody is on duty, so a city
// that plans no attendance sees nothing of it.

import { el } from "./labels.js";

const REFRESH_MS = 30000;

export class DutyCounts {
  constructor(api) {
    this.api = api;
    this.timer = null;
    this.session = 0; // counts sessions, so an answer for an ended one is dropped
    this.section = document.querySelector("[data-testid=duty-panel]");
    this.table = document.querySelector("[data-testid=duty-counts]");
  }

  start() {
    this.stop();
    const session = this.session;
    const refresh = () => this.refresh(session).catch((e) => console.warn("attendance now", e));
    refresh();
    this.timer = setInterval(refresh, REFRESH_MS);
  }

  stop() {
    this.session += 1;
    clearInterval(this.timer);
    this.timer = null;
    this.section.hidden = true;
  }

  async refresh(session) {
    let now;
    try {
      now = await this.api.attendanceNow();
    } catch (e) {
      if (session === this.session) this.section.hidden = true; // counts of unknown age are not shown
      throw e;
    }
    if (session === this.session) this.render(now.total);
  }

  // In the columns of the counts by kind above it: who, online, offline.
  render({ on_duty: onDuty, online, offline }) {
    const th = (text) => el("th", {}, text);
    const td = (value, cls, testid) => el("td", { class: `num ${cls}`, "data-testid": testid }, value);
    this.table.replaceChildren(
      el("thead", {}, el("tr", {}, th("人员"), th("在线"), th("离线"))),
      el(
        "tbody",
        {},
        el(
          "tr",
          {},
          el("td", {}, "在岗 ", el("b", { "data-testid": "duty-on-duty" }, onDuty), " 人"),
          td(online, "online", "duty-online"),
          td(offline, "offline", "duty-offline"),
        ),
      ),
    );
    this.section.hidden = !onDuty;
    this.section.dataset.loaded = "true";
  }
}
