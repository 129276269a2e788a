// Playback of a loaded track on the track's own clock: each animation frame moves its time on by the frame's real
// time times the rate. The controls (play/pause, rate, the timeline with its stop and alert ticks) and the shown
// time and speed live here; the map hears only the new state (onState), so nothing is rebuilt per frame.

import { el } from "./labels.js";
import { formatClock, stateAt } from "./replaydata.js";

export const RATES = [1, 2, 4, 8, 16, 32, 64];
const DEFAULT_RATE = 8;
const $ = (testid) => document.querySelector(`[data-testid=${testid}]`);

export class Playback {
  // onState(state, t): where the vehicle is at track time t (ms), after every move of the clock
  constructor({ onState }) {
    this.onState = onState;
    this.model = null;
    this.t = this.t0 = this.t1 = 0;
    this.playing = false;
    this.frameId = null;
    this.last = 0;
    this.bar = $("playbar");
    this.button = $("replay-play");
    this.rate = $("replay-rate");
    this.slider = $("replay-timeline");
    this.ticks = $("replay-ticks");
    this.clock = $("replay-time");
    this.speed = $("replay-speed-now");
    this.rate.replaceChildren(...RATES.map((r) => el("option", { value: r, selected: r === DEFAULT_RATE }, `${r}x`)));
    this.button.addEventListener("click", () => (this.playing ? this.pause() : this.play()));
    this.slider.addEventListener("input", () => this.seek(this.t0 + Number(this.slider.value) * 1000));
    document.addEventListener("keydown", (e) => {
      if (e.key !== " " || !this.model || e.target.closest("input, select, textarea, button")) return;
      e.preventDefault();
      this.button.click();
    });
    this.frame = this.frame.bind(this);
    this.setButton();
  }

  // ticks: [{kind: "stop" | "alert", start, end?, color?, title, testid}] (times in ms)
  load(model, ticks) {
    this.pause();
    this.model = model;
    this.t0 = model.time[0];
    this.t1 = model.time[model.n - 1];
    this.slider.max = String(Math.round((this.t1 - this.t0) / 1000));
    this.slider.disabled = this.button.disabled = model.n < 2;
    this.renderTicks(ticks);
    this.bar.hidden = false;
    this.seek(this.t0);
  }

  clear() {
    this.pause();
    this.model = null;
    this.ticks.replaceChildren();
    this.bar.hidden = true;
  }

  play() {
    if (!this.model || this.model.n < 2) return;
    if (this.t >= this.t1) this.seek(this.t0); // from the start again
    this.playing = true;
    this.last = performance.now();
    this.frameId = requestAnimationFrame(this.frame);
    this.setButton();
  }

  pause() {
    this.playing = false;
    cancelAnimationFrame(this.frameId);
    this.frameId = null;
    this.setButton();
  }

  seek(t) {
    this.t = Math.min(this.t1, Math.max(this.t0, t));
    this.last = performance.now(); // a scrub while playing goes on from there
    this.show();
  }

  frame(now) {
    this.t = Math.min(this.t1, this.t + (now - this.last) * Number(this.rate.value));
    this.last = now;
    this.show();
    if (this.t >= this.t1) this.pause();
    else this.frameId = requestAnimationFrame(this.frame);
  }

  show() {
    const state = stateAt(this.model, this.t);
    this.slider.value = String(Math.round((this.t - this.t0) / 1000));
    this.clock.textContent = formatClock(this.t);
    this.clock.dataset.time = String(Math.round(this.t));
    const unknown = state.gap ? "— 无数据 (no data)" : "— km/h";
    this.speed.textContent = state.speed === null ? unknown : `${state.speed.toFixed(1)} km/h`;
    this.speed.dataset.kmh = state.speed === null ? "" : String(state.speed);
    this.onState(state, this.t);
  }

  setButton() {
    this.button.dataset.state = this.playing ? "playing" : "paused";
    this.button.textContent = this.playing ? "❚❚ 暂停" : "▶ 播放";
    this.button.title = this.playing ? "暂停 (pause)" : "播放 (play)";
  }

  renderTicks(ticks) {
    const span = Math.max(1, this.t1 - this.t0);
    const at = (t) => Math.min(1, Math.max(0, (t - this.t0) / span)) * 100;
    this.ticks.replaceChildren(
      ...ticks.map((k) => {
        const left = at(k.start);
        const style =
          k.kind === "stop" ? `left:${left}%;width:${Math.max(0, at(k.end) - left)}%` : `left:${left}%;background:${k.color}`;
        return el("button", {
          type: "button",
          class: `tick tick-${k.kind}`,
          style,
          title: k.title,
          "data-testid": k.testid,
          onclick: () => this.seek(k.start),
        });
      }),
    );
  }
}
