// ANSI SGR colours (as in IPython tracebacks) to styled segments. The text is never parsed
// as HTML: callers put each segment's text in a span with textContent.
const COLOURS = ["#4d4d4d", "#ff6b6b", "#7bd88f", "#f5c26b", "#6cb6ff", "#d291e4", "#5fd7d7", "#e6e6e6"];
const BRIGHT = ["#8a8a8a", "#ff8f8f", "#a6f0b4", "#ffe08a", "#9ecbff", "#e8b5f5", "#8ff0f0", "#ffffff"];
// eslint-disable-next-line no-control-regex
const SGR = /\x1b\[([0-9;]*)m/g;
// eslint-disable-next-line no-control-regex
const OTHER_ESCAPES = /\x1b\[[0-9;?]*[A-Za-ln-z]|\x1b\][^\x07]*\x07/g;

function xterm256(n) {
  if (n < 8) return COLOURS[n];
  if (n < 16) return BRIGHT[n - 8];
  if (n < 232) {
    n -= 16;
    const c = (v) => (v ? 55 + v * 40 : 0);
    return `rgb(${c(Math.floor(n / 36))},${c(Math.floor(n / 6) % 6)},${c(n % 6)})`;
  }
  const g = 8 + (n - 232) * 10;
  return `rgb(${g},${g},${g})`;
}

function apply(style, codes) {
  for (let i = 0; i < codes.length; i++) {
    const c = codes[i];
    if (c === 0) Object.assign(style, { color: null, background: null, bold: false, italic: false, underline: false });
    else if (c === 1) style.bold = true;
    else if (c === 3) style.italic = true;
    else if (c === 4) style.underline = true;
    else if (c === 22) style.bold = false;
    else if (c === 23) style.italic = false;
    else if (c === 24) style.underline = false;
    else if (c >= 30 && c <= 37) style.color = COLOURS[c - 30];
    else if (c >= 90 && c <= 97) style.color = BRIGHT[c - 90];
    else if (c === 39) style.color = null;
    else if (c >= 40 && c <= 47) style.background = COLOURS[c - 40];
    else if (c >= 100 && c <= 107) style.background = BRIGHT[c - 100];
    else if (c === 49) style.background = null;
    else if ((c === 38 || c === 48) && codes[i + 1] === 5) {
      style[c === 38 ? "color" : "background"] = xterm256(codes[i + 2] || 0);
      i += 2;
    } else if ((c === 38 || c === 48) && codes[i + 1] === 2) {
      style[c === 38 ? "color" : "background"] = `rgb(${codes[i + 2] || 0},${codes[i + 3] || 0},${codes[i + 4] || 0})`;
      i += 4;
    }
  }
}

// [{text, style: {color, background, bold, italic, underline}}]
export function parseAnsi(input) {
  const text = String(input).replace(OTHER_ESCAPES, "");
  const out = [];
  const style = { color: null, background: null, bold: false, italic: false, underline: false };
  let last = 0;
  for (const m of text.matchAll(SGR)) {
    if (m.index > last) out.push({ text: text.slice(last, m.index), style: { ...style } });
    apply(style, m[1] === "" ? [0] : m[1].split(";").map(Number));
    last = m.index + m[0].length;
  }
  if (last < text.length) out.push({ text: text.slice(last), style: { ...style } });
  return out;
}

export const stripAnsi = (input) => String(input).replace(SGR, "").replace(OTHER_ESCAPES, "");

// A span for one segment, its text as textContent.
export function segmentSpan(segment, child) {
  const span = document.createElement("span");
  const s = segment.style;
  if (s.color) span.style.color = s.color;
  if (s.background) span.style.backgroundColor = s.background;
  const classes = [s.bold && "ansi-bold", s.italic && "ansi-italic", s.underline && "ansi-underline"].filter(Boolean);
  if (classes.length) span.className = classes.join(" ");
  span.append(child || segment.text);
  return span;
}
