// Live CPU and memory plots of a run (vendored uPlot, loaded as the global `uPlot`), plus a line
// of current numbers that works even if the plot library failed to load. The memory limit (and the
// room gVisor has beyond it for itself) are drawn as lines whatever the number of samples; a run
// too short for two samples is plotted from its totals once it ends.

const MiB = 1024 * 1024;
const HEIGHT = 170;

function contentWidth(el) {
  const cs = getComputedStyle(el);
  return Math.max(200, el.clientWidth - parseFloat(cs.paddingLeft) - parseFloat(cs.paddingRight));
}

export class MetricsPlots {
  constructor({ cpuEl, memoryEl, readoutEl, memoryLimitBytes, memoryOverheadBytes = 0, cpuCores }) {
    this.readoutEl = readoutEl;
    this.limitMiB = memoryLimitBytes / MiB;
    this.capMiB = (memoryLimitBytes + memoryOverheadBytes) / MiB;
    this.cpuMax = 100 * (cpuCores || 1);
    // Columns, as uPlot wants them: t, cpu %, memory MiB.
    this.t = [];
    this.cpu = [];
    this.mem = [];
    this.totals = null; // set when the run ends: plotted instead if it had fewer than two samples
    this.lastT = -Infinity;
    this.last = null;
    this.frame = 0;
    this.cpuPlot = this.memoryPlot = null;
    if (typeof window.uPlot !== "function") return;
    const common = (el, yLabel) => ({
      width: contentWidth(el),
      height: HEIGHT,
      scales: { x: { time: false } },
      legend: { live: false },
      cursor: { drag: { x: false, y: false } },
      axes: [
        { label: "seconds", size: 36, labelSize: 16 },
        { label: yLabel, size: 56, labelSize: 16 },
      ],
    });
    this.cpuPlot = new window.uPlot(
      {
        ...common(cpuEl, "CPU %"),
        scales: {
          x: { time: false, range: (u, min, max) => [0, Math.max(1, max || 0)] },
          y: { range: (u, min, max) => [0, Math.max(this.cpuMax, max || 0)] },
        },
        series: [{ label: "t" }, { label: "CPU %", stroke: "#1971c2", fill: "rgba(25, 113, 194, 0.12)", width: 1.5 }],
      },
      [this.t, this.cpu],
      cpuEl,
    );
    this.memoryPlot = new window.uPlot(
      {
        ...common(memoryEl, "memory MiB"),
        scales: {
          x: { time: false, range: (u, min, max) => [0, Math.max(1, max || 0)] },
          y: { range: (u, min, max) => [0, Math.max(this.capMiB, this.limitMiB, max || 0) * 1.08] },
        },
        series: [{ label: "t" }, { label: "memory MiB", stroke: "#2b8a3e", fill: "rgba(43, 138, 62, 0.12)", width: 1.5 }],
        hooks: { draw: [(u) => this._drawLimits(u)] },
      },
      [this.t, this.mem],
      memoryEl,
    );
    // Plots are drawn at a fixed pixel width; follow the page's width.
    new ResizeObserver(() => {
      this.cpuPlot.setSize({ width: contentWidth(cpuEl), height: HEIGHT });
      this.memoryPlot.setSize({ width: contentWidth(memoryEl), height: HEIGHT });
    }).observe(cpuEl.parentElement);
  }

  get sampleCount() {
    return this.t.length;
  }

  get fromTotals() {
    return this.totals !== null && this.t.length < 2;
  }

  // Horizontal lines across the plot: the run's limit, and the sandbox's cap if gVisor has room.
  _drawLimits(u) {
    this.linesDrawn = [];
    const line = (mib, color, dash, label, align = "right") => {
      this.linesDrawn.push(mib);
      const y = Math.round(u.valToPos(mib, "y", true)) + 0.5;
      const { left, width } = u.bbox;
      const ctx = u.ctx;
      ctx.save();
      ctx.strokeStyle = color;
      ctx.fillStyle = color;
      ctx.lineWidth = devicePixelRatio;
      ctx.setLineDash(dash.map((d) => d * devicePixelRatio));
      ctx.beginPath();
      ctx.moveTo(left, y);
      ctx.lineTo(left + width, y);
      ctx.stroke();
      ctx.font = `${11 * devicePixelRatio}px system-ui, sans-serif`;
      ctx.textAlign = align;
      const x = align === "right" ? left + width - 4 * devicePixelRatio : left + 4 * devicePixelRatio;
      ctx.fillText(label, x, y - 4 * devicePixelRatio);
      ctx.restore();
    };
    line(this.limitMiB, "#c92a2a", [6, 4], `limit ${this.limitMiB.toFixed(0)} MiB`);
    if (this.capMiB > this.limitMiB) {
      line(this.capMiB, "#868e96", [2, 3], `+${(this.capMiB - this.limitMiB).toFixed(0)} MiB for gVisor`, "left");
    }
  }

  // The run ended: if it was too short for two samples, plot its totals (average CPU from start to
  // end, peak memory at the end) so a finished run never has empty plots.
  finish({ runSeconds, cpuSeconds, peakMemoryBytes }) {
    if (!(runSeconds > 0) || cpuSeconds == null) return;
    const cpu = (100 * cpuSeconds) / runSeconds;
    const mem = peakMemoryBytes == null ? null : peakMemoryBytes / MiB;
    this.totals = { t: [0, runSeconds], cpu: [cpu, cpu], mem: [mem, mem] };
    this.totals.last = { t: runSeconds, cpu_percent: cpu, memory_bytes: peakMemoryBytes };
    if (!this.frame) this.frame = requestAnimationFrame(() => this._draw());
  }

  // Samples arrive in time order; a reconnect replays all of them, so older ones are skipped.
  add(samples) {
    let added = false;
    for (const s of samples) {
      if (!(s.t > this.lastT)) continue;
      this.lastT = s.t;
      this.t.push(s.t);
      this.cpu.push(s.cpu_percent ?? null);
      this.mem.push(s.memory_bytes == null ? null : s.memory_bytes / MiB);
      this.last = s;
      added = true;
    }
    if (added && !this.frame) this.frame = requestAnimationFrame(() => this._draw());
  }

  _draw() {
    this.frame = 0;
    const shown = this.fromTotals ? this.totals : this;
    if (this.cpuPlot) {
      this.cpuPlot.setData([shown.t, shown.cpu]);
      this.memoryPlot.setData([shown.t, shown.mem]);
    }
    const s = this.fromTotals ? this.totals.last : this.last;
    if (s && this.readoutEl) {
      const parts = [];
      if (s.cpu_percent != null) parts.push(`CPU ${s.cpu_percent.toFixed(0)} %${this.fromTotals ? " on average" : ""}`);
      if (s.memory_bytes != null) {
        const room = this.capMiB > this.limitMiB ? ` + ${(this.capMiB - this.limitMiB).toFixed(0)} MiB for gVisor` : "";
        const what = this.fromTotals ? "peak memory" : "memory";
        parts.push(`${what} ${(s.memory_bytes / MiB).toFixed(1)} MiB in the sandbox (limit ${this.limitMiB.toFixed(0)} MiB${room})`);
      }
      if (s.processes != null) parts.push(`${s.processes} process${s.processes === 1 ? "" : "es"}`);
      parts.push(this.fromTotals ? `over ${s.t.toFixed(2)} s (too short for samples: the whole run's figures)` : `at ${s.t.toFixed(1)} s`);
      this.readoutEl.textContent = parts.join(" · ");
    }
  }
}
