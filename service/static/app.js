// advise service pages: live updates from the API's server-sent events, no page reloads.
// Everything from the server is put into the page as text (textContent), never as markup, except the
// sweep fragment, which the server renders (and escapes) itself.
"use strict";

const $ = (sel, root = document) => root.querySelector(sel);
const $$ = (sel, root = document) => [...root.querySelectorAll(sel)];
const TERMINAL = ["complete", "failed", "cancelled"];

function when(t) {
  return t ? new Date(t * 1000).toISOString().slice(0, 19).replace("T", " ") : "";
}

function liveIndicator(source) {
  const dot = $("#live");
  if (!dot) return;
  source.addEventListener("open", () => dot.classList.add("on"));
  source.addEventListener("error", () => dot.classList.remove("on"));
}

function setFields(root, run) {
  for (const el of $$("[data-f]", root)) {
    const key = el.dataset.f;
    if (!(key in run)) continue;
    if (key === "status") {
      const badge = el.classList.contains("badge") ? el : $(".badge", el);
      badge.textContent = run.status;
      badge.className = "badge " + run.status;
    } else if (key === "created_at") {
      el.textContent = when(run.created_at);
    } else if (key === "name") {
      continue;
    } else if (key === "error") {
      el.textContent = run.error || "";
      el.hidden = !run.error;
    } else {
      el.textContent = run[key] == null ? "" : String(run[key]);
    }
  }
}

// ------------------------------------------------------------------ runs page
function runRow(run) {
  const tr = document.createElement("tr");
  tr.id = "run-" + run.id;
  tr.dataset.id = run.id;
  const link = (text) => { const a = document.createElement("a"); a.href = run.url; a.textContent = text; return a; };
  const cells = ["id", "name", "status", "stage", "headline", "quality_text", "cost_text", "submitter", "created_at"];
  for (const f of cells) {
    const td = document.createElement("td");
    if (f === "id") td.append(link(String(run.id)));
    else td.dataset.f = f;
    if (f === "name") td.append(link(run.name));
    if (f === "status") { const b = document.createElement("span"); b.className = "badge"; td.append(b); }
    tr.append(td);
  }
  return tr;
}

function runsPage() {
  const body = $("#runs tbody");
  const since = document.body.dataset.since;
  const source = new EventSource("/api/events" + (since ? `?since=${since}` : ""));
  liveIndicator(source);
  source.addEventListener("run", (ev) => {
    const run = JSON.parse(ev.data);
    let tr = document.getElementById("run-" + run.id);
    if (!tr) { tr = runRow(run); body.prepend(tr); }
    tr.className = "status-" + run.status;
    setFields(tr, run);
    $("#no-runs").hidden = true;
  });
  const form = $("#submit-form");
  if (form) form.addEventListener("submit", submitTask);
}

async function submitTask(ev) {
  ev.preventDefault();
  const form = ev.target;
  const error = $("#submit-error");
  const data = new FormData();
  const folder = [...$("#folder").files];
  const files = folder.length ? folder : [...$("#files").files];
  for (const f of files) data.append("files", f, f.webkitRelativePath || f.name);
  const fields = new FormData(form);
  for (const key of ["task", "mode", "workers", "submitter"]) {
    const v = fields.get(key);
    if (v) data.append(key, v);
  }
  data.append("tune", form.elements.tune.checked ? "true" : "false");
  error.hidden = true;
  $("#submit-button").disabled = true;
  try {
    const r = await fetch("/api/runs", { method: "POST", body: data, credentials: "same-origin" });
    const body = await r.json().catch(() => ({ detail: r.statusText }));
    if (r.status === 201) { window.location.assign(body.url); return; }
    error.textContent = typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail);
    error.hidden = false;
  } catch (e) {
    error.textContent = String(e);
    error.hidden = false;
  } finally {
    $("#submit-button").disabled = false;
  }
}

// ------------------------------------------------------------------ run page
function bar(state) {
  const el = document.createElement("div");
  el.className = "bar";
  const label = document.createElement("span"); label.className = "label";
  const track = document.createElement("span"); track.className = "track";
  const fill = document.createElement("span"); fill.className = "fill"; track.append(fill);
  const count = document.createElement("span"); count.className = "count";
  const secs = document.createElement("span"); secs.className = "secs";
  el.append(label, track, count, secs);
  label.textContent = state.description;
  state.el = el;
  return el;
}

function drawBar(state) {
  const el = state.el;
  const total = state.total;
  el.classList.toggle("indeterminate", total == null && !state.done);
  el.classList.toggle("done", !!state.done);
  const pct = total ? Math.min(100, (100 * state.completed) / total) : (state.done ? 100 : 0);
  $(".fill", el).style.width = pct + "%";
  $(".count", el).textContent = total != null ? `${state.completed}/${total}` : "";
  const seconds = state.done ? state.seconds : Date.now() / 1000 - state.started;
  $(".secs", el).textContent = seconds != null ? `${Math.max(0, seconds).toFixed(0)} s` : "";
}

function runPage() {
  const id = document.body.dataset.run;
  const bars = new Map();
  const source = new EventSource(`/api/runs/${id}/events`);
  liveIndicator(source);
  const key = (d) => `${d.job_id}:${d.id}`;
  source.addEventListener("task", (ev) => {
    const d = JSON.parse(ev.data);
    const state = { description: d.description, total: d.total, completed: 0, started: d.started, done: false };
    bars.set(key(d), state);
    $("#bars").append(bar(state));
    drawBar(state);
  });
  source.addEventListener("advance", (ev) => {
    const d = JSON.parse(ev.data);
    const state = bars.get(key(d));
    if (state) { state.completed = d.completed; drawBar(state); }
  });
  source.addEventListener("done", (ev) => {
    const d = JSON.parse(ev.data);
    const state = bars.get(key(d));
    if (state) { state.completed = d.completed; state.done = true; state.seconds = d.seconds; drawBar(state); }
  });
  const logLine = (text) => { const li = document.createElement("li"); li.textContent = text; $("#log").append(li); };
  source.addEventListener("log", (ev) => logLine(JSON.parse(ev.data).message));
  source.addEventListener("failure", (ev) => logLine("error: " + JSON.parse(ev.data).message));
  for (const kind of ["job", "summary", "status"]) source.addEventListener(kind, () => refreshDetail(id));
  source.addEventListener("run", (ev) => showRun(JSON.parse(ev.data)));
  source.addEventListener("end", () => { source.close(); $("#live").classList.remove("on"); refreshDetail(id); });
  setInterval(() => { for (const s of bars.values()) if (!s.done) drawBar(s); }, 1000);
}

function showRun(run) {
  setFields(document, run);
  document.title = `advise: run ${run.id} ${run.name} (${run.status})`;
  $("#verdict").hidden = !run.headline;
  $("#sweep-link").hidden = !run.has_study;
  const finished = TERMINAL.includes(run.status);
  const cancel = $("#cancel-form"), rerun = $("#rerun-form");
  if (cancel) cancel.hidden = finished;
  if (rerun) rerun.hidden = !finished;
}

function fillList(ul, items) {
  ul.replaceChildren(...items.map((t) => { const li = document.createElement("li"); li.textContent = t; return li; }));
}

async function refreshDetail(id) {
  const r = await fetch(`/api/runs/${id}`, { credentials: "same-origin" });
  if (!r.ok) return;
  const run = await r.json();
  showRun(run);
  if (run.summary) { fillList($("#reasons"), run.summary.reasons || []); fillList($("#cautions"), run.summary.cautions || []); }
  const jobs = $("#jobs tbody");
  jobs.replaceChildren(...run.jobs.map((j) => {
    const tr = document.createElement("tr");
    for (const v of [j.id, j.role, j.status, j.worker, when(j.started_at), when(j.heartbeat_at), j.error]) {
      const td = document.createElement("td"); td.textContent = v == null ? "" : String(v); tr.append(td);
    }
    return tr;
  }));
  showDownloads(run);
}

function showDownloads(run) {
  const items = [];
  const add = (href, text, note) => {
    const li = document.createElement("li");
    if (href) { const a = document.createElement("a"); a.href = href; a.textContent = text; li.append(a); }
    else li.append(text);
    if (note) { const s = document.createElement("span"); s.className = "muted"; s.textContent = " " + note; li.append(s); }
    items.push(li);
  };
  const hasReport = run.files.some((f) => f.path === "report.html");
  if (hasReport) add(`/api/runs/${run.id}/report`, "report.html");
  const adapters = new Set();
  for (const f of run.files) {
    if (f.path === "report.html") continue;
    if (f.path.startsWith("adapters/")) { if (!f.note && f.path.split("/").length > 2) adapters.add(f.path.split("/")[1]); continue; }
    if (f.note) add(null, f.path, `(${f.note})`);
    else add(`/api/runs/${run.id}/files/${f.path.split("/").map(encodeURIComponent).join("/")}`, f.path,
             `${(f.size / 1024).toFixed(1)} KB`);
  }
  for (const a of [...adapters].sort()) add(`/api/runs/${run.id}/adapters/${encodeURIComponent(a)}.zip`, `adapter ${a} (zip)`);
  $("#downloads").replaceChildren(...items);
  const frame = $("#report");
  if (hasReport) {
    $("#report-section").hidden = false;
    const src = `/api/runs/${run.id}/report?v=${run.finished_at || Date.now()}`;
    if (!frame.getAttribute("src") || TERMINAL.includes(run.status)) frame.setAttribute("src", src);
  }
}

// ------------------------------------------------------------------ sweep page
function sweepPage() {
  const id = document.body.dataset.run;
  let pending = null;
  const refresh = () => {
    if (pending) return;
    pending = setTimeout(async () => {
      pending = null;
      const r = await fetch(`/runs/${id}/sweep/fragment`, { credentials: "same-origin" });
      if (r.ok) $("#sweep-body").innerHTML = await r.text(); // server-rendered and escaped
    }, 500);
  };
  const source = new EventSource(`/api/runs/${id}/events?after=${document.body.dataset.lastEvent || 0}`);
  liveIndicator(source);
  for (const kind of ["log", "done", "job", "status"]) source.addEventListener(kind, refresh);
  source.addEventListener("run", (ev) => setFields(document, JSON.parse(ev.data)));
  source.addEventListener("end", () => { source.close(); refresh(); });
}

document.addEventListener("DOMContentLoaded", () => {
  const page = document.body.dataset.page;
  if (page === "runs") runsPage();
  else if (page === "run") runPage();
  else if (page === "sweep") sweepPage();
});
