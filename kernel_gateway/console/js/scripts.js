// The scripts tree, the running scripts (polled every 2 s) and the lifecycle buttons.
import { api, filePath } from "./api.js";
import { confirmInstall, setupPackages } from "./packages.js";
import { emit, on, state } from "./state.js";
import { $, duration, el, notify, num, showError } from "./ui.js";

const POLL_MS = 2000;

function flatten(node, out) {
  if (node.type === "file") out.push(node.path);
  for (const child of node.children || []) flatten(child, out);
  return out;
}

function renderNode(node) {
  if (node.type === "directory") {
    const group = el("ul", { role: "group" }, ...node.children.map(renderNode));
    return el("li", { role: "treeitem", "aria-expanded": "true", "aria-label": node.name },
      el("div", { class: "tree-dir", text: `${node.name}/` }), group);
  }
  const run = state.running.get(node.path);
  const button = el("button", {
    type: "button",
    class: "tree-file",
    "data-path": node.path,
    "aria-selected": String(state.selected === node.path),
    title: node.path,
    onclick: () => {
      select(node.path);
      emit("open", { path: node.path });
    },
  }, el("span", { text: node.name }), el("span", { class: `badge ${run ? run.status : ""}`, text: run ? run.status : "" }));
  return el("li", { role: "treeitem", "aria-label": node.path }, button);
}

export async function loadTree() {
  try {
    const { tree } = await api("/script-engine/files");
    state.files = flatten(tree, []);
    $("tree").replaceChildren(...tree.children.map(renderNode));
    emit("tree", state.files);
  } catch (err) {
    showError(err);
  }
}

function refreshBadges() {
  for (const button of document.querySelectorAll("#tree .tree-file")) {
    const run = state.running.get(button.dataset.path);
    const badge = button.querySelector(".badge");
    badge.className = `badge ${run ? run.status : ""}`;
    badge.textContent = run ? run.status : "";
    button.setAttribute("aria-selected", String(state.selected === button.dataset.path));
  }
}

export function select(path) {
  state.selected = path;
  refreshBadges();
  renderSelected();
  emit("select", path);
}

function renderSelected() {
  const path = state.selected;
  const run = path ? state.running.get(path) : null;
  $("sel-path").textContent = path || "no script selected";
  const status = $("sel-status");
  status.textContent = path ? (run ? run.status : "stopped") : "";
  status.className = `badge ${run ? run.status : ""}`;
  status.setAttribute("aria-label", `status ${status.textContent}`);
  $("act-start").disabled = !path || Boolean(run);
  for (const id of ["act-rename", "act-delete"]) $(id).disabled = !path;
  for (const id of ["act-stop", "act-restart", "act-reload"]) $(id).disabled = !run;
  const link = $("jupyter-link");
  const base = state.whoami && state.whoami.jupyter_url;
  link.hidden = !(base && path);
  if (base && path) link.href = `${base.replace(/\/$/, "")}/lab/tree/${filePath(path)}`;
}

function renderRunning() {
  const now = Date.now() / 1000;
  const rows = [...state.running.values()].map((s) =>
    el("tr", { "data-path": s.script_path },
      el("td", {}, el("button", { type: "button", class: "tree-file", text: s.script_path, onclick: () => select(s.script_path) })),
      el("td", {}, el("span", { class: `badge ${s.status}`, text: s.status })),
      el("td", { class: "rev", title: s.revision || "", text: s.revision ? s.revision.slice(0, 12) : "–" }),
      el("td", { text: s.replicas }),
      el("td", { text: s.restarts }),
      el("td", { text: s.started_at ? duration(now - s.started_at) : "–" }),
      el("td", { text: (s.kernels || []).map((k) => `#${k.replica} ${num(k.cpu_percent)}% ${num(k.rss_mib ?? k.rss_mb)} MiB`).join(", ") + cpuQuota(s.cpu_quota) }),
      el("td", { text: num(s.calls_per_s, 2) + rateLimit(s.rate_limit) }),
      el("td", { text: s.error_rate === undefined ? "–" : `${num(100 * s.error_rate, 1)}%` }),
      el("td", { class: "err", text: s.last_error ? String(s.last_error.message || s.last_error) : "" }),
    ),
  );
  $("running-rows").replaceChildren(...rows);
  $("running-empty").hidden = rows.length > 0;
}

// Quotas (docs/security.md, "Quotas"): shown after the kernels and the call rate.
function cpuQuota(q) {
  if (!q) return "";
  return q.applied ? ` (quota ${q.cores} core)` : ` (quota ${q.cores} core not applied)`;
}

function rateLimit(r) {
  return r ? ` (limit ${r.calls_per_minute}/min)` : "";
}

export async function pollRunning() {
  try {
    const { scripts } = await api("/script-engine/running");
    state.running = new Map(scripts.map((s) => [s.script_path, s]));
    renderRunning();
    refreshBadges();
    renderSelected();
    emit("running", state.running);
  } catch (err) {
    if (err.code === "UNAUTHORIZED") location.reload();
    else showError(err);
  }
}

// Actions: each asks the gateway and refreshes; errors are shown with their code.
async function act(label, fn, path) {
  try {
    notify(`${label}…`);
    await fn();
    notify(`${label}: done`);
  } catch (err) {
    showError(err);
    if (err.code === "SYNTAX_ERROR" || err.code === "BOOT_FAILED") emit("start-refused", { err, path });
  } finally {
    await pollRunning();
  }
}

const ref = () => ({ script_path: state.selected });

function setupActions(checkBeforeStart) {
  $("act-start").addEventListener("click", () =>
    act(`Start ${state.selected}`, async () => {
      if (!(await checkBeforeStart(state.selected))) throw new Error("not started: the code check found errors");
      if (!(await confirmInstall(state.selected))) throw new Error("not started: its packages were not installed");
      await api("/script-engine/start", {
        method: "POST",
        body: { ...ref(), replicas: Number($("sel-replicas").value) || 1, restart: $("sel-restart").value },
      });
    }, state.selected),
  );
  $("act-stop").addEventListener("click", () => act(`Stop ${state.selected}`, () => api("/script-engine/stop", { method: "POST", body: ref() })));
  $("act-restart").addEventListener("click", () => act(`Restart ${state.selected}`, () => api("/script-engine/restart", { method: "POST", body: ref() }), state.selected));
  $("act-reload").addEventListener("click", () => act(`Reload ${state.selected}`, () => api("/script-engine/reload", { method: "POST", body: ref() }), state.selected));
  $("new-script").addEventListener("click", async () => {
    const path = prompt("Path of the new script (under the scripts root), e.g. area/name.py");
    if (!path) return;
    await act(`Create ${path}`, () => api(`/script-engine/files/${filePath(path)}`, { method: "POST", body: { template: true } }));
    await loadTree();
    select(path);
    emit("open", { path });
  });
  $("act-rename").addEventListener("click", async () => {
    const old = state.selected;
    const path = prompt(`Rename ${old} to:`, old);
    if (!path || path === old) return;
    await act(`Rename ${old}`, () => api(`/script-engine/files/${filePath(old)}`, { method: "PATCH", body: { new_path: path } }));
    await loadTree();
    if (state.files.includes(path)) {
      select(path);
      emit("renamed", { old, path });
    }
  });
  $("act-delete").addEventListener("click", async () => {
    const path = state.selected;
    if (!confirm(`Delete ${path}? This cannot be undone.`)) return;
    await act(`Delete ${path}`, () => api(`/script-engine/files/${filePath(path)}`, { method: "DELETE" }));
    await loadTree();
    if (!state.files.includes(path)) {
      emit("deleted", { path });
      select(null);
    }
  });
  $("refresh-tree").addEventListener("click", loadTree);
}

export function setupScripts(checkBeforeStart) {
  setupActions(checkBeforeStart);
  setupPackages();
  renderSelected();
  on("refresh-running", pollRunning);
  on("goto", ({ path }) => {
    if (path && path !== state.selected) select(path);
  });
  loadTree().then(pollRunning);
  setInterval(pollRunning, POLL_MS);
}
