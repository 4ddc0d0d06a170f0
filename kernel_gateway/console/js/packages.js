// The packages the selected script declares (GET /script-engine/dependencies) and whether
// they are installed; a Start of a script whose packages are not installed asks first.
import { api, query } from "./api.js";
import { on, state } from "./state.js";
import { $, el } from "./ui.js";

const requirements = (answer) => (answer && answer.declaration && answer.declaration.requirements) || [];
const installed = (answer) => Boolean(answer && answer.ready);

async function fetchPackages(path) {
  return api(`/script-engine/dependencies${query({ script_path: path })}`);
}

function render(path, answer, err) {
  const box = $("sel-packages");
  box.hidden = !path;
  if (!path) return;
  if (err) {
    // an older gateway without the endpoint: say nothing; a bad declaration: say so
    box.hidden = err.status === 404 && err.code !== "SCRIPT_NOT_FOUND";
    box.replaceChildren(el("span", { class: "error", text: `Packages: ${err.message} (${err.code})` }));
    return;
  }
  const reqs = requirements(answer);
  if (!reqs.length) {
    box.replaceChildren(el("span", { class: "muted", text: "Packages: none declared (the engine's own)" }));
    return;
  }
  const decl = answer.declaration;
  const origin = decl.file ? `${decl.origin} ${decl.file}` : decl.origin;
  const ok = installed(answer);
  const parts = [
    el("span", { text: `Packages (${origin}):` }),
    el("ul", { class: "pkg-list", "aria-label": "Declared packages" }, ...reqs.map((r) => el("li", { text: r }))),
    el("span", {
      class: `badge ${ok ? "running" : "installing"}`,
      id: "sel-packages-state",
      text: ok ? "installed" : "not installed",
    }),
    ok && answer.environment
      ? el("span", {
          class: "muted",
          text: `environment ${String(answer.environment.lock).slice(0, 12)}: ${(answer.environment.packages || []).map((p) => `${p[0]} ${p[1]}`).join(", ")}`,
        })
      : null,
  ];
  box.replaceChildren(...parts.filter(Boolean));
}

export async function showPackages(path = state.selected) {
  if (!path) return render(null);
  try {
    const answer = await fetchPackages(path);
    if (path === state.selected) render(path, answer);
  } catch (err) {
    if (path === state.selected) render(path, null, err);
  }
}

// Before a start: true to go on. A script whose packages are not installed asks first,
// listing what it declares (installing runs the packages' build code).
export async function confirmInstall(path) {
  let answer;
  try {
    answer = await fetchPackages(path);
  } catch {
    return true; // the start itself reports a bad declaration, with its code
  }
  const reqs = requirements(answer);
  if (!reqs.length || installed(answer)) return true;
  const n = reqs.length;
  return confirm(`Install ${n} package${n === 1 ? "" : "s"} and start ${path}?\n\n${reqs.join("\n")}`);
}

export function setupPackages() {
  on("select", (path) => showPackages(path));
  let last = null; // refresh when the selected script's status changes (e.g. installing -> running)
  on("running", (running) => {
    const run = state.selected ? running.get(state.selected) : null;
    const now = `${state.selected}:${run ? run.status : "stopped"}`;
    if (now !== last && last !== null) showPackages();
    last = now;
  });
}
