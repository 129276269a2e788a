// The live WebSocket: subscribes with the current view, reconnects by itself (with backoff), and hands
// snapshots, deltas, counts, message states and alerts to the page.

const MAX_BACKOFF_S = 30;

export class LiveSocket {
  // handlers: {snapshot(msg), delta(msg), counts(msg), message(msg), alert(msg), state(connecting|open|closed|stopped),
  // failing()}
  constructor(api, handlers) {
    this.api = api;
    this.handlers = handlers;
    this.subscription = null;
    this.ws = null;
    this.failures = 0;
    this.timer = null;
    this.running = false;
    document.addEventListener("visibilitychange", () => {
      if (document.visibilityState === "visible" && this.running && !this.ws) this.connectNow();
    });
  }

  start() {
    this.running = true;
    this.connectNow();
  }

  stop() {
    this.running = false;
    clearTimeout(this.timer);
    if (this.ws) {
      const ws = this.ws;
      this.ws = null;
      ws.close(1000);
    }
    this.handlers.state("stopped");
  }

  // Sent now when connected, and again after every reconnect.
  subscribe(subscription) {
    this.subscription = subscription;
    if (this.ws?.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify({ type: "subscribe", ...subscription }));
  }

  connectNow() {
    clearTimeout(this.timer);
    if (!this.running) return;
    this.handlers.state("connecting");
    const ws = new WebSocket(this.api.liveSocketUrl());
    this.ws = ws;
    ws.onopen = () => {
      this.failures = 0;
      this.handlers.state("open");
      if (this.subscription) ws.send(JSON.stringify({ type: "subscribe", ...this.subscription }));
    };
    ws.onmessage = (event) => {
      let msg;
      try {
        msg = JSON.parse(event.data);
      } catch {
        console.warn("live: not JSON", event.data);
        return;
      }
      this.handlers[msg.type]?.(msg);
    };
    ws.onclose = (event) => {
      if (this.ws !== ws) return; // replaced or stopped on purpose
      this.ws = null;
      if (!this.running) return;
      this.failures += 1;
      this.handlers.state("closed");
      // 1013: the server found us too slow; come back at once. Otherwise back off, with jitter.
      const delay = event.code === 1013 ? 1 : Math.min(MAX_BACKOFF_S, 2 ** (this.failures - 1));
      this.timer = setTimeout(() => this.connectNow(), delay * 1000 * (0.75 + Math.random() / 2));
      if (this.failures >= 2) this.handlers.failing(); // maybe the token expired: the page asks the API
    };
  }
}
