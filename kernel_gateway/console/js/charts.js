// Charts (uPlot): calls/s, errors, p50/p99 per script and CPU/RSS per kernel, from the
// series the gateway samples (GET /script-engine/stats); refreshed while shown.
import uPlot from "../vendor/uPlot.esm.js";
import { api, query } from "./api.js";
import { on } from "./state.js";
import { $, el, showError } from "./ui.js";

const plots = new Map(); // key -> {plot, node}
let active = false;
let timer = null;

const COLOURS = ["#1f6feb", "#c62828", "#2e7d32", "#b26a00"];

function chart(key, title, t, series) {
  const width = 466; // the grid's column (style.css) less the figure's padding
  const data = [t, ...series.map((s) => s.values)];
  const existing = plots.get(key);
  if (existing && existing.plot.series.length === series.length + 1) {
    existing.plot.setData(data);
    return existing.node;
  }
  const node = el("figure", { class: "chart", "aria-label": title }, el("h4", { text: title }));
  const plot = new uPlot({
    width,
    height: 180,
    series: [{}, ...series.map((s, i) => ({ label: s.label, stroke: COLOURS[i % COLOURS.length], width: 1.5, spanGaps: false }))],
    axes: [{}, { size: 50 }],
    legend: { show: true },
  }, data, node);
  plots.set(key, { plot, node });
  return node;
}

async function refresh() {
  try {
    const stats = await api(`/script-engine/stats${query({ minutes: 60 })}`);
    const nodes = [];
    for (const [path, s] of Object.entries(stats.scripts || {})) {
      nodes.push(chart(`${path}|calls`, `${path}: calls/s and errors`, s.t, [
        { label: "calls/s", values: s.calls_per_s },
        { label: "errors", values: s.errors },
      ]));
      nodes.push(chart(`${path}|lat`, `${path}: latency (ms)`, s.t, [
        { label: "p50 ms", values: s.p50_ms },
        { label: "p99 ms", values: s.p99_ms },
      ]));
    }
    for (const [kernel, k] of Object.entries(stats.kernels || {})) {
      nodes.push(chart(`${kernel}|cpu`, `kernel ${kernel}: CPU % and RSS (MB)`, k.t, [
        { label: "CPU %", values: k.cpu_percent },
        { label: "RSS MB", values: k.rss_mb },
      ]));
    }
    const keep = new Set(nodes);
    for (const [key, p] of plots) if (!keep.has(p.node)) { p.plot.destroy(); plots.delete(key); }
    $("charts").replaceChildren(...nodes);
    $("charts-state").textContent = nodes.length
      ? `Sampled by the gateway every ${stats.interval_s} s; the last hour.`
      : "No series yet: start a script and call it.";
    clearTimeout(timer);
    if (active) timer = setTimeout(refresh, Math.max(2, stats.interval_s || 10) * 1000);
  } catch (err) {
    $("charts-state").textContent = `${err.message} (${err.code})`;
    if (err.code !== "ENDPOINT_NOT_FOUND") showError(err);
    clearTimeout(timer); // try again (a gateway restart, one failed request)
    if (active) timer = setTimeout(refresh, 10 * 1000);
  }
}

export function setupCharts() {
  on("tab", (name) => {
    active = name === "charts";
    clearTimeout(timer);
    if (active) refresh();
  });
}
