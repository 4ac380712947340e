// Text styles for program output: ANSI SGR ("\x1b[...m") turned into CSS classes.
// A style only ever becomes class names we chose or an rgb() we computed from numbers, so nothing
// the program prints can reach the DOM as markup or as a CSS string.

const styles = new Map(); // key -> Style; interned so lines can compare styles with ===

function intern(fg, bg, flags) {
  const key = `${fg}|${bg}|${flags}`;
  let style = styles.get(key);
  if (!style) {
    style = makeStyle(key, fg, bg, flags);
    styles.set(key, style);
  }
  return style;
}

// Flags: bit values, combined with |.
export const BOLD = 1, DIM = 2, ITALIC = 4, UNDERLINE = 8, INVERSE = 16, STRIKE = 32, CONTROL = 64, INVALID = 128;
const FLAG_CLASSES = [[BOLD, "a-bo"], [DIM, "a-di"], [ITALIC, "a-it"], [UNDERLINE, "a-un"], [STRIKE, "a-st"],
  [CONTROL, "a-ctl"], [INVALID, "a-bad"]];

// A colour is null (default), 0-15 (palette class a-f<n>/a-b<n>) or an "rgb(r, g, b)" we built.
function makeStyle(key, fg, bg, flags) {
  if (flags & INVERSE) {
    [fg, bg] = [bg, fg];
  }
  const classes = [];
  let css = null;
  for (const [bit, name] of FLAG_CLASSES) if (flags & bit) classes.push(name);
  if (flags & INVERSE) classes.push("a-inv"); // default colours swapped need CSS, not just classes
  if (typeof fg === "number") classes.push(`a-f${fg}`);
  else if (fg) (css ??= {}).color = fg;
  if (typeof bg === "number") classes.push(`a-b${bg}`);
  else if (bg) (css ??= {}).backgroundColor = bg;
  // Not frozen: `after` caches SGR results, so a program that colours every line costs one
  // Map lookup per sequence instead of a parse.
  return { key, fg, bg, flags, cls: classes.join(" "), css, plain: classes.length === 0 && !css, after: new Map() };
}

export const PLAIN = intern(null, null, 0);

// The extra look of a control character or an invalid byte shown in place (␀, �).
export function marked(style, flag) {
  const key = flag === CONTROL ? "\0ctl" : "\0bad";
  let out = style.after.get(key);
  if (!out) style.after.set(key, (out = intern(style.fg, style.bg, style.flags | flag)));
  return out;
}

function xterm256(n) {
  if (n < 16) return n;
  if (n < 232) {
    const steps = [0, 95, 135, 175, 215, 255];
    const i = n - 16;
    return `rgb(${steps[Math.floor(i / 36)]}, ${steps[Math.floor(i / 6) % 6]}, ${steps[i % 6]})`;
  }
  const grey = 8 + (n - 232) * 10;
  return `rgb(${grey}, ${grey}, ${grey})`;
}

function byte(v) {
  return Math.max(0, Math.min(255, v | 0));
}

// Apply the parameters of one SGR sequence ("1;31", "38;5;208", "38:2::255:0:0") to a style.
export function applySgr(style, params) {
  let out = style.after.get(params);
  if (!out) {
    out = parseSgr(style, params);
    if (style.after.size < 256) style.after.set(params, out);
  }
  return out;
}

function parseSgr(style, params) {
  let { fg, bg, flags } = style;
  flags &= ~(CONTROL | INVALID);
  const p = params === "" ? [0] : params.split(/[;:]/).slice(0, 64).map((s) => (s === "" ? 0 : Number(s) | 0));
  for (let i = 0; i < p.length; i++) {
    const n = p[i];
    if (n === 0) [fg, bg, flags] = [null, null, 0];
    else if (n === 1) flags |= BOLD;
    else if (n === 2) flags |= DIM;
    else if (n === 3) flags |= ITALIC;
    else if (n === 4) flags |= UNDERLINE;
    else if (n === 7) flags |= INVERSE;
    else if (n === 9) flags |= STRIKE;
    else if (n === 21 || n === 22) flags &= ~(BOLD | DIM);
    else if (n === 23) flags &= ~ITALIC;
    else if (n === 24) flags &= ~UNDERLINE;
    else if (n === 27) flags &= ~INVERSE;
    else if (n === 29) flags &= ~STRIKE;
    else if (n >= 30 && n <= 37) fg = n - 30;
    else if (n === 39) fg = null;
    else if (n >= 40 && n <= 47) bg = n - 40;
    else if (n === 49) bg = null;
    else if (n >= 90 && n <= 97) fg = n - 90 + 8;
    else if (n >= 100 && n <= 107) bg = n - 100 + 8;
    else if (n === 38 || n === 48) {
      let colour;
      if (p[i + 1] === 5 && i + 2 < p.length) {
        colour = xterm256(byte(p[i + 2]));
        i += 2;
      } else if (p[i + 1] === 2) {
        // "38;2;r;g;b", or with colons "38:2:<colour space>:r:g:b": take the last three.
        const rgb = p.length - i >= 6 && params.includes(":") ? p.slice(i + 3, i + 6) : p.slice(i + 2, i + 5);
        i += params.includes(":") && p.length - i >= 6 ? 5 : 4;
        colour = `rgb(${byte(rgb[0])}, ${byte(rgb[1])}, ${byte(rgb[2])})`;
      } else {
        break; // malformed: ignore the rest, as terminals do
      }
      if (n === 38) fg = colour;
      else bg = colour;
    }
    // Everything else (blink, conceal, fonts...) is ignored. Conceal in particular: hiding text
    // from the reader is not something program output gets to do here.
  }
  return intern(fg, bg, flags);
}
