// Steps: recent task-flow executions (GET /script-engine/executions) and a task's
// variables (GET /script-engine/tasks/{id}/variables).
import { api, query } from "./api.js";
import { on } from "./state.js";
import { $, clock, el, num, showError } from "./ui.js";

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

async function load(quiet = false) {
  const task = $("steps-task").value.trim();
  try {
    const page = await api(`/script-engine/executions${query({ task_id: task })}`);
    const running = new Set(page.running || []);
    $("steps-rows").replaceChildren(...(page.executions || []).map((x) =>
      el("tr", {},
        el("td", { text: clock(x.ts) }),
        el("td", { text: x.script_path }),
        el("td", { text: x.function_name || "" }),
        el("td", { text: x.mode || "" }),
        el("td", {}, x.task_id ? el("button", { type: "button", class: "tree-file", text: x.task_id, "aria-label": `Variables of task ${x.task_id}`, onclick: () => variables(x.task_id) }) : ""),
        el("td", { text: num(x.duration_ms, 1) }),
        el("td", {}, el("span", { class: `badge ${running.has(x.id) ? "starting" : x.ok ? "running" : "failed"}`, text: running.has(x.id) ? "running" : x.ok ? "ok" : "failed" })),
        el("td", { class: "err", text: x.ok ? "" : `${x.error_type || ""}${x.error_message ? `: ${x.error_message}` : ""}` }),
      )));
    if (task && !quiet) variables(task);
  } catch (err) {
    showError(err);
  }
}

export function setupSteps() {
  $("steps-filter").addEventListener("submit", (e) => {
    e.preventDefault();
    load();
  });
  let active = false;
  on("tab", (name) => {
    active = name === "steps";
    if (active) load();
  });
  setInterval(() => active && !document.hidden && load(true), 2000); // new executions show up
}
