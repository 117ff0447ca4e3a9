// The live dashboard: one EventSource; ledger text is only ever set as textContent.
"use strict";
const rows = new Map();
let sort = { key: "number", descending: true };
let pending = null;
let pendingAt = 0;

function el(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (className) node.className = className;
  return node;
}

function metric(value) {
  return value === null || value === undefined ? "—" : Number(value).toPrecision(6).replace(/\.?0+$/, "");
}

function renderTable() {
  const filter = document.getElementById("filter").value;
  const body = document.querySelector("#experiments tbody");
  const list = [...rows.values()].filter((row) => !filter || row.status === filter);
  list.sort((a, b) => {
    const x = a[sort.key], y = b[sort.key];
    const order = x === y ? 0 : x === null ? 1 : y === null ? -1 : x < y ? -1 : 1;
    return sort.descending ? -order : order;
  });
  body.replaceChildren(...list.map((row) => {
    const tr = el("tr");
    tr.dataset.number = row.number;
    tr.append(el("td", row.number), el("td", row.status, "status " + row.status), el("td", metric(row.metric)),
      el("td", [row.agent, row.model].filter(Boolean).join(" ")), el("td", row.description, "description"),
      el("td", row.status === "keep" || row.status === "baseline" ? "" : row.reason),
      el("td", (row.finished_at || "").slice(0, 19).replace("T", " ")));
    tr.addEventListener("click", () => showDetail(row.number));
    return tr;
  }));
}

async function showDetail(number) {
  const detail = document.getElementById("detail");
  const response = await fetch("experiment/" + number);
  if (!response.ok) return;
  const row = await response.json();
  detail.replaceChildren(el("h2", "Experiment " + row.number + ": " + row.status),
    el("p", row.description), el("p", row.reason), el("pre", row.diff || "(no diff)", "diff"),
    el("pre", row.log || "(no log)", "log"));
  detail.scrollIntoView();
}

function renderInflight() {
  const panel = document.getElementById("inflight");
  if (!pending) { panel.replaceChildren(el("p", "nothing in flight")); return; }
  const elapsed = pending.elapsed + (Date.now() - pendingAt) / 1000;
  const measuring = pending.phase === "measure";  // the budget is the measurement's
  const budget = measuring && pending.budget ? " / " + pending.budget + " s budget" : "";
  const phase = pending.phase + (pending.evaluator_phase ? " (" + pending.evaluator_phase + ")" : "");
  panel.replaceChildren(el("p", "experiment " + pending.number + ": " + phase + ", " +
    Math.round(elapsed) + " s" + budget, "phase"), el("pre", pending.log || "", "log"));
}

function apply(event) {
  if (event.run !== undefined) {
    document.getElementById("run").textContent = event.run
      ? "run " + event.run.tag + " (" + event.run.target + ", " + event.metric + ", " + event.direction + " is better)"
      : "waiting for a run…";
  }
  for (const row of event.rows || []) rows.set(row.number, row);
  if (event.rows) renderTable();
  if (event.kpis !== undefined) document.getElementById("kpis").innerHTML = event.kpis;  // escaped by the server
  if (event.chart !== undefined) document.getElementById("chart").innerHTML = event.chart;  // escaped SVG
  if (event.pending !== undefined) { pending = event.pending; pendingAt = Date.now(); }
  if (pending && event.log !== undefined) { pending.log = event.log; pending.evaluator_phase = event.evaluator_phase; }
  renderInflight();
}

document.querySelectorAll("#experiments th").forEach((th) => th.addEventListener("click", () => {
  sort = { key: th.dataset.key, descending: sort.key === th.dataset.key ? !sort.descending : false };
  renderTable();
}));
document.getElementById("filter").addEventListener("change", renderTable);
setInterval(() => { if (pending) renderInflight(); }, 1000);

const source = new EventSource("events");
const connection = document.getElementById("connection");
source.addEventListener("snapshot", (message) => { rows.clear(); apply(JSON.parse(message.data)); renderTable(); });
source.addEventListener("update", (message) => apply(JSON.parse(message.data)));
source.onopen = () => { connection.textContent = "live"; };
source.onerror = () => { connection.textContent = "reconnecting…"; };
