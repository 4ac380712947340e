// The run list follows /ws/runs/ (docs/live-runs.md): each status message updates the row of its
// run (badge, exit code, run time) in place. A run that is not in the table yet (submitted after
// the page was loaded) or a reconnect (messages may have been missed meanwhile) makes the page
// fetch itself and swap in the server-rendered table: the server escapes names and orders rows,
// and the status message does not even carry a run's name.

import { LiveSocket, websocketUrl } from "./livesocket.js";
import { TERMINAL, formatSeconds, noteServerTime, renderStatus, secondsBetween, showConnection } from "./status.js";

const REFRESH_DELAY_MS = 300; // a burst of new runs costs one fetch
let rows = new Map();
let refreshTimer = 0;
let wasLive = false;
const latest = new Map(); // run id -> last status message: re-applied over a fetched table

// Statuses only move forward; whichever of a message and a fetched row is further along wins.
const rank = (status) => (status === "queued" ? 0 : status === "running" ? 1 : 2);

function indexRows() {
  rows = new Map();
  for (const tr of document.querySelectorAll("tr[data-run-id]")) rows.set(Number(tr.dataset.runId), tr);
}

function onMessage(m) {
  if (m.type !== "status" || !Number.isInteger(m.id)) return;
  noteServerTime(m.server_time);
  latest.set(m.id, m);
  const tr = rows.get(m.id);
  if (!tr) {
    scheduleRefresh();
    return;
  }
  apply(tr, m);
}

function apply(tr, m) {
  if (rank(m.status) < rank(tr.dataset.status)) return;
  tr.dataset.status = m.status;
  tr.dataset.startedAt = m.started_at || "";
  tr.dataset.finishedAt = m.finished_at || "";
  tr.dataset.runSeconds = m.run_seconds ?? "";
  renderStatus(tr.querySelector(".status-cell"), m.status, m.reason);
  tr.querySelector(".exit-cell").textContent = m.exit_code ?? "";
  showRunTime(tr);
}

function showRunTime(tr) {
  const { status, startedAt, finishedAt, runSeconds } = tr.dataset;
  const cell = tr.querySelector(".time-cell");
  if (!startedAt) return;
  if (TERMINAL.has(status)) {
    if (runSeconds) cell.textContent = formatSeconds(Number(runSeconds));
    else if (finishedAt) cell.textContent = formatSeconds(secondsBetween(startedAt, finishedAt));
  } else if (status === "running") {
    cell.textContent = `${formatSeconds(secondsBetween(startedAt))}…`;
  }
}

function scheduleRefresh() {
  if (!refreshTimer) refreshTimer = setTimeout(refresh, REFRESH_DELAY_MS);
}

async function refresh() {
  try {
    const response = await fetch(location.href, { credentials: "same-origin", headers: { Accept: "text/html" } });
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    // DOMParser documents are inert (no scripts run); the table is our own escaped markup.
    const doc = new DOMParser().parseFromString(await response.text(), "text/html");
    const fresh = doc.getElementById("run-table");
    if (fresh) document.getElementById("run-table").replaceChildren(...fresh.childNodes);
    indexRows();
    for (const [id, tr] of rows) {
      if (latest.has(id)) apply(tr, latest.get(id));
      showRunTime(tr);
    }
  } catch (err) {
    console.warn("crucible: could not refresh the run list", err);
  } finally {
    refreshTimer = 0;
  }
}

setInterval(() => {
  for (const tr of rows.values()) if (tr.dataset.status === "running") showRunTime(tr);
}, 500);

const socket = new LiveSocket({
  url: () => websocketUrl("/ws/runs/"),
  onMessage,
  onState: (state, detail) => {
    showConnection(document.getElementById("connection"), state, detail);
    if (state === "live") {
      if (wasLive) scheduleRefresh(); // changes while we were away were not sent to us
      wasLive = true;
    }
  },
});
noteServerTime(document.getElementById("run-table").dataset.serverTime);
indexRows();
for (const tr of rows.values()) showRunTime(tr);
window.crucibleRuns = { get rows() { return rows; }, socket, refresh };
socket.start();
