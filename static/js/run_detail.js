// The run page: follows one run over its websocket (docs/live-runs.md) and keeps the log pane,
// the plots, the status badge, the elapsed time and the buttons up to date.
//
// The page gets all output over the websocket, from offset 0: the server replays what is stored,
// then relays live chunks. We count the bytes we have per stream and reconnect with those
// offsets, so a reconnect neither loses nor repeats a byte.

import { LogBuffer, STDERR, STDOUT, STREAMS } from "./logbuffer.js";
import { LogView } from "./logview.js";
import { MetricsPlots } from "./plots.js";
import { LiveSocket, websocketUrl } from "./livesocket.js";
import { TERMINAL, formatSeconds, noteServerTime, renderStatus, secondsBetween, showConnection } from "./status.js";

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
  closeTimer: 0,
};

const buffer = new LogBuffer();
const jump = $("jump-to-bottom");
const view = new LogView($("log"), buffer, { onFollowChange: (follow) => (jump.hidden = follow) });
jump.addEventListener("click", () => view.scrollToBottom());

const plots = new MetricsPlots({
  cpuEl: $("cpu-plot"),
  memoryEl: $("memory-plot"),
  readoutEl: $("metrics-readout"),
  memoryLimitBytes: page.memory_limit_bytes,
  cpuCores: page.cpu_cores,
});

const socket = new LiveSocket({
  url: () => websocketUrl(page.ws_path, `stdout=${state.have[STDOUT]}&stderr=${state.have[STDERR]}`),
  onMessage,
  onState: (s, detail) => showConnection($("connection"), s, detail),
});

// For the browser tests and for poking at the page from the console.
window.crucibleRun = { page, state, buffer, view, plots, socket };

function onMessage(message) {
  if (message.type === "output") onOutput(message);
  else if (message.type === "status") onStatus(message);
  else if (message.type === "metrics") plots.add(message.samples || []);
}

function onOutput({ stream, offset, data }) {
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
  buffer.write(s, fresh);
  state.have[s] += fresh.length;
  view.update();
  showSizes();
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
  $("run-detail-text").textContent = m.detail || "";
  $("detail-row").hidden = !m.detail;
  const cancelForm = $("cancel-form"); // absent when this user may not cancel the run
  if (cancelForm) cancelForm.hidden = state.terminal;
  if (m.cpu_seconds != null && m.peak_memory_bytes != null) {
    // Only if the server includes the final usage in the status message.
    $("usage").textContent = `${m.cpu_seconds.toFixed(2)} CPU s · ${formatBytes(m.peak_memory_bytes)} peak memory (sandbox included)`;
    $("usage-row").hidden = false;
  }
  for (const stream of STREAMS) {
    const el = $(`truncated-${stream}`);
    if (m[`${stream}_truncated`]) {
      el.textContent = `${stream} truncated: ${formatBytes(m[`${stream}_bytes`])} written, first ${formatBytes(Number(el.dataset.limit))} kept`;
      el.hidden = false;
    }
  }
  tick();

  if (state.terminal) {
    // No output follows a terminal status (and on connect the replay comes before it): flush a
    // partial character or escape sequence at the very end so it shows.
    buffer.end(STDOUT);
    buffer.end(STDERR);
    view.update();
    $("log-empty").hidden = state.have[STDOUT] + state.have[STDERR] > 0;
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

function formatBytes(n) {
  if (n == null || !Number.isFinite(n)) return "–";
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  if (n < 1024 ** 3) return `${(n / 1024 / 1024).toFixed(1)} MiB`;
  return `${(n / 1024 ** 3).toFixed(2)} GiB`;
}

showSizes();
tick();
socket.start();
