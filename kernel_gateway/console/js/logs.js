// Live logs over the WebSocket /script-engine/logs/ws, for one script or all; filters by
// level and tag (on the server) and text (here); Pause buffers, Resume shows what came in;
// older records page in from /script-engine/logs?cursor= when scrolled to the top.
import { api, download, query, socketUrl } from "./api.js";
import { parseAnsi, segmentSpan, stripAnsi } from "./ansi.js";
import { emit, on, state } from "./state.js";
import { $, clock, el, showError } from "./ui.js";

const MAX_ROWS = 5000;
const TAIL = 200;
const PAGE = 200;
// a traceback's `File "/x/y.py", line 12` or a `y.py:12`
const LOCATION = /File "([^"]+\.(?:py|ipynb))", line (\d+)|([\w./-]+\.(?:py|ipynb)):(\d+)/g;

let socket = null;
let paused = false;
let buffer = [];
let dropped = 0; // records left out of the paused buffer (it keeps MAX_ROWS)
let oldest = null; // the smallest record id shown (the cursor for older pages)
let noMore = false;
let loadingOlder = false;
let retry = null;
let connectedFor = ""; // the script_id the socket follows ("" : all scripts)

// A path from a log line as a path of the scripts tree (absolute paths end with one).
function scriptPath(raw) {
  if (state.files.includes(raw)) return raw;
  let best = null;
  for (const f of state.files) if (raw.endsWith(`/${f}`) && (!best || f.length > best.length)) best = f;
  return best;
}

// The message as spans (ANSI styles) with its file:line places as links that open the
// editor there. Places are found in the text without escapes, so a colour change inside
// one does not hide it.
export function messageNodes(message) {
  const segments = parseAnsi(message);
  const plain = segments.map((seg) => seg.text).join("");
  const links = [];
  for (const m of plain.matchAll(LOCATION)) {
    const path = scriptPath(m[1] || m[3]);
    if (path) links.push({ from: m.index, to: m.index + m[0].length, path, line: Number(m[2] || m[4]) });
  }
  const nodes = [];
  let anchor = null;
  let offset = 0;
  for (const seg of segments) {
    let at = 0;
    while (at < seg.text.length) {
      const pos = offset + at;
      const link = links.find((l) => l.from <= pos && pos < l.to);
      const next = link ? link.to : Math.min(seg.text.length + offset, ...links.filter((l) => l.from > pos).map((l) => l.from));
      const piece = segmentSpan({ ...seg, text: seg.text.slice(at, next - offset) });
      if (link) {
        if (!anchor || anchor.link !== link) {
          const { path, line } = link;
          anchor = { link, node: el("a", { href: "#", title: `open ${path} at line ${line}`, onclick: (e) => { e.preventDefault(); emit("open", { path, line }); } }) };
          nodes.push(anchor.node);
        }
        anchor.node.append(piece);
      } else nodes.push(piece);
      at = next - offset;
    }
    offset += seg.text.length;
  }
  return nodes;
}

export function recordRow(r) {
  const row = el("div", { class: `rec l-${r.level}`, "data-id": r.id },
    el("span", { class: "t", text: `${clock(r.ts)} ` }),
    el("span", { class: "lv", text: r.level }),
    el("span", { class: "sc", text: `${r.script_id ? r.script_id.replace(/_\d+$/, "") : "gateway"} ` }),
    r.tag ? el("span", { class: "tg", text: `[${r.tag}] ` }) : null,
    ...messageNodes(r.message),
  );
  row.dataset.text = `${r.tag || ""} ${stripAnsi(r.message)}`.toLowerCase();
  return row;
}

const textFilter = () => $("log-text").value.trim().toLowerCase();
const visible = (row, text) => !text || row.dataset.text.includes(text);

function append(records) {
  const view = $("log-view");
  const atBottom = view.scrollHeight - view.scrollTop - view.clientHeight < 40;
  const text = textFilter();
  const rows = records.map((r) => {
    const row = recordRow(r);
    row.hidden = !visible(row, text);
    if (oldest === null || r.id < oldest) oldest = r.id;
    return row;
  });
  view.append(...rows);
  while (view.childElementCount > MAX_ROWS) {
    view.firstElementChild.remove();
    noMore = false;
    oldest = Number(view.firstElementChild.dataset.id);
  }
  if (atBottom) view.scrollTop = view.scrollHeight;
}

function filters() {
  const path = $("log-script").value;
  const run = path ? state.running.get(path) : null;
  return {
    script_id: path ? (run ? run.script_id : undefined) : undefined,
    script_path: path || undefined,
    level: $("log-level").value,
    tag: $("log-tag").value.trim(),
  };
}

function setState(text) {
  $("log-state").textContent = text;
}

function connect() {
  clearTimeout(retry);
  if (socket) {
    socket.onclose = null;
    socket.close();
  }
  $("log-view").replaceChildren();
  buffer = [];
  dropped = 0;
  oldest = null;
  noMore = false;
  const f = filters();
  connectedFor = f.script_id || "";
  if (f.script_path && !f.script_id) {
    setState(`${f.script_path} is not running: history only (scroll up)`);
    socket = null;
    loadOlder();
    return;
  }
  const ws = new WebSocket(socketUrl("/script-engine/logs/ws", { script_id: f.script_id, level: f.level, tag: f.tag, tail: TAIL }));
  socket = ws;
  ws.onopen = () => setState(paused ? "paused" : "live");
  ws.onmessage = (event) => {
    const msg = JSON.parse(event.data);
    if (msg.type === "record") {
      if (paused) {
        buffer.push(msg);
        if (buffer.length > MAX_ROWS) {
          // the page shows MAX_ROWS at most: older ones stay in the history (scroll up)
          dropped += buffer.length - MAX_ROWS;
          buffer.splice(0, buffer.length - MAX_ROWS);
        }
        setState(`paused: ${buffer.length + dropped} new${dropped ? ` (the oldest ${dropped} in history only)` : ""}`);
      } else append([msg]);
    } else if (msg.type === "notice") setState(`${msg.message} (${msg.code})`);
  };
  ws.onclose = (event) => {
    if (socket !== ws) return;
    setState(`disconnected (${event.code}${event.reason ? `: ${event.reason}` : ""}); reconnecting…`);
    retry = setTimeout(connect, 2000);
  };
}

async function loadOlder() {
  if (loadingOlder || noMore) return;
  loadingOlder = true;
  try {
    const f = filters();
    const params = { limit: PAGE, level: f.level, tag: f.tag, cursor: oldest ?? undefined };
    if (f.script_id) params.script_id = f.script_id;
    else if (f.script_path) params.script_path = f.script_path;
    const page = await api(`/script-engine/logs${query(params)}`);
    if (page.records.length < PAGE) noMore = true;
    const view = $("log-view");
    const before = view.scrollHeight;
    const text = textFilter();
    const rows = page.records.reverse().map((r) => {
      const row = recordRow(r);
      row.hidden = !visible(row, text);
      return row;
    });
    view.prepend(...rows);
    if (page.records.length) oldest = Math.min(oldest ?? Infinity, ...page.records.map((r) => r.id));
    view.scrollTop += view.scrollHeight - before; // keep what was on screen in place
  } catch (err) {
    showError(err);
  } finally {
    loadingOlder = false;
  }
}

function updateScripts() {
  const select = $("log-script");
  const chosen = select.value;
  const paths = [...new Set([...state.running.keys(), ...(chosen ? [chosen] : [])])].sort();
  const have = [...select.options].slice(1).map((o) => o.value);
  if (have.join("\n") === paths.join("\n")) return;
  select.replaceChildren(el("option", { value: "", text: "All scripts" }), ...paths.map((p) => el("option", { value: p, text: p })));
  select.value = chosen;
}

export function setupLogs() {
  $("log-pause").addEventListener("click", () => {
    paused = !paused;
    $("log-pause").textContent = paused ? "Resume" : "Pause";
    if (!paused) {
      append(buffer);
      buffer = [];
      dropped = 0;
    }
    setState(paused ? "paused" : "live");
  });
  $("log-text").addEventListener("input", () => {
    const text = textFilter();
    for (const row of $("log-view").children) row.hidden = !visible(row, text);
  });
  for (const id of ["log-script", "log-level"]) $(id).addEventListener("change", connect);
  $("log-tag").addEventListener("change", connect);
  $("log-clear").addEventListener("click", () => $("log-view").replaceChildren());
  $("log-view").addEventListener("scroll", () => {
    if ($("log-view").scrollTop < 30) loadOlder();
  });
  $("log-export").addEventListener("click", async () => {
    const f = filters();
    try {
      await download(`/script-engine/logs/export${query({ format: "ndjson", script_id: f.script_id, level: f.level, tag: f.tag })}`, "vwed-logs.ndjson");
    } catch (err) {
      showError(err);
    }
  });
  on("running", () => {
    updateScripts();
    // a (re)started script has a new script_id: follow it
    const path = $("log-script").value;
    const id = path && state.running.get(path) ? state.running.get(path).script_id : "";
    if (path && id !== connectedFor) connect();
  });
  connect();
}
