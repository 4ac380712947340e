// Status badge and durations, shared by the run page and the run list. The badge's markup mirrors
// templates/evaluations/_status.html so a live update looks exactly like a server-rendered one.

export const TERMINAL = new Set(["succeeded", "failed", "cancelled", "error"]);
const STATUSES = new Set(["queued", "running", ...TERMINAL]);

// Replace the contents of `container` (the element around _status.html) with a badge for `status`.
export function renderStatus(container, status, reason) {
  const known = STATUSES.has(status) ? status : "error"; // never a class name we did not define
  const badge = document.createElement("span");
  badge.className = `badge status-${known}`;
  badge.dataset.status = status;
  badge.textContent = status;
  const parts = [badge];
  if (reason && reason !== "exit_code") {
    const r = document.createElement("span");
    r.className = "reason";
    r.textContent = reason;
    parts.push(" ", r);
  }
  container.replaceChildren(...parts);
}

// Seconds -> "4.2 s", "1 min 05 s", "2 h 03 min".
export function formatSeconds(seconds) {
  if (seconds == null || !Number.isFinite(seconds)) return "–";
  if (seconds < 60) return `${seconds.toFixed(seconds < 10 ? 2 : 1)} s`;
  const s = Math.floor(seconds);
  if (s < 3600) return `${Math.floor(s / 60)} min ${String(s % 60).padStart(2, "0")} s`;
  return `${Math.floor(s / 3600)} h ${String(Math.floor(s / 60) % 60).padStart(2, "0")} min`;
}

// The server's clock minus the browser's, in ms. Timestamps come from the server, so "now" must
// too: a browser clock a minute off would otherwise show a run a minute longer (or 0 s).
let clockOffsetMs = 0;

// Note the server's time from a page or a status message (`server_time`, ISO 8601).
export function noteServerTime(iso) {
  const t = iso ? Date.parse(iso) : NaN;
  if (!Number.isNaN(t)) clockOffsetMs = t - Date.now();
}

// Seconds between two ISO timestamps (the second one defaults to the server's now), or null.
export function secondsBetween(startIso, endIso) {
  if (!startIso) return null;
  const start = Date.parse(startIso);
  const end = endIso ? Date.parse(endIso) : Date.now() + clockOffsetMs;
  if (Number.isNaN(start) || Number.isNaN(end)) return null;
  return Math.max(0, (end - start) / 1000); // a client clock slightly behind the server's: not negative
}

// The connection indicator: a dot and a few words, both set from LiveSocket's states.
export function showConnection(el, state, detail) {
  if (!el) return;
  const words = {
    connecting: "connecting…",
    live: "live",
    waiting: `reconnecting in ${((detail || 0) / 1000).toFixed(1)} s`,
    closed: `disconnected: ${detail}`,
    done: "finished",
  };
  el.dataset.state = state;
  el.textContent = words[state] ?? state;
  el.title = state === "live" ? "Updates arrive as they happen" : el.textContent;
}
