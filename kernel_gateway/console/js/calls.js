// Calls: GET /script-engine/calls with filters, newest first, older pages by cursor; a
// call id shows its log lines (GET /script-engine/logs?call_id=).
import { api, query } from "./api.js";
import { recordRow } from "./logs.js";
import { on } from "./state.js";
import { $, clock, el, num, showError } from "./ui.js";

const REFRESH_MS = 2000;
let nextCursor = null;
let active = false;

function params(cursor) {
  return {
    script_path: $("calls-script").value.trim(),
    kind: $("calls-kind").value,
    name: $("calls-name").value.trim(),
    ok: $("calls-ok").value,
    error_type: $("calls-error").value.trim(),
    call_id: $("calls-callid").value.trim(),
    task_id: $("calls-taskid").value.trim(),
    limit: 100,
    cursor: cursor ?? undefined,
  };
}

function row(c) {
  return el("tr", { "data-call-id": c.call_id || "" },
    el("td", { text: clock(c.ts) }),
    el("td", { text: c.script_path || "" }),
    el("td", { text: c.kind }),
    el("td", { text: c.name }),
    el("td", {}, el("span", { class: `badge ${c.ok ? "running" : "failed"}`, text: c.ok ? "ok" : "failed" })),
    el("td", { text: num(c.duration_ms, 1) }),
    el("td", { class: "err", text: c.ok ? "" : `${c.error_type || ""}${c.error_message ? `: ${c.error_message}` : ""}` }),
    el("td", {}, c.call_id ? el("button", { type: "button", class: "tree-file", text: c.call_id, "aria-label": `Log lines of call ${c.call_id}`, onclick: () => showLogs(c.call_id) }) : ""),
    el("td", { text: c.task_id || "" }),
  );
}

async function load(more) {
  try {
    const page = await api(`/script-engine/calls${query(params(more ? nextCursor : null))}`);
    const rows = page.calls.map(row);
    if (more) $("calls-rows").append(...rows);
    else $("calls-rows").replaceChildren(...rows);
    if (!more || nextCursor !== null) nextCursor = page.next_cursor;
    $("calls-more").hidden = page.next_cursor === null;
  } catch (err) {
    showError(err);
  }
}

async function showLogs(callId) {
  $("call-logs").hidden = false;
  $("call-logs-title").textContent = `Log lines of call ${callId}`;
  try {
    const page = await api(`/script-engine/logs${query({ call_id: callId, order: "asc", limit: 500 })}`);
    const rows = page.records.map(recordRow);
    if (!rows.length) rows.push(el("div", { class: "muted", text: "This call wrote no log line." }));
    $("call-logs-view").replaceChildren(...rows);
  } catch (err) {
    showError(err);
  }
}

export function setupCalls() {
  $("calls-filter").addEventListener("submit", (e) => {
    e.preventDefault();
    load(false);
  });
  $("calls-more").addEventListener("click", () => load(true));
  on("tab", (name) => {
    active = name === "calls";
    if (active) load(false);
  });
  // while shown and on the first page, the table follows new calls
  setInterval(() => {
    if (active && !document.hidden && $("calls-rows").childElementCount <= 100) load(false);
  }, REFRESH_MS);
}
