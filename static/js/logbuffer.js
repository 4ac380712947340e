// The run's output as lines of styled text, built from raw byte chunks of stdout and stderr.
//
// Bytes are decoded per stream with a streaming TextDecoder, so a multi-byte character split
// across two chunks decodes as one character and invalid UTF-8 becomes U+FFFD. Escape sequences
// are parsed here (SGR colours kept as styles, everything else dropped); control characters are
// shown as visible escapes (\x00, \x07, ...), and so are the invisible bidirectional and zero-width
// characters (\u202e, \u200b, ...), with which output could make its own lines read as something
// else than what was printed. Nothing here touches the DOM: LogView renders the lines.

import { applySgr, marked, CONTROL, INVALID, PLAIN } from "./ansi.js";

export const STDOUT = 0, STDERR = 1;
export const STREAMS = ["stdout", "stderr"];

// A line is { s: stream, t: text, st: null | [start0, style0, start1, style1, ...], at } where the
// styles cover t from each start to the next (null: all plain) and `at` is the seconds after the
// run started that the line's first byte was written (null if unknown). The lines of both streams are
// interleaved in arrival order; each stream has its own open (unterminated) line.

const MAX_PENDING_ESCAPE = 4096; // an "escape sequence" longer than this is shown as text
const TAB = 8;

class StreamState {
  constructor(index) {
    this.index = index;
    this.decoder = new TextDecoder("utf-8", { fatal: false });
    this.style = PLAIN;
    this.pending = ""; // an escape sequence cut by the chunk boundary
    this.pendingCR = false; // a "\r" ending a chunk: "\r\n" or a carriage return, unknown yet
    this.open = null; // the line this stream is writing to
  }
}

export class LogBuffer {
  constructor({ maxLines = 2_000_000 } = {}) {
    this.lines = [];
    this.maxLines = maxLines;
    this.droppedLines = 0; // lines not kept once maxLines was reached (the download has them all)
    this.streams = [new StreamState(STDOUT), new StreamState(STDERR)];
    this.dirtyFrom = Infinity; // lowest index of a line added or changed since takeDirty()
  }

  // Bytes of one stream, in order, written `at` seconds after the run started (null: unknown).
  // Returns nothing; read lines / takeDirty() afterwards.
  write(stream, bytes, at = null) {
    this.at = at;
    const st = this.streams[stream];
    this._text(st, st.decoder.decode(bytes, { stream: true }));
  }

  // The stream has ended: a dangling partial character shows as U+FFFD, a dangling escape as text.
  end(stream) {
    const st = this.streams[stream];
    let text = st.decoder.decode();
    if (st.pending) {
      text = st.pending + text;
      st.pending = "";
      this._text(st, text, true);
    } else if (text) {
      this._text(st, text, true);
    }
    st.pendingCR = false;
  }

  // A line of our own after what the stream wrote (e.g. "truncated here"), flagged `m` so it is
  // drawn apart from the program's output.
  marker(stream, text) {
    const st = this.streams[stream];
    st.open = null;
    if (this.lines.length >= this.maxLines) return;
    this.lines.push({ s: stream, t: text, st: null, m: true });
    this._dirty(this.lines.length - 1);
  }

  takeDirty() {
    const d = this.dirtyFrom;
    this.dirtyFrom = Infinity;
    return d;
  }

  // -- parsing -------------------------------------------------------------------------------

  _text(st, text, final = false) {
    if (st.pending) {
      text = st.pending + text;
      st.pending = "";
    }
    if (st.pendingCR && text) {
      st.pendingCR = false;
      if (text[0] === "\n") {
        this._newline(st);
        text = text.slice(1);
      } else {
        this._carriageReturn(st);
      }
    }
    let i = 0;
    const n = text.length;
    while (i < n) {
      // A plain char-code scan: no regex match objects to allocate per line (100 000 lines).
      let j = i;
      let c = 0;
      for (; j < n; j++) {
        c = text.charCodeAt(j);
        if (c < 0x20 || (c >= 0x7f && c <= 0x9f) || c === 0xfffd || (c >= 0x61c && invisible(c))) break;
      }
      if (j > i) this._append(st, j - i === n ? text : text.slice(i, j), st.style);
      if (j === n) break;
      i = j + 1;
      if (c === 10) {
        this._newline(st);
      } else if (c === 13) {
        if (j + 1 === n) st.pendingCR = true;
        else if (text.charCodeAt(j + 1) === 10) {
          this._newline(st);
          i = j + 2;
        } else this._carriageReturn(st);
      } else if (c === 9) {
        const col = st.open ? st.open.t.length : 0;
        this._append(st, " ".repeat(TAB - (col % TAB)), st.style);
      } else if (c === 27) {
        const end = this._escape(st, text, j, final);
        if (end < 0) {
          st.pending = text.slice(j); // wait for the rest of the sequence
          return;
        }
        i = end;
      } else if (c === 0xfffd) {
        this._append(st, "\ufffd", marked(st.style, INVALID));
      } else if (c > 0x9f) {
        this._append(st, `\\u${c.toString(16).padStart(4, "0")}`, marked(st.style, CONTROL));
      } else {
        this._append(st, controlPicture(c), marked(st.style, CONTROL));
      }
    }
  }

  // Parse the escape sequence at text[j] (ESC). Returns the index after it, or -1 when the text
  // ends inside it and more may come. SGR updates the style; every other sequence is dropped.
  _escape(st, text, j, final) {
    const n = text.length;
    const incomplete = () => {
      if (!final && n - j < MAX_PENDING_ESCAPE) return -1;
      this._append(st, "\\x1b", marked(st.style, CONTROL)); // never completed: show it, go on
      return j + 1;
    };
    if (j + 1 >= n) return incomplete();
    const kind = text[j + 1];
    if (kind === "[") {
      let k = j + 2;
      let sgrParams = true; // only digits, ";" and ":" (no "?" private modes etc.)
      for (; k < n; k++) {
        const c = text.charCodeAt(k);
        if (c < 0x20 || c > 0x3f) break;
        if (c > 0x3b || c < 0x30) sgrParams = false;
      }
      if (k >= n) return incomplete();
      const f = text.charCodeAt(k);
      if (f < 0x40 || f > 0x7e) {
        this._append(st, "\\x1b", marked(st.style, CONTROL)); // malformed CSI
        return j + 1;
      }
      if (f === 0x6d /* m */) {
        if (sgrParams) st.style = applySgr(st.style, text.slice(j + 2, k));
      }
      return k + 1;
    }
    if (kind === "]" || kind === "P" || kind === "X" || kind === "^" || kind === "_") {
      // OSC / DCS / SOS / PM / APC: up to BEL (OSC only) or ST (ESC \).
      for (let k = j + 2; k < n; k++) {
        const c = text.charCodeAt(k);
        if (c === 7 && kind === "]") return k + 1;
        if (c === 27) {
          if (k + 1 >= n) return incomplete();
          if (text[k + 1] === "\\") return k + 2;
        }
      }
      return incomplete();
    }
    if ("()*+-./#%".includes(kind)) {
      // Character set designations: ESC ( B and friends, one more byte.
      return j + 2 < n ? j + 3 : incomplete();
    }
    const code = kind.charCodeAt(0);
    if (code >= 0x20 && code <= 0x7e) return j + 2; // two-byte sequences: ESC 7, ESC =, ESC c ...
    this._append(st, "\\x1b", marked(st.style, CONTROL));
    return j + 1;
  }

  // -- lines ---------------------------------------------------------------------------------

  _openLine(st) {
    if (st.open) return st.open;
    if (this.lines.length >= this.maxLines) {
      this.droppedLines++;
      return null;
    }
    st.open = { s: st.index, t: "", st: null, at: this.at ?? null };
    this.lines.push(st.open);
    st.openIndex = this.lines.length - 1;
    this._dirty(st.openIndex);
    return st.open;
  }

  _append(st, text, style) {
    const line = this._openLine(st);
    if (!line) return;
    if (line.st) {
      if (line.st[line.st.length - 1] !== style) line.st.push(line.t.length, style);
    } else if (style !== PLAIN) {
      line.st = line.t.length ? [0, PLAIN, line.t.length, style] : [0, style];
    }
    line.t += text;
    this._dirty(st.openIndex);
  }

  _newline(st) {
    if (!st.open) this._openLine(st); // an empty line is a line too
    st.open = null;
  }

  // Terminal semantics for a lone "\r" (progress bars): the line starts over. The downloaded log
  // keeps every byte; here the latest state of the line is what matters.
  _carriageReturn(st) {
    if (!st.open) return;
    st.open.t = "";
    st.open.st = null;
    this._dirty(st.openIndex);
  }

  _dirty(index) {
    if (index < this.dirtyFrom) this.dirtyFrom = index;
  }
}

// Characters that change the direction or joining of the text around them without being seen:
// the bidi marks, embeddings, overrides and isolates, zero-width spaces and joiners, the line and
// paragraph separators and the byte-order mark.
function invisible(c) {
  return (
    c === 0x61c || (c >= 0x200b && c <= 0x200f) || (c >= 0x2028 && c <= 0x202e) ||
    (c >= 0x2060 && c <= 0x2069) || c === 0xfeff
  );
}

// Control characters show as \x00-style escapes (styled apart from typed text by the a-ctl
// class): the Unicode "Control Pictures" (␀) are missing from common monospace fonts.
function controlPicture(c) {
  return `\\x${c.toString(16).padStart(2, "0")}`;
}
