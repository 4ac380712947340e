// A websocket that reconnects by itself: exponential backoff from 250 ms up to 5 s, with jitter so
// many tabs do not come back in lockstep after a server restart. The URL is asked for again on
// every attempt, so the caller can put its current offsets in it.
//
// Close codes 4400/4401/4403/4404 (docs/live-runs.md) are answers, not accidents: no retry.

const FIRST_DELAY_MS = 250;
const MAX_DELAY_MS = 5000;
const FINAL_CODES = new Map([
  [4400, "the page asked for something the server does not understand"],
  [4401, "not logged in any more: reload the page to log in again"],
  [4403, "refused: this page's address is not an allowed origin"],
  [4404, "not found, or not yours"],
]);

// path "/ws/runs/1/" -> "ws://host/ws/runs/1/" (wss on https pages).
export function websocketUrl(path, query = "") {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${location.host}${path}${query ? `?${query}` : ""}`;
}

export class LiveSocket {
  // url(): string; onMessage(obj); onState(state, detail) with state one of
  // "connecting", "live", "waiting" (detail: ms until retry), "closed" (detail: why), "done".
  constructor({ url, onMessage, onState = () => {} }) {
    this.url = url;
    this.onMessage = onMessage;
    this.onState = onState;
    this.delay = FIRST_DELAY_MS;
    this.ws = null;
    this.timer = 0;
    this.stopped = false;
    this.attempts = 0;
  }

  start() {
    this.stopped = false;
    this._connect();
    // Coming back online or to a tab the browser froze: do not sit out the rest of a backoff.
    window.addEventListener("online", () => this._retryNow());
    document.addEventListener("visibilitychange", () => {
      if (document.visibilityState === "visible") this._retryNow();
    });
  }

  // Close for good (the run is over and everything arrived, or the page is going away).
  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    if (this.ws) this.ws.close(1000);
    this.ws = null;
    this.onState("done");
  }

  // Drop the connection and make a new one at once (e.g. the client noticed a gap in offsets).
  reconnect() {
    if (this.ws) {
      const ws = this.ws;
      this.ws = null;
      ws.close(1000);
    }
    this._retryNow();
  }

  _retryNow() {
    if (this.stopped || this.ws) return;
    clearTimeout(this.timer);
    this.delay = FIRST_DELAY_MS;
    this._connect();
  }

  _connect() {
    if (this.stopped) return;
    this.attempts++;
    this.onState("connecting");
    let ws;
    try {
      ws = new WebSocket(this.url());
    } catch (err) {
      this._schedule();
      return;
    }
    this.ws = ws;
    ws.onopen = () => {
      if (this.ws !== ws) return;
      this.onState("live");
    };
    ws.onmessage = (event) => {
      if (this.ws !== ws) return; // a late frame of a socket we already dropped
      this.delay = FIRST_DELAY_MS; // a connection that delivers is a good one: reset the backoff
      let message;
      try {
        message = JSON.parse(event.data);
      } catch {
        console.warn("crucible: ignored a websocket frame that is not JSON");
        return;
      }
      this.onMessage(message);
    };
    ws.onclose = (event) => {
      if (this.ws !== ws) return;
      this.ws = null;
      if (this.stopped) return;
      const final = FINAL_CODES.get(event.code);
      if (final) {
        this.stopped = true;
        this.onState("closed", final);
        return;
      }
      this._schedule();
    };
  }

  _schedule() {
    const wait = Math.min(MAX_DELAY_MS, Math.round(this.delay * (0.75 + Math.random() * 0.5)));
    this.delay = Math.min(MAX_DELAY_MS, this.delay * 2);
    this.onState("waiting", wait);
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this._connect(), wait);
  }
}
