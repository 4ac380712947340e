// Live CPU and memory plots of a run (vendored uPlot, loaded as the global `uPlot`), plus a line
// of current numbers that works even if the plot library failed to load.

const MiB = 1024 * 1024;
const HEIGHT = 170;

function contentWidth(el) {
  const cs = getComputedStyle(el);
  return Math.max(200, el.clientWidth - parseFloat(cs.paddingLeft) - parseFloat(cs.paddingRight));
}

export class MetricsPlots {
  constructor({ cpuEl, memoryEl, readoutEl, memoryLimitBytes, cpuCores }) {
    this.readoutEl = readoutEl;
    this.limitMiB = memoryLimitBytes / MiB;
    this.cpuMax = 100 * (cpuCores || 1);
    // Columns, as uPlot wants them: t, cpu %, memory MiB, the memory limit (a flat line).
    this.t = [];
    this.cpu = [];
    this.mem = [];
    this.limit = [];
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
        scales: { x: { time: false }, y: { range: (u, min, max) => [0, Math.max(this.cpuMax, max || 0)] } },
        series: [{ label: "t" }, { label: "CPU %", stroke: "#1971c2", fill: "rgba(25, 113, 194, 0.12)", width: 1.5 }],
      },
      [this.t, this.cpu],
      cpuEl,
    );
    this.memoryPlot = new window.uPlot(
      {
        ...common(memoryEl, "memory MiB"),
        scales: { x: { time: false }, y: { range: (u, min, max) => [0, Math.max(this.limitMiB * 1.05, max || 0)] } },
        series: [
          { label: "t" },
          { label: "memory MiB", stroke: "#2b8a3e", fill: "rgba(43, 138, 62, 0.12)", width: 1.5 },
          { label: "limit", stroke: "#c92a2a", dash: [6, 4], width: 1, points: { show: false } },
        ],
      },
      [this.t, this.mem, this.limit],
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

  // Samples arrive in time order; a reconnect replays all of them, so older ones are skipped.
  add(samples) {
    let added = false;
    for (const s of samples) {
      if (!(s.t > this.lastT)) continue;
      this.lastT = s.t;
      this.t.push(s.t);
      this.cpu.push(s.cpu_percent ?? null);
      this.mem.push(s.memory_bytes == null ? null : s.memory_bytes / MiB);
      this.limit.push(this.limitMiB);
      this.last = s;
      added = true;
    }
    if (added && !this.frame) this.frame = requestAnimationFrame(() => this._draw());
  }

  _draw() {
    this.frame = 0;
    if (this.cpuPlot) {
      this.cpuPlot.setData([this.t, this.cpu]);
      this.memoryPlot.setData([this.t, this.mem, this.limit]);
    }
    const s = this.last;
    if (s && this.readoutEl) {
      const parts = [];
      if (s.cpu_percent != null) parts.push(`CPU ${s.cpu_percent.toFixed(0)} %`);
      if (s.memory_bytes != null) parts.push(`memory ${(s.memory_bytes / MiB).toFixed(1)} MiB of ${this.limitMiB.toFixed(0)} MiB`);
      if (s.processes != null) parts.push(`${s.processes} process${s.processes === 1 ? "" : "es"}`);
      parts.push(`at ${s.t.toFixed(1)} s`);
      this.readoutEl.textContent = parts.join(" · ");
    }
  }
}
