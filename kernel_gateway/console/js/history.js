// The History tab: the commits of the selected file (the scripts root is a Git repository),
// the unified diff of one against the current version (lines as text, coloured + / -),
// Restore (a new commit with the old content) and Run this revision (reload or start).
import { api, filePath } from "./api.js";
import { emit, on, state } from "./state.js";
import { $, el, notify, showError } from "./ui.js";

const short = (rev) => (rev ? String(rev).slice(0, 12) : "–");
let commits = []; // the shown file's history, newest first
let shownPath = null;

function when(ts) {
  return typeof ts === "number" ? new Date(ts * 1000).toLocaleString([], { hour12: false }) : "–";
}

// A diff as text lines, each its own element: never innerHTML of file content.
function renderDiff(text) {
  const lines = String(text || "").split("\n");
  if (lines.length && lines[lines.length - 1] === "") lines.pop();
  if (!lines.length) return [el("div", { class: "dl", text: "(no difference)" })];
  return lines.map((line) => {
    let kind = "";
    if (line.startsWith("+++") || line.startsWith("---") || line.startsWith("diff ") || line.startsWith("index ")) kind = "dl-file";
    else if (line.startsWith("@@")) kind = "dl-hunk";
    else if (line.startsWith("+")) kind = "dl-add";
    else if (line.startsWith("-")) kind = "dl-del";
    return el("div", { class: `dl ${kind}`, text: line });
  });
}

async function showDiff(commit) {
  const path = shownPath;
  for (const row of document.querySelectorAll("#history-rows tr")) {
    row.setAttribute("aria-selected", String(row.dataset.revision === commit.revision));
  }
  $("history-diff-title").textContent = `${short(commit.revision)} → current`;
  $("history-diff-section").hidden = false;
  try {
    // no `to`: the file's latest revision (a change on disk is committed first)
    const answer = await api(`/script-engine/files/${filePath(path)}/diff?from=${encodeURIComponent(commit.revision)}`);
    if (path !== shownPath) return;
    $("history-diff-title").textContent = `${short(commit.revision)} → current (${short(answer.to)})`;
    $("history-diff").replaceChildren(...renderDiff(answer.diff));
  } catch (err) {
    showError(err);
  }
}

async function restore(commit) {
  const path = shownPath;
  if (!confirm(`Restore ${path} to revision ${short(commit.revision)}? Its content becomes a new commit.`)) return;
  try {
    const answer = await api(`/script-engine/files/${filePath(path)}/restore`, { method: "POST", body: { revision: commit.revision } });
    notify(`Restored ${path} to ${short(commit.revision)} (new revision ${short(answer.revision)})`);
    emit("restored", { path });
  } catch (err) {
    showError(err);
  }
  await loadHistory();
}

async function runRevision(commit) {
  const path = shownPath;
  const run = state.running.get(path);
  const action = run ? "reload" : "start";
  if (!confirm(`${run ? "Reload" : "Start"} ${path} at revision ${short(commit.revision)}?`)) return;
  try {
    notify(`${action} ${path} at ${short(commit.revision)}…`);
    await api(`/script-engine/${action}`, { method: "POST", body: { script_path: path, revision: commit.revision } });
    notify(`${path} runs revision ${short(commit.revision)}`);
  } catch (err) {
    showError(err);
  }
  emit("refresh-running");
}

function renderHistory() {
  const run = state.running.get(shownPath);
  const rows = commits.map((c) =>
    el("tr", { "data-revision": c.revision, class: run && run.revision === c.revision ? "runs" : "" },
      el("td", {}, el("button", { type: "button", class: "rev", text: short(c.revision), title: "show the diff against the current version", onclick: () => showDiff(c) })),
      el("td", { text: when(c.time) }),
      el("td", { text: c.author || "" }),
      el("td", { class: "msg", text: String(c.message || "").split("\n")[0] }),
      el("td", { class: "actions" },
        el("button", { type: "button", text: "Restore", "aria-label": `Restore ${short(c.revision)}`, onclick: () => restore(c) }),
        el("button", { type: "button", text: "Run this revision", "aria-label": `Run revision ${short(c.revision)}`, onclick: () => runRevision(c) }),
        run && run.revision === c.revision ? el("span", { class: "badge running", text: "running" }) : null,
      ),
    ),
  );
  $("history-rows").replaceChildren(...rows);
  $("history-empty").hidden = rows.length > 0;
}

export async function loadHistory() {
  const path = state.selected;
  shownPath = path;
  $("history-path").textContent = path || "no script selected";
  $("history-diff-section").hidden = true;
  if (!path) {
    commits = [];
    renderHistory();
    return;
  }
  try {
    const answer = await api(`/script-engine/files/${filePath(path)}/history`);
    if (path !== state.selected) return;
    commits = answer.history || answer.commits || [];
  } catch (err) {
    commits = [];
    showError(err);
  }
  renderHistory();
}

export function setupHistory() {
  let visible = false;
  on("tab", (name) => {
    visible = name === "history";
    if (visible) loadHistory();
  });
  on("select", () => visible && loadHistory());
  on("saved", () => visible && loadHistory());
  on("running", () => visible && renderHistory());
  $("history-refresh").addEventListener("click", loadHistory);
}
