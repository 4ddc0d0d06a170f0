// The console's entry point: sign in, then the panes; tabs switch the panes.
import { setupCalls } from "./calls.js";
import { setupCharts } from "./charts.js";
import { checkBeforeStart, setupEditor } from "./editor.js";
import { setupHistory } from "./history.js";
import { setupLogs } from "./logs.js";
import { setupScripts } from "./scripts.js";
import { setupSecrets } from "./secrets.js";
import { setupSignin } from "./signin.js";
import { emit, on, state } from "./state.js";
import { setupSteps } from "./steps.js";
import { $ } from "./ui.js";

const TABS = ["scripts", "editor", "history", "logs", "calls", "steps", "charts"];

// Every tab of the tablist, those added by a module (Secrets) too.
function tabNames() {
  return [...document.querySelectorAll("nav[role=tablist] [role=tab]")].map((t) => t.id.slice(4));
}

function showTab(name) {
  for (const tab of tabNames()) {
    const selected = tab === name;
    $(`tab-${tab}`).setAttribute("aria-selected", String(selected));
    $(`tab-${tab}`).tabIndex = selected ? 0 : -1;
    $(`pane-${tab}`).hidden = !selected;
  }
  emit("tab", name);
}

function setupTabs() {
  for (const tab of TABS) $(`tab-${tab}`).addEventListener("click", () => showTab(tab));
  $("tab-scripts").parentElement.addEventListener("keydown", (e) => {
    const names = tabNames();
    const i = names.findIndex((t) => $(`tab-${t}`).getAttribute("aria-selected") === "true");
    const step = e.key === "ArrowRight" ? 1 : e.key === "ArrowLeft" ? -1 : 0;
    if (!step) return;
    const next = names[(i + step + names.length) % names.length];
    showTab(next);
    $(`tab-${next}`).focus();
  });
  on("show-tab", showTab);
}

function signedIn(me) {
  if (state.whoami) return; // a second sign-in (double submit) must not set up twice
  state.whoami = me;
  $("whoami").textContent = `${me.role}${me.version ? ` · gateway ${me.version}` : ""}`;
  $("signin").hidden = true;
  $("app").hidden = false;
  setupTabs();
  setupEditor();
  setupScripts(checkBeforeStart);
  setupHistory();
  setupSecrets();
  setupLogs();
  setupCalls();
  setupSteps();
  setupCharts();
  showTab("scripts");
}

setupSignin(signedIn);
performance.mark("vwed-signin-ready"); // the form works from here (bench/console.py reads it)
