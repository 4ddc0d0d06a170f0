// The editor: CodeMirror 6 with Python, bracket matching and lint diagnostics from the
// gateway's code check (POST /script-engine/check), save with If-Match (409 FILE_CHANGED).
import {
  Compartment,
  EditorState,
  EditorView,
  basicSetup,
  forceLinting,
  keymap,
  lintGutter,
  linter,
  python,
  setDiagnostics,
} from "../vendor/codemirror.js";
import { ApiError, api, filePath } from "./api.js";
import { messageNodes } from "./logs.js";
import { emit, on } from "./state.js";
import { $, el, notify, showError } from "./ui.js";

const CHECK_DELAY_MS = 700;
let view = null;
let current = null; // {path, etag, saved}
let checkMissing = false;
let problem = null; // {path, node}: why the last start of a file failed, shown with its findings
const language = new Compartment();

const bare = (etag) => (etag ? String(etag).replace(/^W\//, "").replace(/"/g, "") : null);
const field = (err, name) => (err.body.details && err.body.details[name]) ?? err.body[name];
const clamp = (v, lo, hi) => Math.max(lo, Math.min(hi, v));

function toDiagnostic(doc, f) {
  const line = doc.line(clamp(f.line || 1, 1, doc.lines));
  const from = clamp(line.from + (f.column || 1) - 1, line.from, line.to);
  let to = from;
  if (f.end_line) {
    const end = doc.line(clamp(f.end_line, 1, doc.lines));
    to = clamp(end.from + (f.end_column || 1) - 1, end.from, end.to);
  }
  if (to <= from) to = from < line.to ? line.to : from;
  return { from, to, severity: f.severity === "error" ? "error" : "warning", source: f.code, message: `${f.message} (${f.code})` };
}

function renderFindings(findings, note) {
  const items = findings.map((f) =>
    el("li", { class: `sev-${f.severity}` },
      el("button", {
        type: "button",
        onclick: () => gotoLine(f.line, f.column),
        text: `${f.severity} line ${f.line}:${f.column}${f.cell !== undefined ? ` (cell ${f.cell})` : ""} ${f.code}: ${f.message}`,
      })),
  );
  if (problem && current && problem.path === current.path) items.unshift(problem.node);
  if (!items.length) items.push(el("li", { class: "muted", text: note || "No findings." }));
  $("ed-findings").replaceChildren(...items);
}

// The code check of `body`; null when the gateway has no check endpoint.
async function check(body) {
  if (checkMissing) return null;
  try {
    return await api("/script-engine/check", { method: "POST", body });
  } catch (err) {
    if (err.code === "ENDPOINT_NOT_FOUND") {
      checkMissing = true;
      renderFindings([], "This gateway has no code check (POST /script-engine/check).");
      return null;
    }
    throw err;
  }
}

const isNotebook = (path) => path && path.endsWith(".ipynb");

// The linter source: runs after typing pauses, on demand (forceLinting) and on open.
async function lintSource(v) {
  if (!current || isNotebook(current.path)) return [];
  const doc = v.state.doc;
  try {
    const result = await check({ content: doc.toString(), script_path: current.path });
    if (!result) return [];
    if (v.state.doc !== doc) return []; // stale: a newer run follows
    renderFindings(result.findings);
    return result.findings.map((f) => toDiagnostic(doc, f));
  } catch (err) {
    showError(err);
    return [];
  }
}

function showFindings(findings) {
  renderFindings(findings);
  if (view && current && !isNotebook(current.path)) {
    view.dispatch(setDiagnostics(view.state, findings.map((f) => toDiagnostic(view.state.doc, f))));
  }
}

function markDirty() {
  const dirty = current && view.state.doc.toString() !== current.saved;
  $("ed-dirty").textContent = dirty ? "● unsaved changes" : "";
}

function extensions(path) {
  return [
    basicSetup,
    language.of(isNotebook(path) ? [] : python()),
    lintGutter(),
    linter(lintSource, { delay: CHECK_DELAY_MS }),
    keymap.of([{ key: "Mod-s", preventDefault: true, run: () => (save(false), true) }]),
    EditorView.updateListener.of((u) => u.docChanged && markDirty()),
    EditorView.contentAttributes.of({ "aria-label": "Script source" }),
  ];
}

function makeView() {
  view = new EditorView({ parent: $("ed-host"), state: EditorState.create({ doc: "", extensions: extensions("") }) });
  // for tests and the browser's devtools: the text in the editor (read-only)
  window.vwedConsole = Object.freeze({ editorText: () => view.state.doc.toString() });
}

// A new editor state per file: its own undo history, whose bottom is the file as opened.
function load(path, file) {
  const etag = bare(file.etag) || bare(file.__headers && file.__headers.get("ETag"));
  current = { path, etag, saved: file.content };
  view.setState(EditorState.create({ doc: file.content, extensions: extensions(path) }));
  $("ed-path").textContent = path;
  $("ed-conflict").hidden = true;
  markDirty();
  renderFindings([], isNotebook(path) ? "Notebooks are checked before start." : "Checking…");
}

export async function open(path, line) {
  if (!view) makeView();
  if (!current || current.path !== path) {
    if (current && view.state.doc.toString() !== current.saved && !confirm(`Discard the unsaved changes of ${current.path}?`)) return;
    try {
      load(path, await api(`/script-engine/files/${filePath(path)}`));
    } catch (err) {
      showError(err);
      return;
    }
  }
  if (line) gotoLine(line, 1);
}

function gotoLine(line, column) {
  if (!view) return;
  const doc = view.state.doc;
  const l = doc.line(clamp(line, 1, doc.lines));
  const pos = clamp(l.from + (column || 1) - 1, l.from, l.to);
  view.dispatch({ selection: { anchor: pos, head: l.to }, effects: EditorView.scrollIntoView(pos, { y: "center" }) });
  view.focus();
}

async function save(overwrite) {
  if (!current) return;
  const content = view.state.doc.toString();
  try {
    if (!isNotebook(current.path)) {
      const result = await check({ content, script_path: current.path }); // before save
      if (result) showFindings(result.findings);
    }
    // overwrite: the etag of the version on disk (replace exactly that one), or true (no check)
    const match = overwrite === true ? null : overwrite || current.etag;
    const headers = match ? { "If-Match": `"${match}"` } : {};
    const saved = await api(`/script-engine/files/${filePath(current.path)}`, { method: "PUT", headers, body: { content } });
    current.saved = content;
    current.etag = bare(saved.etag) || bare(saved.__headers.get("ETag"));
    $("ed-conflict").hidden = true;
    markDirty();
    notify(`Saved ${current.path}`);
    emit("saved", { path: current.path });
  } catch (err) {
    if (err instanceof ApiError && err.code === "FILE_CHANGED") {
      current.theirs = bare(field(err, "etag"));
      $("ed-conflict-text").textContent = `${current.path} changed on disk since you opened it (someone else saved it). ` +
        "Reload it (your changes are lost) or overwrite it with yours.";
      $("ed-conflict").hidden = false;
    } else showError(err);
  }
}

// Before start: the check of the saved file, its findings shown. A syntax error is left
// to the gateway (it refuses the start with 422 SYNTAX_ERROR and the findings); other
// errors (an undefined name, a route another script owns) ask whether to start anyway.
export async function checkBeforeStart(path) {
  problem = null;
  try {
    const result = await check({ script_path: path });
    if (!result || result.ok) return true;
    await open(path);
    showFindings(result.findings);
    emit("show-tab", "editor");
    const errors = result.findings.filter((f) => f.severity === "error");
    if (errors.every((f) => f.code === "SYNTAX_ERROR")) return true;
    return confirm(`The code check found ${errors.length} error(s) in ${path}: ${errors[0].message}. Start anyway?`);
  } catch (err) {
    showError(err);
    return true; // the gateway checks again before it starts
  }
}

export function setupEditor() {
  $("ed-save").addEventListener("click", () => save(false));
  $("ed-check").addEventListener("click", async () => {
    if (!view || !current) return;
    forceLinting(view);
  });
  $("ed-conflict-reload").addEventListener("click", async () => {
    const path = current.path;
    current = null;
    await open(path);
  });
  $("ed-conflict-overwrite").addEventListener("click", () => save(current.theirs || true));
  on("open", ({ path, line }) => {
    emit("show-tab", "editor");
    open(path, line);
  });
  on("start-refused", async ({ err, path }) => {
    const findings = field(err, "findings");
    if (path && (Array.isArray(findings) || err.body.traceback)) await open(path);
    if (Array.isArray(findings)) {
      emit("show-tab", "editor");
      showFindings(findings);
    } else if (err.body.traceback) {
      // boot() raised: its traceback, each place a link into the editor
      emit("show-tab", "editor");
      problem = {
        path,
        node: el("li", { class: "sev-error" }, el("strong", { text: `${err.message} (${err.code})` }),
          el("pre", { class: "traceback" }, ...messageNodes(err.body.traceback))),
      };
      renderFindings([]);
    }
  });
  on("renamed", ({ old, path }) => {
    if (current && current.path === old) {
      current.path = path;
      $("ed-path").textContent = path;
    }
  });
  on("restored", async ({ path }) => {
    // a restore wrote the file: an open, unchanged copy shows the restored content
    if (current && current.path === path && view.state.doc.toString() === current.saved) {
      current = null;
      await open(path);
    }
  });
  on("deleted", ({ path }) => {
    if (current && current.path === path) {
      current = null;
      view.setState(EditorState.create({ doc: "" }));
      $("ed-path").textContent = "no file open";
    }
  });
}
