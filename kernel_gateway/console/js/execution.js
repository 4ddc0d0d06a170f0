// One execution's detail in the Steps pane: its whole record (GET
// /script-engine/executions/{id}), followed live over /script-engine/executions/{id}/ws
// while it is queued or running (the server closes after "end"), and Cancel for a queued or
// running one (POST .../cancel, after a confirm() as Delete asks). Text only as textContent.
import { api, socketUrl } from "./api.js";
import { $, clock, el, notify, num, showError } from "./ui.js";

const FINISHED = new Set(["succeeded", "failed", "cancelled", "timed_out"]);
const TAIL = 16000; // as the server keeps the tails

let current = null; // the record shown
let socket = null;
let onChange = () => {}; // the pane refreshes its tables when an execution ends or is cancelled

export const short = (id) => (id ? String(id).slice(0, 8) : "");
export const mib = (bytes) => (bytes === null || bytes === undefined ? "–" : (bytes / 1048576).toFixed(1));

// The badge class of a status (the colours the Scripts pane uses).
export function badgeClass(status) {
  if (status === "succeeded" || status === "ok") return "badge running";
  if (status === "failed" || status === "timed_out") return "badge failed";
  if (status === "queued" || status === "running") return "badge starting";
  return "badge";
}

// A progress bar (the fraction as 0..100, indeterminate without one) and its message.
export function progressView(progress, label) {
  const p = progress || {};
  const fraction = typeof p.fraction === "number" ? Math.max(0, Math.min(1, p.fraction)) : null;
  const bar = el("progress", { max: "100", "aria-label": label });
  if (fraction !== null) {
    const pct = Math.round(fraction * 100);
    bar.value = pct;
    bar.setAttribute("aria-valuenow", String(pct));
  }
  const count = p.total ? `${p.done ?? ""}/${p.total}` : p.done !== null && p.done !== undefined ? String(p.done) : "";
  const text = [fraction !== null ? `${Math.round(fraction * 100)}%` : count, p.message || ""].filter(Boolean).join(" ");
  return el("span", { class: "progress" }, bar, el("span", { class: "progress-text", text }));
}

export const shownId = () => (current ? current.execution_id : null);

// The reason and the error of an execution, in one line.
export function errorText(x) {
  const parts = [];
  const message = (x.error && x.error.message) || "";
  // the reason once: "cancelled" is already in "execution … was cancelled"
  if (x.reason && !message.toLowerCase().includes(x.reason.toLowerCase())) parts.push(x.reason);
  if (x.error) parts.push(`${x.error.code || ""}${message ? `: ${message}` : ""}`);
  return parts.join(" · ");
}

// A failed attempt has no duration_ms: its start and end say it.
function attemptMs(a) {
  if (typeof a.duration_ms === "number") return a.duration_ms;
  return a.started_at && a.finished_at ? (a.finished_at - a.started_at) * 1000 : null;
}

function field(name, value) {
  return [el("dt", { text: name }), el("dd", { text: value === null || value === undefined || value === "" ? "–" : String(value) })];
}

function render() {
  const x = current;
  if (!x) return;
  const running = !FINISHED.has(x.status);
  $("exec-title").textContent = `Execution ${x.execution_id}`;
  const status = $("exec-status");
  status.className = badgeClass(x.status);
  status.textContent = x.status;
  $("exec-cancel").hidden = !running || !x.async;
  $("exec-live").textContent = socket ? "live" : "";
  $("exec-progress").replaceChildren(x.progress ? progressView(x.progress, `Progress of execution ${short(x.execution_id)}`) : "");
  const usage = x.usage || {};
  $("exec-fields").replaceChildren(
    ...field("Script", x.script_path),
    ...field("Function", x.function_name || "(RUN)"),
    ...field("Mode", x.mode),
    ...field("Task id", x.task_id),
    ...field("Submitted", x.submitted_at ? clock(x.submitted_at) : null),
    ...field("Started", x.started_at ? clock(x.started_at) : null),
    ...field("Finished", x.finished_at ? clock(x.finished_at) : null),
    ...field("Duration ms", x.duration_ms === null || x.duration_ms === undefined ? null : num(x.duration_ms, 1)),
    ...field("Worker", x.worker),
    ...field("CPU ms", usage.cpu_ms === null || usage.cpu_ms === undefined ? null : num(usage.cpu_ms, 1)),
    ...field("Peak memory MiB", usage.peak_rss_bytes ? mib(usage.peak_rss_bytes) : null),
    ...field("Retry", x.retry ? `${x.retry.attempts} attempts, ${x.retry.backoff} from ${x.retry.initial_s} s${x.retry.on ? ` on ${x.retry.on.join(", ")}` : ""}` : null),
    ...field("At most once", x.at_most_once ? "yes" : "no"),
    ...field("Idempotency key", x.idempotency_key),
    ...field("Reason / error", errorText(x)),
  );
  const attempts = x.attempts || [];
  $("exec-attempts").replaceChildren(
    ...attempts.map((a) =>
      el("li", {},
        el("span", { class: badgeClass(a.ok ? "succeeded" : "failed"), text: a.ok ? "ok" : "failed" }),
        ` attempt ${a.attempt}`,
        attemptMs(a) === null ? "" : `, ${num(attemptMs(a), 1)} ms`,
        a.worker ? `, worker ${short(a.worker)}` : "",
        a.ok ? "" : el("span", { class: "error", text: ` ${a.error_type || a.code || ""}${a.message ? `: ${a.message}` : ""}` }),
      )),
  );
  $("exec-attempts-empty").hidden = attempts.length > 0;
  $("exec-stdout").textContent = x.stdout_tail || "";
  $("exec-stderr").textContent = x.stderr_tail || "";
  $("exec-result").textContent = x.status === "succeeded" ? JSON.stringify(x.result, null, 2) : "";
  $("exec-variables").textContent = x.variables ? JSON.stringify(x.variables, null, 2) : "";
}

function stopFollowing() {
  if (socket) {
    socket.onclose = null;
    socket.close();
    socket = null;
  }
}

// The events of the execution, merged into the record shown.
function apply(event) {
  const x = current;
  switch (event.type) {
    case "state":
    case "end":
      current = event.execution;
      break;
    case "status":
      x.status = event.status;
      if (event.ts) x.started_at = x.started_at || event.ts;
      break;
    case "attempt":
      x.status = "running";
      $("exec-events").textContent = `attempt ${event.attempt} started`;
      break;
    case "progress":
      x.progress = { fraction: event.fraction, done: event.done, total: event.total, message: event.message, updated_at: event.ts };
      break;
    case "output": {
      const key = event.stream === "stderr" ? "stderr_tail" : "stdout_tail";
      x[key] = `${x[key] || ""}${event.text}\n`.slice(-TAIL);
      break;
    }
    case "retry":
      $("exec-events").textContent = `attempt ${event.attempt} failed (${(event.error && event.error.message) || ""}): next one in ${num(event.in_s, 1)} s`;
      break;
    default:
      return;
  }
  render();
}

function follow(id) {
  const ws = new WebSocket(socketUrl(`/script-engine/executions/${encodeURIComponent(id)}/ws`, {}));
  socket = ws;
  ws.onmessage = (msg) => {
    if (socket !== ws) return;
    const event = JSON.parse(msg.data);
    apply(event);
    if (event.type === "end") onChange();
  };
  ws.onclose = () => {
    if (socket !== ws) return;
    socket = null;
    render();
  };
}

// Show one execution (asynchronous, or a step of the history): its record, then live.
export async function showExecution(id) {
  stopFollowing();
  $("exec-events").textContent = "";
  try {
    current = await api(`/script-engine/executions/${encodeURIComponent(id)}`);
  } catch (err) {
    showError(err);
    return;
  }
  delete current.__headers;
  $("exec-detail").hidden = false;
  if (current.async && !FINISHED.has(current.status)) follow(id);
  render();
  $("exec-detail").scrollIntoView({ block: "nearest" });
  onChange();
}

// A newer record from the list (only while the socket does not follow it).
export function refreshShown(record) {
  if (current && !socket && record.execution_id === current.execution_id) {
    current = record;
    render();
  }
}

function close() {
  stopFollowing();
  current = null;
  $("exec-detail").hidden = true;
  onChange();
}

async function cancel() {
  const x = current;
  if (!x) return;
  if (!confirm(`Cancel execution ${x.execution_id} (${x.script_path}${x.function_name ? ` ${x.function_name}` : ""})? A running one's worker is interrupted.`)) return;
  const button = $("exec-cancel");
  button.disabled = true;
  try {
    const answer = await api(`/script-engine/executions/${encodeURIComponent(x.execution_id)}/cancel`, { method: "POST" });
    notify(`execution ${short(x.execution_id)}: ${answer.status}`);
    if (!socket && answer.execution_id === x.execution_id && answer.status) {
      delete answer.__headers;
      current = answer;
      render();
    }
  } catch (err) {
    showError(err);
  } finally {
    button.disabled = false;
    onChange();
  }
}

export function setupExecution(changed) {
  onChange = changed;
  $("exec-close").addEventListener("click", close);
  $("exec-cancel").addEventListener("click", cancel);
}
