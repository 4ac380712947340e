// A windowed view of a LogBuffer: only the rows visible in the pane (plus a few) are in the DOM,
// so 100 000 lines or a 1 MiB line cost the same to draw as a screenful.
//
// Long lines are wrapped at the pane's width in characters (a monospace font makes every row the
// same height, which is what lets a row number be turned into a pixel offset without measuring
// the DOM). Text goes into the DOM only through textContent / text nodes, never as markup.

import { STDERR } from "./logbuffer.js";

const OVERSCAN = 8; // rows drawn above and below the visible ones, so fast scrolling shows no gaps
// Browsers cap an element's height (Chromium at ~33.5 million px); above this the spacer stays at
// this height and scroll positions are mapped to rows proportionally.
const MAX_SPACER_PX = 15_000_000;

export class LogView {
  constructor(viewport, buffer, { onFollowChange = () => {} } = {}) {
    this.viewport = viewport;
    this.buffer = buffer;
    this.onFollowChange = onFollowChange;
    this.follow = true; // stick to the bottom while new output arrives
    this.rowStart = new Float64Array(1024); // rowStart[i]: first visual row of line i
    this.counted = 0; // lines whose rowStart is valid
    this.totalRows = 0;
    this.cols = 80;
    this.frame = 0;
    this.drawn = null; // the rows in the DOM: { first, last, cols, lastLine }

    viewport.classList.add("log-viewport");
    this.spacer = document.createElement("div");
    this.spacer.className = "log-spacer";
    this.rowsEl = document.createElement("div");
    this.rowsEl.className = "log-rows";
    this.spacer.append(this.rowsEl);
    viewport.replaceChildren(this.spacer);

    this._measure();
    viewport.addEventListener("scroll", () => this._onScroll(), { passive: true });
    new ResizeObserver(() => {
      if (this._measure()) {
        this.counted = 0; // the wrap width changed: count every line's rows again
        this.drawn = null;
      }
      this.render();
    }).observe(viewport);
  }

  // Call after writing to the buffer; draws at most once per animation frame.
  update() {
    if (!this.frame) this.frame = requestAnimationFrame(() => this.render());
  }

  scrollToBottom() {
    this._setFollow(true);
    this.render();
  }

  // -- measuring -----------------------------------------------------------------------------

  _measure() {
    const probe = document.createElement("div");
    probe.className = "log-row";
    probe.style.cssText = "position:absolute; visibility:hidden; width:auto";
    probe.textContent = "0".repeat(100);
    this.rowsEl.append(probe);
    const rect = probe.getBoundingClientRect();
    probe.remove();
    this.rowHeight = Math.max(1, rect.height || 18);
    this.charWidth = Math.max(1, rect.width / 100 || 8);
    const style = getComputedStyle(this.viewport);
    const inner = this.viewport.clientWidth - parseFloat(style.paddingLeft) - parseFloat(style.paddingRight);
    // Minus the row's own left border and padding (the stderr marker), so text never overflows.
    const cols = Math.max(20, Math.floor((inner - 16) / this.charWidth));
    const changed = cols !== this.cols;
    this.cols = cols;
    return changed;
  }

  // -- row bookkeeping -------------------------------------------------------------------------

  _rowsOf(line) {
    return Math.max(1, Math.ceil(line.t.length / this.cols));
  }

  _count() {
    const lines = this.buffer.lines;
    const dirty = this.buffer.takeDirty();
    let from = Math.min(this.counted, dirty);
    if (lines.length > this.rowStart.length) {
      const grown = new Float64Array(Math.max(lines.length, this.rowStart.length * 2));
      grown.set(this.rowStart.subarray(0, from));
      this.rowStart = grown;
    }
    let row = from === 0 ? 0 : this.rowStart[from - 1] + this._rowsOf(lines[from - 1]);
    for (let i = from; i < lines.length; i++) {
      this.rowStart[i] = row;
      row += this._rowsOf(lines[i]);
    }
    this.counted = lines.length;
    this.totalRows = row;
    return from; // the first line whose rows may look different now
  }

  _lineAtRow(row) {
    let lo = 0, hi = this.counted - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (this.rowStart[mid] <= row) lo = mid;
      else hi = mid - 1;
    }
    return lo;
  }

  // -- drawing -------------------------------------------------------------------------------

  render() {
    if (this.frame) cancelAnimationFrame(this.frame);
    this.frame = 0;
    const changedFrom = this._count();
    const vp = this.viewport;
    const rowH = this.rowHeight;
    const fullHeight = this.totalRows * rowH;
    const spacerHeight = Math.min(fullHeight, MAX_SPACER_PX);
    this.spacer.style.height = `${spacerHeight}px`;
    const viewHeight = vp.clientHeight;
    if (this.follow) vp.scrollTop = vp.scrollHeight; // same task as the height change: no scroll event sees a gap
    const scrollTop = vp.scrollTop;
    const visibleRows = Math.ceil(viewHeight / rowH) + 1;

    // Which row sits at the top of the pane, with its fractional part for the pixel offset.
    let topRow;
    if (fullHeight <= MAX_SPACER_PX) {
      topRow = scrollTop / rowH;
    } else {
      const maxScroll = Math.max(1, spacerHeight - viewHeight);
      topRow = (Math.min(scrollTop, maxScroll) / maxScroll) * Math.max(0, this.totalRows - viewHeight / rowH);
    }
    const first = Math.max(0, Math.floor(topRow) - OVERSCAN);
    const last = Math.min(this.totalRows, Math.floor(topRow) + visibleRows + OVERSCAN);
    const offset = scrollTop - (topRow - first) * rowH;
    this.rowsEl.style.transform = `translateY(${Math.max(0, offset)}px)`;

    // Same rows as last time and none of their lines changed: keep the DOM, and with it whatever
    // the user has selected while reading a paused log.
    const drawn = this.drawn;
    if (drawn && drawn.first === first && drawn.last === last && drawn.cols === this.cols && changedFrom > drawn.lastLine) {
      return;
    }
    this.drawn = { first, last, cols: this.cols, lastLine: last > first ? this._lineAtRow(last - 1) : -1 };

    const frag = document.createDocumentFragment();
    if (last > first) {
      let i = this._lineAtRow(first);
      const lines = this.buffer.lines;
      for (let row = first; row < last; row++) {
        while (i + 1 < this.counted && this.rowStart[i + 1] <= row) i++;
        frag.append(this._rowElement(lines[i], row - this.rowStart[i]));
      }
    }
    this.rowsEl.replaceChildren(frag);
  }

  _rowElement(line, part) {
    const el = document.createElement("div");
    el.className = line.s === STDERR ? "log-row log-stderr" : "log-row";
    if (part > 0) el.classList.add("log-cont");
    const a = boundary(line.t, part * this.cols);
    const b = boundary(line.t, (part + 1) * this.cols);
    if (!line.st) {
      el.textContent = line.t.slice(a, b);
      return el;
    }
    // Style runs overlapping [a, b): st is [start, style, start, style, ...] in order.
    const st = line.st;
    let k = 0;
    while (k + 2 < st.length && st[k + 2] <= a) k += 2;
    for (; k < st.length && st[k] < b; k += 2) {
      const from = Math.max(a, st[k]);
      const to = Math.min(b, k + 2 < st.length ? st[k + 2] : line.t.length);
      if (to <= from) continue;
      const text = line.t.slice(from, to);
      const style = st[k + 1];
      if (style.plain) {
        el.append(text);
      } else {
        const span = document.createElement("span");
        span.className = style.cls;
        if (style.css) Object.assign(span.style, style.css);
        span.textContent = text;
        el.append(span);
      }
    }
    return el;
  }

  // -- following the end ------------------------------------------------------------------------

  // Scrolling up pauses following; scrolling back to the bottom resumes it. Our own scrolls (in
  // render) always land at the bottom, so they never pause it.
  // The rows are redrawn in the animation frame that follows (scroll events are dispatched just
  // before it, so nothing blank is ever painted) rather than here, which would draw twice a frame.
  _onScroll() {
    this._setFollow(this._atBottom());
    this.update();
  }

  _atBottom() {
    const vp = this.viewport;
    return vp.scrollTop + vp.clientHeight >= vp.scrollHeight - this.rowHeight / 2;
  }

  _setFollow(follow) {
    if (follow === this.follow) return;
    this.follow = follow;
    this.onFollowChange(follow);
  }
}

// A row boundary that does not cut a surrogate pair in half (it moves one back instead).
function boundary(text, index) {
  if (index <= 0) return 0;
  if (index >= text.length) return text.length;
  const c = text.charCodeAt(index);
  if (c >= 0xdc00 && c <= 0xdfff) {
    const p = text.charCodeAt(index - 1);
    if (p >= 0xd800 && p <= 0xdbff) return index - 1;
  }
  return index;
}
