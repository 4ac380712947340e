// A windowed view of a LogBuffer: only the rows visible in the pane (plus a few) are in the DOM,
// so 100 000 lines or a 1 MiB line cost the same to draw as a screenful.
//
// Long lines are wrapped at the pane's width in characters (a monospace font makes every row the
// same height, which is what lets a row number be turned into a pixel offset without measuring
// the DOM). Text goes into the DOM only through textContent / text nodes, never as markup.
//
// Each line has its number in a gutter, a link to "#L<n>" (not part of the selected text); a line
// can be scrolled to and highlighted (`target`), and search matches (`search`, a LogSearch) are
// marked in the rows drawn.

import { STDERR } from "./logbuffer.js";

const OVERSCAN = 8; // rows drawn above and below the visible ones, so fast scrolling shows no gaps
// Browsers cap an element's height (Chromium at ~33.5 million px); above this the spacer stays at
// this height and scroll positions are mapped to rows proportionally.
const MAX_SPACER_PX = 15_000_000;
const TIME_CHARS = 9; // "+12345.67"

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
    this.gutterChars = 5; // the widest line number, plus a space
    this.target = -1; // the line a "#L<n>" link points at, highlighted
    this.search = null; // { rangesOf(lineIndex) -> [[start, end, current], ...], version }
    this.showTimes = false; // a second gutter with each line's time since the run started

    viewport.classList.add("log-viewport");
    this.spacer = document.createElement("div");
    this.spacer.className = "log-spacer";
    this.rowsEl = document.createElement("div");
    this.rowsEl.className = "log-rows";
    this.spacer.append(this.rowsEl);
    viewport.replaceChildren(this.spacer);
    viewport.style.setProperty("--ln-chars", String(this.gutterChars));

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

  // Scroll line `index` (0-based) to a third of the way down the pane, and stop following.
  scrollToLine(index) {
    this._count();
    if (index < 0 || index >= this.counted) return;
    this._setFollow(false);
    const vp = this.viewport;
    const rowH = this.rowHeight;
    const fullHeight = this.totalRows * rowH;
    const wanted = Math.max(0, this.rowStart[index] - Math.floor(vp.clientHeight / rowH / 3));
    this.spacer.style.height = `${Math.min(fullHeight, MAX_SPACER_PX)}px`; // room to scroll to it
    if (fullHeight <= MAX_SPACER_PX) {
      vp.scrollTop = wanted * rowH;
    } else {
      const maxScroll = Math.max(1, Math.min(fullHeight, MAX_SPACER_PX) - vp.clientHeight);
      vp.scrollTop = (wanted / Math.max(1, this.totalRows - vp.clientHeight / rowH)) * maxScroll;
    }
    this.drawn = null;
    this.render();
  }

  // Show or hide each line's time since the run started; lines wrap anew at the width left.
  setShowTimes(show) {
    this.showTimes = show;
    this.viewport.classList.toggle("log-with-times", show);
    this._measure();
    this.counted = 0;
    this.redraw();
  }

  // Something about how rows look changed (target, search): draw them again.
  redraw() {
    this.drawn = null;
    this.update();
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
    // Minus the row's own left border and padding (the stderr marker) and the line numbers' gutter,
    // so text never overflows.
    const gutters = this.gutterChars + 1 + (this.showTimes ? TIME_CHARS + 1 : 0);
    const cols = Math.max(20, Math.floor((inner - 16 - gutters * this.charWidth) / this.charWidth));
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
    const digits = String(this.buffer.lines.length).length + 1;
    if (digits > this.gutterChars) {
      // Wider line numbers leave fewer columns for text: wrap every line again.
      this.gutterChars = digits;
      this.viewport.style.setProperty("--ln-chars", String(digits));
      this._measure();
      this.counted = 0;
      this.drawn = null;
    }
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
        frag.append(this._lineElement(lines[i], i, row - this.rowStart[i]));
      }
    }
    this.rowsEl.replaceChildren(frag);
  }

  // One visual row: the line number (on a line's first row) and the row of text.
  _lineElement(line, index, part) {
    const wrap = document.createElement("div");
    wrap.className = "log-line";
    if (index === this.target) wrap.classList.add("log-target");
    let gutter;
    if (part === 0) {
      gutter = document.createElement("a");
      gutter.href = `#L${index + 1}`;
      gutter.textContent = String(index + 1);
      gutter.dataset.line = String(index + 1);
      gutter.tabIndex = -1; // 100 000 links would swamp the tab order; the pane itself is focusable
    } else {
      gutter = document.createElement("span");
    }
    gutter.className = "log-ln";
    gutter.setAttribute("aria-hidden", "true");
    if (this.showTimes) {
      const time = document.createElement("span");
      time.className = "log-time";
      time.setAttribute("aria-hidden", "true");
      if (part === 0 && line.at != null) time.textContent = `+${line.at.toFixed(2)}`;
      wrap.append(time);
    }
    wrap.append(gutter, this._rowElement(line, index, part));
    return wrap;
  }

  _rowElement(line, index, part) {
    const el = document.createElement("div");
    el.className = line.s === STDERR ? "log-row log-stderr" : "log-row";
    if (line.m) el.classList.add("log-marker");
    if (part > 0) el.classList.add("log-cont");
    const a = boundary(line.t, part * this.cols);
    const b = boundary(line.t, (part + 1) * this.cols);
    const marks = this.search ? this.search.rangesOf(index).filter(([s, e]) => e > a && s < b) : [];
    if (!line.st && !marks.length) {
      el.textContent = line.t.slice(a, b);
      return el;
    }
    // Cut [a, b) at every style change and match edge; each piece is text, a styled span, or both
    // inside a <mark> for a search match.
    const st = line.st || [0, null];
    const cuts = new Set([a, b]);
    for (let k = 0; k < st.length; k += 2) if (st[k] > a && st[k] < b) cuts.add(st[k]);
    for (const [s, e] of marks) {
      if (s > a && s < b) cuts.add(s);
      if (e > a && e < b) cuts.add(e);
    }
    const edges = [...cuts].sort((x, y) => x - y);
    let k = 0;
    for (let p = 0; p + 1 < edges.length; p++) {
      const from = edges[p];
      const to = edges[p + 1];
      while (k + 2 < st.length && st[k + 2] <= from) k += 2;
      const style = st[k + 1];
      const text = line.t.slice(from, to);
      let node;
      if (!style || style.plain) {
        node = document.createTextNode(text);
      } else {
        node = document.createElement("span");
        node.className = style.cls;
        if (style.css) Object.assign(node.style, style.css);
        node.textContent = text;
      }
      const match = marks.find(([s, e]) => s <= from && to <= e);
      if (match) {
        const mark = document.createElement("mark");
        mark.className = match[2] ? "log-match log-current" : "log-match";
        mark.append(node);
        node = mark;
      }
      el.append(node);
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
