// Small DOM helpers shared by the panes. Text always goes in as textContent.
export const $ = (id) => document.getElementById(id);

export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? "" : String(v));
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

let noticeTimer = null;
// A message in the header's status area; errors stay until the next message.
export function notify(message, kind = "info") {
  const node = $("notice");
  node.textContent = String(message);
  node.className = kind === "error" ? "error" : "";
  clearTimeout(noticeTimer);
  if (kind !== "error") noticeTimer = setTimeout(() => (node.textContent = ""), 6000);
}

export const showError = (err) => notify(err && err.code ? `${err.message} (${err.code})` : String(err), "error");

export function clock(ts) {
  const d = new Date(ts * 1000);
  return d.toLocaleTimeString([], { hour12: false }) + "." + String(d.getMilliseconds()).padStart(3, "0");
}

export function duration(seconds) {
  seconds = Math.max(0, Math.floor(seconds));
  const h = Math.floor(seconds / 3600), m = Math.floor((seconds % 3600) / 60), s = seconds % 60;
  return h ? `${h}h ${m}m` : m ? `${m}m ${s}s` : `${s}s`;
}

export const num = (v, digits = 1) => (v === null || v === undefined ? "–" : Number(v).toFixed(digits));
