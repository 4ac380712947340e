// Search in a run's whole output (every line of the LogBuffer, not only the rows in the DOM):
// matches in order, a current one to go to with next/previous, and the ranges to mark in a line.
// Case-insensitive unless the query has a capital letter (like most editors' "smart case").

export class LogSearch {
  constructor(buffer) {
    this.buffer = buffer;
    this.query = "";
    this.matches = []; // [line index, start] in output order
    this.byLine = new Map(); // line index -> starts
    this.current = -1;
  }

  get count() {
    return this.matches.length;
  }

  set(query) {
    this.query = query;
    this.current = -1;
    this.scan();
    if (this.matches.length) this.current = 0;
  }

  // Find every match again (output grew or changed); the current match stays where it was.
  scan() {
    const was = this.matches[this.current];
    this.matches = [];
    this.byLine = new Map();
    const q = this.query;
    if (!q) return;
    const fold = q === q.toLowerCase();
    const needle = fold ? q.toLowerCase() : q;
    const lines = this.buffer.lines;
    for (let i = 0; i < lines.length; i++) {
      if (lines[i].m) continue; // our own markers are not output
      const text = fold ? lines[i].t.toLowerCase() : lines[i].t;
      let at = text.indexOf(needle);
      if (at < 0) continue;
      const starts = [];
      while (at >= 0) {
        starts.push(at);
        this.matches.push([i, at]);
        at = text.indexOf(needle, at + needle.length);
      }
      this.byLine.set(i, starts);
    }
    if (was) {
      const again = this.matches.findIndex(([line, start]) => line === was[0] && start === was[1]);
      this.current = again >= 0 ? again : Math.min(this.current, this.matches.length - 1);
    }
  }

  // Move to the next (+1) or previous (-1) match, wrapping around; returns its line or -1.
  step(direction) {
    const n = this.matches.length;
    if (!n) return -1;
    this.current = this.current < 0 ? (direction > 0 ? 0 : n - 1) : (this.current + direction + n) % n;
    return this.matches[this.current][0];
  }

  get currentLine() {
    return this.current >= 0 && this.current < this.matches.length ? this.matches[this.current][0] : -1;
  }

  // [[start, end, isCurrent], ...] for line `index`, for LogView to mark.
  rangesOf(index) {
    const starts = this.byLine.get(index);
    if (!starts) return [];
    const cur = this.matches[this.current];
    return starts.map((s) => [s, s + this.query.length, Boolean(cur && cur[0] === index && cur[1] === s)]);
  }

  describe() {
    if (!this.query) return "";
    if (!this.matches.length) return "no matches";
    return `${this.current + 1} of ${this.matches.length}`;
  }
}
