// The run page: follows one run over its websocket (docs/live-runs.md) and keeps the log pane,
// the plots, the status badge, the elapsed time and the buttons up to date.
//
// The page gets all output over the websocket, from offset 0: the server replays what is stored,
// then relays live chunks. We count the bytes we have per stream and reconnect with those
// offsets, so a reconnect neither loses nor repeats a byte.

import { LogBuffer, STDERR, STDOUT, STREAMS } from "./logbuffer.js";
import { LogSearch } from "./logsearch.js";
import { LogView } from "./logview.js";
import { MetricsPlots } from "./plots.js";
import { LiveSocket, websocketUrl } from "./livesocket.js";
import {
  TERMINAL,
  detailWords,
  formatBytes,
  formatSeconds,
  memoryOverheadBytes,
  noteServerTime,
  peakMemoryWords,
  renderStatus,
  secondsBetween,
  showConnection,
} from "./status.js";

const CLOSE_AFTER_TERMINAL_MS = 3000; // the metrics replay follows the status on connect
const $ = (id) => document.getElementById(id);

const page = JSON.parse($("run-page").textContent);
noteServerTime(page.server_time);
const state = {
  status: page.status,
  terminal: Boolean(page.terminal),
  queuedAt: null,
  startedAt: page.started_at,
  finishedAt: page.finished_at,
  queuePosition: null,
  waiting: null, // why a queued run waits beyond its turn ("no worker is available")
  runSeconds: null,
  have: [0, 0], // bytes received per stream = the offsets to resume from
  marked: [false, false], // a stream's "truncated here" marker is in the log
  targetLine: lineFromHash(), // a "#L<n>" line to scroll to once it has arrived (0-based; -1: none)
  closeTimer: 0,
};

const buffer = new LogBuffer();
const jump = $("jump-to-bottom");
const view = new LogView($("log"), buffer, { onFollowChange: (follow) => (jump.hidden = follow) });
jump.addEventListener("click", () => view.scrollToBottom());

// -- finding things in the output: "#L<n>" links and search -------------------------------------

function lineFromHash() {
  const m = /^#L(\d{1,9})$/.exec(location.hash);
  return m ? Number(m[1]) - 1 : -1;
}

function showTargetLine() {
  const i = state.targetLine;
  if (i < 0 || i >= buffer.lines.length) return;
  state.targetLine = -1;
  view.target = i;
  view.scrollToLine(i);
}

window.addEventListener("hashchange", () => {
  state.targetLine = lineFromHash();
  showTargetLine();
});

const search = new LogSearch(buffer);
const searchForm = $("log-search");
const searchInput = $("log-search-input");
let rescanTimer = 0;
if (!("expired" in searchForm.dataset)) searchForm.hidden = false;

function showSearch() {
  $("search-count").textContent = search.describe();
  view.search = search.query ? search : null;
  view.redraw();
}

function goToMatch(direction) {
  if (searchInput.value !== search.query) search.set(searchInput.value);
  const line = search.step(direction);
  showSearch();
  if (line >= 0) view.scrollToLine(line);
}

searchInput.addEventListener("input", () => {
  search.set(searchInput.value);
  showSearch();
  if (search.currentLine >= 0) view.scrollToLine(search.currentLine);
});
searchInput.addEventListener("keydown", (event) => {
  if (event.key === "Enter") {
    event.preventDefault();
    goToMatch(event.shiftKey ? -1 : 1);
  } else if (event.key === "Escape") {
    searchInput.value = "";
    search.set("");
    showSearch();
  }
});
searchForm.addEventListener("submit", (event) => event.preventDefault());
$("search-next").addEventListener("click", () => goToMatch(1));
$("show-times").addEventListener("change", (event) => view.setShowTimes(event.currentTarget.checked));
$("search-prev").addEventListener("click", () => goToMatch(-1));

// New output while searching: count again, at most a few times a second.
function outputChanged() {
  if (search.query && !rescanTimer) {
    rescanTimer = setTimeout(() => {
      rescanTimer = 0;
      search.scan();
      showSearch();
    }, 250);
  }
  showTargetLine();
}

const plots = new MetricsPlots({
  cpuEl: $("cpu-plot"),
  memoryEl: $("memory-plot"),
  readoutEl: $("metrics-readout"),
  memoryLimitBytes: page.memory_limit_bytes,
  memoryOverheadBytes: memoryOverheadBytes(page.engine),
  cpuCores: page.cpu_cores,
});

const socket = new LiveSocket({
  url: () => websocketUrl(page.ws_path, `stdout=${state.have[STDOUT]}&stderr=${state.have[STDERR]}`),
  onMessage,
  onState: (s, detail) => showConnection($("connection"), s, detail),
});

// For the browser tests and for poking at the page from the console.
window.crucibleRun = { page, state, buffer, view, plots, socket, search };

function onMessage(message) {
  if (message.type === "output") onOutput(message);
  else if (message.type === "status") onStatus(message);
  else if (message.type === "metrics") plots.add(message.samples || []);
}

function onOutput({ stream, offset, data, t }) {
  const s = STREAMS.indexOf(stream);
  if (s < 0 || !Number.isInteger(offset)) return;
  const bytes = base64Bytes(data);
  if (offset > state.have[s]) {
    // A hole: the server promises none, but if it ever happens, asking again from our offsets
    // is always correct (the replay fills it).
    console.warn(`crucible: ${stream} jumped from ${state.have[s]} to ${offset}; reconnecting`);
    socket.reconnect();
    return;
  }
  const skip = state.have[s] - offset; // bytes we already have (never expected, but harmless)
  if (skip >= bytes.length) return;
  const fresh = skip > 0 ? bytes.subarray(skip) : bytes;
  // The server's time for replayed output; live output is timed on arrival (within milliseconds).
  const at = Number.isFinite(t) ? t : !state.terminal && state.startedAt ? secondsBetween(state.startedAt) : null;
  buffer.write(s, fresh, at);
  state.have[s] += fresh.length;
  view.update();
  showSizes();
  showEmpty();
  outputChanged();
}

function onStatus(m) {
  noteServerTime(m.server_time);
  state.status = m.status;
  state.terminal = TERMINAL.has(m.status);
  state.queuedAt = m.queued_at ?? state.queuedAt;
  state.startedAt = m.started_at ?? state.startedAt;
  state.finishedAt = m.finished_at ?? state.finishedAt;
  state.queuePosition = m.queue_position ?? null;
  state.waiting = m.waiting ?? null;
  state.runSeconds = m.run_seconds ?? null; // the server's own figure once finished: no clock skew

  renderStatus($("run-status"), m.status, m.reason);
  document.title = `Run #${page.run_id} (${m.status}) · Crucible`;
  $("exit-code").textContent = m.exit_code ?? "–";
  $("run-detail-text").textContent = detailWords(m.detail);
  $("detail-row").hidden = !m.detail;
  const cancelForm = $("cancel-form"); // absent when this user may not cancel the run
  if (cancelForm) cancelForm.hidden = state.terminal;
  if (m.cpu_seconds != null && m.peak_memory_bytes != null) {
    // Only if the server includes the final usage in the status message.
    const peak = peakMemoryWords({
      peak: m.peak_memory_bytes,
      limit: page.memory_limit_bytes,
      reason: m.reason,
      engine: page.engine,
    });
    $("usage").textContent = `${m.cpu_seconds.toFixed(2)} s of CPU · ${peak}`;
    $("usage-row").hidden = false;
  }
  STREAMS.forEach((stream, s) => {
    const el = $(`truncated-${stream}`);
    if (m[`${stream}_truncated`]) {
      const words = `${stream} truncated: ${formatBytes(m[`${stream}_bytes`])} written, first ${formatBytes(Number(el.dataset.limit))} kept`;
      el.textContent = words;
      el.hidden = false;
      if (state.terminal && !state.marked[s]) {
        // All of the stream is here (the replay comes before a terminal status): mark where it was cut.
        buffer.end(s);
        buffer.marker(s, `[${words}: the rest was not kept]`);
        state.marked[s] = true;
      }
    }
  });
  tick();
  showEmpty();

  if (state.terminal) {
    // No output follows a terminal status (and on connect the replay comes before it): flush a
    // partial character or escape sequence at the very end so it shows.
    buffer.end(STDOUT);
    buffer.end(STDERR);
    view.update();
    outputChanged();
    plots.finish({ runSeconds: m.run_seconds, cpuSeconds: m.cpu_seconds, peakMemoryBytes: m.peak_memory_bytes });
    if (!state.closeTimer) state.closeTimer = setTimeout(() => socket.stop(), CLOSE_AFTER_TERMINAL_MS);
  }
}

// Elapsed time while running, time in the queue while queued; recomputed from the timestamps
// each tick, so a tab the browser throttled shows the right value when it wakes.
function tick() {
  const elapsed = $("elapsed");
  if (state.startedAt) {
    const seconds = state.terminal && state.runSeconds != null ? state.runSeconds
      : secondsBetween(state.startedAt, state.terminal ? state.finishedAt : null);
    elapsed.textContent = state.terminal ? formatSeconds(seconds) : `${formatSeconds(seconds)} (running)`;
  } else if (state.terminal) {
    elapsed.textContent = "–";
  } else {
    elapsed.textContent = "not started yet";
  }
  const queue = $("queue-info");
  if (state.status === "queued") {
    const p = state.queuePosition;
    const where = p == null ? "" : p === 0 ? ", next in line" : `, ${p} run${p === 1 ? "" : "s"} ahead`;
    const waited = secondsBetween(state.queuedAt);
    const why = state.waiting ? `: ${state.waiting}` : "";
    queue.textContent = ` (waiting${waited == null ? "" : ` ${formatSeconds(waited)}`}${where}${why})`;
  } else if (state.queuedAt && state.startedAt) {
    queue.textContent = ` (waited ${formatSeconds(secondsBetween(state.queuedAt, state.startedAt))})`;
  }
}
setInterval(() => {
  if (!state.terminal) tick();
}, 200);

// The empty pane says why it is empty: not started, nothing printed yet, or nothing printed at all.
function showEmpty() {
  const el = $("log-empty");
  el.hidden = state.have[STDOUT] + state.have[STDERR] > 0;
  if (el.hidden) return;
  el.textContent = state.terminal ? "(no output)" : state.status === "queued" ? "waiting for the run to start…" : "waiting for output…";
}

function showSizes() {
  $("output-size").textContent = `${formatBytes(state.have[STDOUT])} stdout · ${formatBytes(state.have[STDERR])} stderr`;
  if (buffer.droppedLines) {
    const el = $("log-dropped");
    el.textContent = `Only the first ${buffer.maxLines.toLocaleString()} lines are shown; download the log for the rest.`;
    el.hidden = false;
  }
}

// Cancel without leaving the page (the log and plots stay); the websocket brings the new status.
// Without JavaScript the form posts normally and the server redirects back here.
$("cancel-form")?.addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = event.currentTarget;
  const button = form.querySelector("button");
  button.disabled = true;
  button.textContent = "Cancelling…";
  try {
    const response = await fetch(form.action, {
      method: "POST",
      body: new FormData(form), // carries csrfmiddlewaretoken
      credentials: "same-origin",
      redirect: "manual", // the redirect goes to this very page: no need to load it
    });
    if (response.type !== "opaqueredirect" && !response.ok) throw new Error(`HTTP ${response.status}`);
  } catch (err) {
    console.warn("crucible: cancel by fetch failed, posting the form", err);
    form.submit();
    return;
  }
  // Still running 5 s later (the server promises 1 s): let the user try again.
  setTimeout(() => {
    if (!state.terminal) {
      button.disabled = false;
      button.textContent = "Cancel";
    }
  }, 5000);
});

function base64Bytes(b64) {
  const bin = atob(b64 || "");
  const bytes = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
  return bytes;
}

showSizes();
showEmpty();
tick();
socket.start();
