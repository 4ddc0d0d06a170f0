// Secrets: names, scopes, who set them and when (GET /script-engine/secrets; never a
// value); a form to set one (PUT, the value in a password field) and Delete buttons.
// The tab and its pane are added here, so index.html and main.js keep only the import.
import { api } from "./api.js";
import { emit, on } from "./state.js";
import { $, el, notify, showError } from "./ui.js";

function when(ts) {
  return new Date(ts * 1000).toLocaleString([], { hour12: false });
}

async function load() {
  try {
    const { secrets } = await api("/script-engine/secrets");
    $("secrets-rows").replaceChildren(...secrets.map((s) =>
      el("tr", {},
        el("td", { class: "path", text: s.name }),
        el("td", { text: s.scripts ? s.scripts.join(", ") : "all scripts" }),
        el("td", { text: s.set_by }),
        el("td", { text: when(s.set_at) }),
        el("td", { class: s.readable ? "" : "err", text: s.readable ? "" : "not readable with this key: set it again" }),
        el("td", {}, el("button", { type: "button", class: "danger", text: "Delete", "aria-label": `Delete secret ${s.name}`, onclick: () => remove(s.name) })),
      )));
    $("secrets-empty").hidden = secrets.length > 0;
  } catch (err) {
    showError(err);
  }
}

async function remove(name) {
  if (!confirm(`Delete secret ${name}? Scripts reading it get SecretNotFound.`)) return;
  try {
    await api(`/script-engine/secrets/${encodeURIComponent(name)}`, { method: "DELETE" });
    notify(`secret ${name} deleted`);
    load();
  } catch (err) {
    showError(err);
  }
}

async function save(e) {
  e.preventDefault();
  const name = $("secret-name").value.trim();
  const scripts = $("secret-scripts").value.split(",").map((s) => s.trim()).filter(Boolean);
  const body = { value: $("secret-value").value };
  if (scripts.length) body.scripts = scripts;
  try {
    const r = await api(`/script-engine/secrets/${encodeURIComponent(name)}`, { method: "PUT", body });
    $("secret-value").value = ""; // the value does not stay on the page
    notify(`secret ${name} ${r.created ? "set" : "replaced"}`);
    load();
  } catch (err) {
    showError(err);
  }
}

function build() {
  const tab = el("button", { type: "button", role: "tab", id: "tab-secrets", "aria-controls": "pane-secrets", "aria-selected": "false", tabindex: "-1", text: "Secrets" });
  document.querySelector("nav[role=tablist]").append(tab);
  const pane = el("section", { id: "pane-secrets", role: "tabpanel", "aria-labelledby": "tab-secrets", hidden: true },
    el("form", { id: "secret-form", class: "row filters", autocomplete: "off" },
      el("label", {}, "Name ", el("input", { id: "secret-name", size: "18", required: true, pattern: "[A-Za-z0-9_.\\-]{1,128}", "aria-label": "Secret name" })),
      el("label", {}, "Value ", el("input", { id: "secret-value", type: "password", size: "18", required: true, autocomplete: "new-password", "aria-label": "Secret value" })),
      el("label", {}, "Scripts ", el("input", { id: "secret-scripts", size: "28", placeholder: "all scripts, or warehouse/, robot/battery.py", "aria-label": "Scripts that may read it" })),
      el("button", { type: "submit", id: "secret-save", text: "Set" })),
    el("table", { class: "grid", "aria-label": "Secrets" },
      el("thead", {}, el("tr", {}, ...["Name", "Scripts", "Set by", "Set at", "", ""].map((h) => el("th", { text: h })))),
      el("tbody", { id: "secrets-rows" })),
    el("p", { id: "secrets-empty", class: "muted", text: "No secret is set. Scripts read one with VWED.secrets.get(name)." }));
  document.querySelector("main").append(pane);
  return tab;
}

export function setupSecrets() {
  const tab = build();
  tab.addEventListener("click", () => emit("show-tab", "secrets"));
  $("secret-form").addEventListener("submit", save);
  on("tab", (name) => {
    const active = name === "secrets";
    tab.setAttribute("aria-selected", String(active));
    tab.tabIndex = active ? 0 : -1;
    $("pane-secrets").hidden = !active;
    if (active) load();
  });
}
