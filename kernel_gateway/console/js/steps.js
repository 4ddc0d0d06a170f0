// Steps: the asynchronous executions and the steps history (GET /script-engine/executions,
// filtered by task id and status), a task's variables (GET /script-engine/tasks/{id}/variables)
// and one execution's detail (execution.js). Refreshed every 2 s while the pane is shown and
// the tab visible, one request at a time.
import { api, query } from "./api.js";
import { badgeClass, errorText, mib, progressView, refreshShown, setupExecution, short, showExecution, shownId } from "./execution.js";
import { on } from "./state.js";
import { $, clock, el, num, showError } from "./ui.js";

let pending = false; // a request is in flight: the timer skips its turn
let again = false; // a filter change came meanwhile: load once more when it answers
let last = ""; // the page last drawn: an unchanged answer does not redraw (focus stays)

async function variables(taskId) {
  $("vars-title").textContent = `Variables of task ${taskId}`;
  try {
    const v = await api(`/script-engine/tasks/${encodeURIComponent(taskId)}/variables`);
    $("vars-view").className = "";
    $("vars-view").textContent = JSON.stringify(v.variables, null, 2);
  } catch (err) {
    $("vars-view").textContent = `${err.message} (${err.code})`;
  }
}

const taskButton = (taskId) =>
  taskId ? el("button", { type: "button", class: "tree-file", text: taskId, "aria-label": `Variables of task ${taskId}`, onclick: () => variables(taskId) }) : "";

const ms = (v) => (v === null || v === undefined ? "–" : num(v, 1));

function asyncRow(x) {
  const usage = x.usage || {};
  const name = `${x.script_path}${x.function_name ? ` ${x.function_name}` : ""}`;
  return el("tr", { "data-id": x.execution_id, "aria-selected": x.execution_id === shownId() ? "true" : "false" },
    el("td", {}, el("span", { class: badgeClass(x.status), text: x.status })),
    el("td", {}, el("button", { type: "button", class: "tree-file", text: name, "aria-label": `Details of execution ${short(x.execution_id)} (${name})`, onclick: () => showExecution(x.execution_id) })),
    el("td", {}, taskButton(x.task_id)),
    el("td", { text: clock(x.submitted_at) }),
    el("td", {}, x.progress ? progressView(x.progress, `Progress of execution ${short(x.execution_id)}`) : ""),
    el("td", { text: String((x.attempts || []).length) }),
    el("td", { text: ms(x.duration_ms) }),
    el("td", { text: ms(usage.cpu_ms) }),
    el("td", { text: mib(usage.peak_rss_bytes) }),
    el("td", { class: "err", text: errorText(x) }),
  );
}

function historyRow(x, running) {
  const live = running.has(x.id);
  const status = live ? "running" : x.status || (x.ok ? "ok" : "failed");
  const attempt = x.async_id
    ? el("button", { type: "button", class: "tree-file", text: `${x.attempt} of ${short(x.async_id)}`, "aria-label": `Attempt ${x.attempt} of execution ${short(x.async_id)}`, onclick: () => showExecution(x.async_id) })
    : "";
  return el("tr", {},
    el("td", { text: clock(x.ts) }),
    el("td", { text: x.script_path }),
    el("td", { text: x.function_name || "" }),
    el("td", { text: x.mode || "" }),
    el("td", {}, taskButton(x.task_id)),
    el("td", { text: num(x.duration_ms, 1) }),
    el("td", { class: "path", text: short(x.worker), title: x.worker || "" }),
    el("td", { text: ms(x.cpu_ms) }),
    el("td", { text: mib(x.peak_rss) }),
    el("td", {}, attempt),
    el("td", {}, el("span", { class: badgeClass(status), text: status })),
    el("td", { class: "err", text: x.ok || live ? "" : `${x.error_type || ""}${x.error_message ? `: ${x.error_message}` : ""}` }),
  );
}

function queueText(q) {
  if (!q) return "";
  const counts = Object.entries(q).filter(([k]) => k !== "concurrency").map(([k, v]) => `${v} ${k}`);
  return `queue: ${counts.length ? counts.join(", ") : "empty"} (at most ${q.concurrency} at a time)`;
}

async function load(quiet = false) {
  if (pending) {
    if (!quiet) again = true;
    return;
  }
  pending = true;
  const task = $("steps-task").value.trim();
  try {
    const page = await api(`/script-engine/executions${query({ task_id: task, status: $("steps-status").value })}`);
    delete page.__headers;
    const drawn = JSON.stringify([page, shownId()]);
    if (drawn !== last) {
      last = drawn;
      const running = new Set(page.running || []);
      const found = page.async || [];
      $("async-rows").replaceChildren(...found.map(asyncRow));
      $("async-empty").hidden = found.length > 0;
      $("steps-rows").replaceChildren(...(page.executions || []).map((x) => historyRow(x, running)));
      $("steps-queue").textContent = queueText(page.queue);
      for (const x of found) refreshShown(x);
    }
    if (task && !quiet) variables(task);
  } catch (err) {
    showError(err);
  } finally {
    pending = false;
    if (again) {
      again = false;
      load();
    }
  }
}

export function setupSteps() {
  $("steps-filter").addEventListener("submit", (e) => {
    e.preventDefault();
    load();
  });
  $("steps-status").addEventListener("change", () => load());
  setupExecution(() => load(true));
  let active = false;
  on("tab", (name) => {
    active = name === "steps";
    if (active) load();
  });
  setInterval(() => active && !document.hidden && load(true), 2000); // new executions show up
}
