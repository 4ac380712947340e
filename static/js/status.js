// Status badge, durations, sizes and words, shared by the run page and the run list. The badge's
// markup mirrors templates/evaluations/_status.html, and the words come from the page's "run-words"
// (evaluations/runs/words.py), so a live update reads exactly like a server-rendered page.

export const TERMINAL = new Set(["succeeded", "failed", "cancelled", "error"]);
const STATUSES = new Set(["queued", "running", ...TERMINAL]);

let words = null;
function pageWords() {
  if (!words) {
    const el = document.getElementById("run-words");
    words = el ? JSON.parse(el.textContent) : { reasons: {}, gvisor_engines: [], overhead_bytes: 0 };
  }
  return words;
}

// "memory_limit" -> "Out of memory"; "" where the status or exit code says it already.
export function reasonWords(reason) {
  if (!reason) return "";
  const known = pageWords().reasons[reason];
  if (known !== undefined) return known;
  const spaced = String(reason).replace(/_/g, " ");
  return spaced.charAt(0).toUpperCase() + spaced.slice(1);
}

// Replace the contents of `container` (the element around _status.html) with a badge for `status`.
export function renderStatus(container, status, reason) {
  const known = STATUSES.has(status) ? status : "error"; // never a class name we did not define
  const badge = document.createElement("span");
  badge.className = `badge status-${known}`;
  badge.dataset.status = status;
  badge.textContent = status;
  const parts = [badge];
  const said = reasonWords(reason);
  if (said) {
    const r = document.createElement("span");
    r.className = "reason";
    r.dataset.reason = reason;
    r.textContent = said;
    parts.push(" ", r);
  }
  container.replaceChildren(...parts);
}

// 1536 -> "1.5 KiB", 134217728 -> "128 MiB": one decimal at most, none when whole (words.size_words).
export function formatBytes(n) {
  if (n == null || !Number.isFinite(n)) return "–";
  if (Math.abs(n) < 1024) return `${Math.trunc(n)} B`;
  let value = n;
  let unit = "B";
  for (unit of ["KiB", "MiB", "GiB", "TiB"]) {
    value /= 1024;
    if (Math.abs(value) < 1024) break;
  }
  return `${value.toFixed(1).replace(/\.0$/, "")} ${unit}`;
}

// A run's detail with byte counts in binary units (words.detail_words).
export function detailWords(detail) {
  return (detail || "").replace(/\b(\d{4,}) bytes\b/g, (_, n) => formatBytes(Number(n)));
}

// What gVisor may use beyond a run's memory limit for itself (words.memory_overhead_bytes).
export function memoryOverheadBytes(engine) {
  const w = pageWords();
  return w.gvisor_engines.includes(engine) ? w.overhead_bytes : 0;
}

// The peak as the owner reads it (words.peak_memory_words).
export function peakMemoryWords({ peak, limit, reason, engine }) {
  if (reason === "memory_limit") return `${formatBytes(limit)} peak memory: the limit, where the program was stopped`;
  if (peak == null) return "peak memory not measured";
  const overhead = memoryOverheadBytes(engine);
  if (!overhead) return `${formatBytes(peak)} peak memory`;
  return `${formatBytes(peak)} peak memory, gVisor's own included (it has ${formatBytes(overhead)} beyond the limit for that)`;
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
