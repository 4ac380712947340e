// The batch page follows /ws/runs/ (docs/live-runs.md): a status message of one of its runs
// recolours that run's cell at once, and the counts and run times are fetched again from the
// server (the page itself, at most once a second), which computes them for the whole batch.

import { LiveSocket, websocketUrl } from "./livesocket.js";
import { showConnection } from "./status.js";

const STATUSES = new Set(["queued", "running", "succeeded", "failed", "cancelled", "error"]);
const rank = (status) => (status === "queued" ? 0 : status === "running" ? 1 : 2);
const cells = new Map();
for (const a of document.querySelectorAll("#batch-grid .cell")) cells.set(Number(a.dataset.runId), a);
let refreshTimer = 0;
let refreshing = false;
let changedWhileRefreshing = false; // the fetch in flight may predate it: fetch once more after
let wasLive = false;

function onMessage(m) {
  if (m.type !== "status" || !cells.has(m.id) || !STATUSES.has(m.status)) return;
  const cell = cells.get(m.id);
  if (rank(m.status) < rank(cell.dataset.status)) return;
  cell.className = `cell status-${m.status}`;
  cell.dataset.status = m.status;
  cell.setAttribute("aria-label", `run ${m.id} ${m.status}`);
  scheduleRefresh();
}

function scheduleRefresh() {
  if (refreshing) changedWhileRefreshing = true;
  else if (!refreshTimer) refreshTimer = setTimeout(refresh, 1000);
}

async function refresh() {
  refreshTimer = 0;
  refreshing = true;
  try {
    const response = await fetch(location.href, { credentials: "same-origin", headers: { Accept: "text/html" } });
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    const doc = new DOMParser().parseFromString(await response.text(), "text/html");
    const summary = doc.getElementById("batch-summary");
    if (summary) document.getElementById("batch-summary").replaceChildren(...summary.childNodes);
    for (const fresh of doc.querySelectorAll("#batch-grid .cell")) {
      const cell = cells.get(Number(fresh.dataset.runId));
      if (cell && rank(fresh.dataset.status) >= rank(cell.dataset.status)) {
        cell.className = fresh.className;
        cell.dataset.status = fresh.dataset.status;
        cell.title = fresh.title;
      }
    }
  } catch (err) {
    console.warn("crucible: could not refresh the batch", err);
  } finally {
    refreshing = false;
    if (changedWhileRefreshing) {
      changedWhileRefreshing = false;
      scheduleRefresh();
    }
  }
}

const socket = new LiveSocket({
  url: () => websocketUrl("/ws/runs/"),
  onMessage,
  onState: (state, detail) => {
    showConnection(document.getElementById("connection"), state, detail);
    if (state === "live") {
      if (wasLive) scheduleRefresh(); // messages sent while we were away were missed
      wasLive = true;
    }
  },
});
window.crucibleBatch = { cells, socket, refresh };
socket.start();
