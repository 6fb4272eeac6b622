"use strict";
// The dashboard. Everything comes from the REST API: /catalog (the start form), /tasks (the list), /events
// (live changes, read as server-sent events), /overview (workers, queues, counts, charts; polled).
// A file of its own, loaded from the same origin, so the page's CSP can say script-src 'self'; styles are
// classes in dashboard.css or CSSOM properties (never a style attribute, which that CSP would refuse).

const $ = (selector) => document.querySelector(selector);
const records = new Map();          // task id -> newest record seen
const openDetails = new Set();      // task ids whose details row is shown
const stopping = new Set();         // task ids asked to stop from this page
const STATES = ["queued", "running", "succeeded", "failed", "cancelled", "lost"];
const OVERVIEW_EVERY_MS = 3000;     // the server caches /overview for 2 s: polling faster would show nothing new
const SVG = "http://www.w3.org/2000/svg";
let catalog = [];
let activeStates = new Set(["queued", "running"]);  // states in which a task can still be cancelled
let overview = null;                // the last /overview answer
let skew = 0;                       // server clock minus this browser's, in seconds (ages use the server's)

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "text") node.textContent = value; else node.setAttribute(key, value === true ? "" : value);
  }
  node.append(...children);
  return node;
}

function svg(tag, attrs = {}, ...children) {
  const node = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value);
  node.append(...children);
  return node;
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// The key stays in this tab (sessionStorage) and travels only in the X-API-Key header, never in a URL.
const apiKey = () => sessionStorage.getItem("bgt-api-key") || "";
const keyHeaders = () => (apiKey() ? { "X-API-Key": apiKey() } : {});

async function api(method, path, body) {
  const init = { method, headers: keyHeaders() };
  if (body !== undefined) { init.headers["content-type"] = "application/json"; init.body = JSON.stringify(body); }
  const resp = await fetch(path, init);
  const text = await resp.text();
  const data = text ? JSON.parse(text) : null;
  if (!resp.ok) {
    const detail = data && data.detail;
    throw new Error(typeof detail === "string" ? detail : JSON.stringify(detail, null, 1));
  }
  return data;
}

// ---- formatting ----
function seconds(value) {  // a duration for people: "8 ms", "1.4 s", "3 min"
  if (value === null || value === undefined) return "–";
  if (value < 0.001) return "<1 ms";
  if (value < 1) return `${Math.round(value * 1000)} ms`;
  if (value < 10) return `${value.toFixed(1)} s`;
  if (value < 120) return `${Math.round(value)} s`;
  return `${Math.round(value / 60)} min`;
}

function ago(epoch) {
  const passed = Math.max(0, Date.now() / 1000 + skew - epoch);
  if (passed < 90) return `${Math.round(passed)} s ago`;
  if (passed < 5400) return `${Math.round(passed / 60)} min ago`;
  return `${Math.round(passed / 3600)} h ago`;
}

const clock = (epoch) => new Date((epoch - skew) * 1000).toLocaleTimeString();

// ---- the start form, generated from each task's JSON Schema ----
function resolve(schema, root) {
  if (schema && schema.$ref) return resolve(root.$defs[schema.$ref.split("/").pop()], root);
  return schema || {};
}

function field(name, rawSchema, root, required) {
  const schema = resolve(rawSchema, root);
  const id = `param-${name}`;
  const hint = [schema.minimum !== undefined ? `≥ ${schema.minimum}` : "", schema.maximum !== undefined ? `≤ ${schema.maximum}` : "",
                required ? "" : "optional"].filter(Boolean).join(", ");
  const label = el("label", { for: id }, schema.title || name, " ", el("small", { text: hint }));
  let input;
  if (schema.enum) {
    input = el("select", { id, name, "data-kind": "text" }, ...schema.enum.map((v) => el("option", { value: v, text: v })));
  } else if (schema.type === "integer" || schema.type === "number") {
    input = el("input", { id, name, type: "number", "data-kind": "number", step: schema.type === "integer" ? "1" : "any",
                          min: schema.minimum, max: schema.maximum, required });
  } else if (schema.type === "boolean") {
    input = el("input", { id, name, type: "checkbox", "data-kind": "boolean" });
  } else if (schema.type === "string") {
    input = el("input", { id, name, type: "text", "data-kind": "text", required });
  } else {
    input = el("textarea", { id, name, "data-kind": "json", placeholder: "any JSON value" });
  }
  if (schema.default !== undefined && schema.default !== null) {
    if (input.type === "checkbox") input.checked = Boolean(schema.default);
    else input.value = typeof schema.default === "object" ? JSON.stringify(schema.default) : schema.default;
  }
  return [label, input];
}

function routeOf(spec) {
  if (spec.executor === "celery") return [el("span", { class: "chip celery", text: "celery" }), ` on queue ${spec.queue || "celery"}`];
  return [el("span", { class: "chip background", text: "background" }), " in the API process"];
}

function renderForm() {
  const spec = catalog.find((t) => t.name === $("#task-name").value);
  const box = $("#params");
  box.replaceChildren();
  $("#task-desc").textContent = spec ? spec.description : "";
  $("#task-route").replaceChildren(...(spec ? ["Runs ", ...routeOf(spec)] : []));
  $("#task-route").dataset.executor = spec ? spec.executor : "";
  if (!spec) return;
  const schema = spec.params_schema;
  const required = new Set(schema.required || []);
  for (const [name, prop] of Object.entries(schema.properties || {})) box.append(...field(name, prop, schema, required.has(name)));
}

function formParams() {
  const params = {};
  for (const input of $("#params").querySelectorAll("[data-kind]")) {
    const kind = input.dataset.kind;
    if (kind === "boolean") { params[input.name] = input.checked; continue; }
    if (input.value.trim() === "") continue;  // left out: the task's default applies (or the API says it is required)
    if (kind === "number") params[input.name] = Number(input.value);
    else if (kind === "json") {
      try { params[input.name] = JSON.parse(input.value); }
      catch (err) { throw new Error(`${input.name}: not valid JSON (${err.message})`); }
    } else params[input.name] = input.value;
  }
  return params;
}

async function startTask(event) {
  event.preventDefault();
  const notice = $("#start-notice");
  notice.className = "notice";
  notice.textContent = "";
  const name = $("#task-name").value;
  try {
    const record = await api("POST", `/tasks/${encodeURIComponent(name)}`, formParams());
    upsert(record);
    notice.textContent = `Started ${name} ${record.id.slice(0, 8)}`;
    notice.dataset.startedId = record.id;
  } catch (err) {
    notice.className = "notice error";
    notice.textContent = err.message;
  }
}

// ---- the list ----
const COLUMNS = 8;
const rank = (r) => [(r.history || []).length, r.progress];
function newer(a, b) {  // is record a at least as far along as b?
  const [ha, pa] = rank(a), [hb, pb] = rank(b);
  return ha !== hb ? ha > hb : pa >= pb;
}

function matchesFilters(record) {
  const state = $("#filter-state").value, name = $("#filter-name").value;
  return (!state || record.state === state) && (!name || record.name === name);
}

let renderQueued = false;
function scheduleRender() {  // a burst of events redraws the table once per frame, not once per event
  if (renderQueued) return;
  renderQueued = true;
  requestAnimationFrame(() => { renderQueued = false; render(); });
}

function upsert(record) {
  const known = records.get(record.id);
  if (known && !newer(record, known)) return;
  records.set(record.id, record);
  scheduleRender();
}

function progressCell(record) {
  const pct = Math.round(record.progress * 100);
  const fill = el("span");
  fill.style.width = `${pct}%`;  // CSSOM, which the CSP allows (a style attribute it would not)
  const bar = el("div", { class: `bar ${record.state}`, role: "progressbar", "aria-valuemin": 0, "aria-valuemax": 100,
                          "aria-valuenow": pct }, fill);
  return el("td", {}, bar, el("span", { class: "pct", text: `${pct}%` }));
}

function detailsRow(record) {
  const parts = [];
  if (record.error) parts.push(el("pre", { class: "outcome error", text: record.error }));
  else if (record.state === "succeeded") parts.push(el("pre", { class: "outcome", text: JSON.stringify(record.result, null, 2) }));
  parts.push(el("pre", { text: "params " + JSON.stringify(record.params) }));
  for (const step of record.history || []) {
    parts.push(el("pre", { text: `${step.at}  ${step.state}${step.attempt ? ` (attempt ${step.attempt}${step.worker ? ` on ${step.worker}` : ""})` : ""}` }));
  }
  return el("tr", { class: "details", "data-details-for": record.id }, el("td", { colspan: COLUMNS }, ...parts));
}

function row(record) {
  const actions = el("td");
  if (activeStates.has(record.state)) {
    const asked = stopping.has(record.id);
    const cancel = el("button", { class: "cancel", type: "button", text: asked ? "Stopping…" : "Cancel", disabled: asked });
    cancel.addEventListener("click", () => cancelTask(record.id, cancel));
    actions.append(cancel);
  }
  const toggle = el("button", { class: "link", type: "button", text: openDetails.has(record.id) ? "Hide" : "Details" });
  toggle.addEventListener("click", () => {
    if (openDetails.has(record.id)) openDetails.delete(record.id); else openDetails.add(record.id);
    render();
  });
  actions.append(toggle);
  return el("tr", { "data-id": record.id, "data-state": record.state },
    el("td", { text: record.name }),
    el("td", { class: "id", title: record.id, text: record.id.slice(0, 8) }),
    el("td", { class: "executor", title: record.worker || "" }, el("span", { class: `chip ${record.executor}`, text: record.executor })),
    el("td", {}, el("span", { class: `state ${record.state}`, text: record.state })),
    progressCell(record),
    el("td", { class: "message", title: record.message || "", text: record.message || record.error || "" }),
    el("td", { text: new Date(record.created_at).toLocaleTimeString() }),
    actions);
}

function render() {
  const shown = [...records.values()].filter(matchesFilters).sort((a, b) => b.created_at.localeCompare(a.created_at));
  const body = $("#tasks");
  if (!shown.length) { body.replaceChildren(el("tr", {}, el("td", { colspan: COLUMNS, class: "empty", text: "No tasks yet" }))); return; }
  body.replaceChildren(...shown.slice(0, 100).flatMap((r) => (openDetails.has(r.id) ? [row(r), detailsRow(r)] : [row(r)])));
}

async function cancelTask(id, button) {
  stopping.add(id);
  button.disabled = true;
  button.textContent = "Stopping…";
  try { upsert(await api("DELETE", `/tasks/${id}`)); }
  catch (err) { stopping.delete(id); render(); alert(err.message); }
}

async function loadList() {
  const query = new URLSearchParams({ limit: "50" });
  if ($("#filter-state").value) query.set("state", $("#filter-state").value);
  if ($("#filter-name").value) query.set("name", $("#filter-name").value);
  const page = await api("GET", `/tasks?${query}`);
  page.items.forEach((record) => { const known = records.get(record.id); if (!known || newer(record, known)) records.set(record.id, record); });
  render();
}

function showListError(message) {
  $("#tasks").replaceChildren(el("tr", {}, el("td", { colspan: COLUMNS, class: "empty error", text: message })));
}

// ---- live changes: one server-sent event stream for every task, resumed with Last-Event-ID ----
// Read with fetch rather than EventSource, because EventSource cannot send the X-API-Key header.
let following = null;  // the AbortController of the stream being read
async function follow() {
  if (following) following.abort();  // a new key: drop the old stream at once
  const control = following = new AbortController();
  let lastId = null;
  const setLive = (live) => { $("#live").textContent = live ? "live" : "reconnecting"; $("#live").className = `pill ${live ? "live" : "down"}`; };
  while (!control.signal.aborted) {
    try {
      const headers = { ...keyHeaders(), Accept: "text/event-stream" };
      if (lastId) headers["Last-Event-ID"] = lastId;
      const resp = await fetch("/events", { headers, signal: control.signal });
      if (!resp.ok || !resp.body) throw new Error(`events: HTTP ${resp.status}`);
      setLive(true);
      const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value;
        let end;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          const data = [];
          for (const line of block.split("\n")) {
            if (line.startsWith("id:")) lastId = line.slice(3).trim();
            else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
          }
          if (data.length) upsert(JSON.parse(data.join("\n")));
        }
      }
    } catch (err) {
      if (control.signal.aborted) return;  // replaced by a newer stream, which shows its own state
    }
    setLive(false);
    await sleep(1000);
  }
}

// ---- the overview: counts by state, workers, Celery queues, charts (polled from /overview) ----
let overviewGeneration = 0;  // a key change makes answers to the old key's requests stale
async function refreshOverview() {
  const generation = overviewGeneration;
  try {
    const data = await api("GET", "/overview");
    if (generation !== overviewGeneration) return;
    overview = data;
    skew = data.at - Date.now() / 1000;
    $("#overview-notice").hidden = true;
    renderOverview();
    document.body.dataset.overviews = String(Number(document.body.dataset.overviews || 0) + 1);
  } catch (err) {
    if (generation !== overviewGeneration) return;
    $("#overview-notice").textContent = `Overview: ${err.message}`;
    $("#overview-notice").hidden = false;
  }
}

async function pollOverview() {
  for (;;) {
    if (!document.hidden) await refreshOverview();
    await sleep(OVERVIEW_EVERY_MS);
  }
}

function renderOverview() {
  renderCounts(overview.counts);
  renderWorkers(overview.processes);
  renderQueues(overview.queues);
  renderCharts();
}

function renderCounts(counts) {
  const stack = [];
  for (const state of STATES) {
    const count = counts[state] || 0;
    const tile = $(`#counts .tile[data-state=${state}]`);
    tile.dataset.count = String(count);
    tile.querySelector(".num").textContent = count.toLocaleString();
    tile.classList.toggle("some", count > 0);
    if (count > 0) {
      const part = el("span", { class: state, title: `${count} ${state}` });
      part.style.flexGrow = String(count);
      stack.push(part);
    }
  }
  $("#count-bar").replaceChildren(...stack);
}

function chips(values, empty) {
  return values.length ? values.map((v) => el("span", { class: `chip ${v}`, text: v })) : [el("span", { class: "muted", text: empty })];
}

function renderWorkers(processes) {
  const body = $("#workers");
  const live = processes.filter((p) => !p.gone).length;
  $("#workers-summary").textContent = `${live} live${processes.length > live ? `, ${processes.length - live} gone` : ""}`;
  if (!processes.length) {
    body.replaceChildren(el("tr", {}, el("td", { colspan: 5, class: "empty", text: "No process has reported yet" })));
    return;
  }
  body.replaceChildren(...processes.map((p) => {
    const dot = el("span", { class: `dot${p.running > 0 ? " busy" : ""}` });
    const seen = el("td", { class: "seen", "data-seen": p.seen, title: clock(p.seen) }, ago(p.seen));
    if (p.gone) seen.prepend(el("span", { class: "chip gone", text: "gone" }), " ");
    return el("tr", { class: p.gone ? "gone" : "", "data-name": p.name, "data-kind": p.kind, "data-gone": String(p.gone),
                      "data-running": String(p.running) },
      el("td", {}, dot, el("span", { class: "pname", text: p.name }), el("span", { class: "kind", text: p.kind })),
      el("td", {}, ...chips(p.executors, "dispatch only")),
      el("td", {}, ...chips(p.queues, "–")),
      el("td", { class: "n", text: String(p.running) }),
      seen);
  }));
}

function renderAges() {  // "3 s ago" keeps counting between two polls
  for (const cell of document.querySelectorAll("[data-seen]")) {
    const text = [...cell.childNodes].find((n) => n.nodeType === Node.TEXT_NODE && n.textContent.includes("ago"));
    if (text) text.textContent = ago(Number(cell.dataset.seen));
  }
}

function renderQueues(queues) {
  const body = $("#queues");
  if (!queues.length) {
    body.replaceChildren(el("tr", {}, el("td", { colspan: 4, class: "empty", text: "None: every task runs in the API processes" })));
    return;
  }
  body.replaceChildren(...queues.map((q) => {
    const consumers = el("td", { class: "n" }, String(q.consumers));
    if (q.consumers === 0) consumers.prepend(el("span", { class: "chip warn", text: "no consumer" }), " ");
    return el("tr", { class: q.consumers === 0 ? "orphan" : "", "data-queue": q.name, "data-depth": q.depth === null ? "" : String(q.depth),
                      "data-consumers": String(q.consumers) },
      el("td", { class: "pname", text: q.name }),
      el("td", { text: q.tasks.join(", ") }),
      el("td", { class: "n", title: q.depth === null ? "the broker could not tell" : "", text: q.depth === null ? "?" : String(q.depth) }),
      consumers);
  }));
}

// ---- charts: plain SVG, one point per 10 s bucket of the last 10 minutes ----
const PAD = { left: 40, right: 8, top: 8, bottom: 20 };
const LINES = [["wait_p50", "wait p50"], ["wait_p95", "wait p95"], ["run_p50", "run p50"], ["run_p95", "run p95"]];

function frame(node) {
  const width = Math.max(200, Math.round(node.getBoundingClientRect().width));
  const height = Math.max(120, Math.round(node.getBoundingClientRect().height));
  node.setAttribute("viewBox", `0 0 ${width} ${height}`);
  const plotW = width - PAD.left - PAD.right, plotH = height - PAD.top - PAD.bottom;
  return { width, height, plotW, plotH, bottom: PAD.top + plotH };
}

function timeAxis(f, n) {  // a tick every 2 minutes; labels at 10 and 5 minutes ago and now
  const parts = [svg("line", { class: "axis", x1: PAD.left, x2: PAD.left + f.plotW, y1: f.bottom, y2: f.bottom })];
  for (let back = 0; back <= n; back += 12) {
    const x = PAD.left + ((n - back) / n) * f.plotW;
    parts.push(svg("line", { class: "axis", x1: x, x2: x, y1: f.bottom, y2: f.bottom + 3 }));
  }
  for (const back of [0, n / 2, n]) {
    const x = PAD.left + ((n - back) / n) * f.plotW;
    const anchor = back === 0 ? "end" : back === n ? "start" : "middle";
    parts.push(svg("text", { x, y: f.bottom + 14, "text-anchor": anchor }, back === 0 ? "now" : `${back / 6} min ago`));
  }
  return parts;
}

function bucketTitle(point) {
  const lines = [`${clock(point.at - 10)}–${clock(point.at)}`, `${point.ended} ended, ${point.failed} failed or lost`];
  if (point.ended) lines.push(`queue wait p50 ${seconds(point.wait_p50)}, p95 ${seconds(point.wait_p95)}`,
                              `run time p50 ${seconds(point.run_p50)}, p95 ${seconds(point.run_p95)}`);
  return lines.join("\n");
}

function hoverTargets(f, series) {  // a native tooltip per bucket: nothing to load, nothing inline
  const width = f.plotW / series.length;
  return series.map((point, i) => svg("rect", { class: "hit", x: PAD.left + i * width, y: PAD.top, width, height: f.plotH },
    svg("title", {}, bucketTitle(point))));
}

function niceCeiling(value) {  // 2, 4, 6, 8, 10, 20, 40 …: halves stay whole numbers
  for (let scale = 1; ; scale *= 10) {
    for (const step of [2, 4, 6, 8, 10]) if (step * scale >= value) return step * scale;
  }
}

function drawThroughput(series) {
  const node = $("#throughput");
  const f = frame(node);
  const top = niceCeiling(Math.max(1, ...series.map((p) => p.ended)));
  const y = (v) => f.bottom - (v / top) * f.plotH;
  const parts = [];
  for (const tick of [0, top / 2, top]) {
    parts.push(svg("line", { class: "grid", x1: PAD.left, x2: PAD.left + f.plotW, y1: y(tick), y2: y(tick) }),
               svg("text", { x: PAD.left - 6, y: y(tick) + 3, "text-anchor": "end" }, String(tick)));
  }
  const width = f.plotW / series.length;
  series.forEach((point, i) => {
    if (!point.ended) return;
    const x = PAD.left + i * width + 0.5, w = Math.max(1, width - 1.5);
    const ok = point.ended - point.failed;
    if (ok > 0) parts.push(svg("rect", { class: "ok", x, y: y(point.ended), width: w, height: y(point.failed) - y(point.ended), "data-count": ok }));
    if (point.failed > 0) parts.push(svg("rect", { class: "failed", x, y: y(point.failed), width: w, height: f.bottom - y(point.failed), "data-count": point.failed }));
  });
  parts.push(...timeAxis(f, series.length), ...hoverTargets(f, series));
  if (!series.some((p) => p.ended)) parts.push(nothingYet(f));
  node.replaceChildren(...parts);
  node.dataset.filled = String(series.filter((p) => p.ended > 0).length);
  const minute = series.slice(-6);
  const ended = minute.reduce((sum, p) => sum + p.ended, 0), failed = minute.reduce((sum, p) => sum + p.failed, 0);
  $("#throughput-summary").textContent = `last minute: ${ended} ended, ${failed} failed · ${(ended / 60).toFixed(2)}/s`;
}

function nothingYet(f) {
  return svg("text", { class: "nothing", x: PAD.left + f.plotW / 2, y: PAD.top + f.plotH / 2, "text-anchor": "middle" },
             "no task ended in the last 10 minutes");
}

function logScale(values) {  // whole decades around the data: 1 ms … 10 s reads better than a linear axis
  const positive = values.map((v) => Math.max(v, 1e-4));
  let low = Math.floor(Math.log10(Math.min(...positive, 0.01)));
  let high = Math.ceil(Math.log10(Math.max(...positive, 0.1)));
  if (high <= low) high = low + 1;
  return { low, high };
}

function drawLatency(series) {
  const node = $("#latency");
  const f = frame(node);
  const values = series.flatMap((p) => LINES.map(([key]) => p[key])).filter((v) => v !== null && v !== undefined);
  const { low, high } = logScale(values);
  const y = (v) => f.bottom - ((Math.log10(Math.max(v, 1e-4)) - low) / (high - low)) * f.plotH;
  const parts = [];
  for (let decade = low; decade <= high; decade++) {
    const v = 10 ** decade;
    parts.push(svg("line", { class: "grid", x1: PAD.left, x2: PAD.left + f.plotW, y1: y(v), y2: y(v) }),
               svg("text", { x: PAD.left - 6, y: y(v) + 3, "text-anchor": "end" }, decade < 0 ? `${+(v * 1000).toPrecision(1)} ms` : `${v} s`));
  }
  const width = f.plotW / series.length;
  let points = 0;
  for (const [key] of LINES) {
    const [what, pct] = key.split("_");
    let path = "", joined = false;
    series.forEach((point, i) => {
      const v = point[key];
      if (v === null || v === undefined) { joined = false; return; }
      const x = PAD.left + (i + 0.5) * width;
      path += `${joined ? "L" : "M"}${x.toFixed(1)},${y(v).toFixed(1)}`;
      joined = true;
      parts.push(svg("circle", { class: `${what} ${pct}`, cx: x, cy: y(v), r: 2.2, "data-key": key }));
      points++;
    });
    if (path) parts.push(svg("path", { class: `${what} ${pct}`, d: path }));
  }
  parts.push(...timeAxis(f, series.length), ...hoverTargets(f, series));
  if (!points) parts.push(nothingYet(f));
  node.replaceChildren(...parts);
  node.dataset.points = String(points);
  const recent = [...series].reverse().find((p) => p.ended && p.run_p95 !== null);
  $("#latency-summary").textContent = recent
    ? `latest: wait p95 ${seconds(recent.wait_p95)} · run p50 ${seconds(recent.run_p50)}, p95 ${seconds(recent.run_p95)}`
    : "no task ended with a run time yet";
}

function renderCharts() {
  if (!overview || !overview.series.length) return;
  drawThroughput(overview.series);
  drawLatency(overview.series);
}

// ---- start ----
async function init() {
  $("#api-key").value = apiKey();
  $("#api-key").addEventListener("change", () => {
    sessionStorage.setItem("bgt-api-key", $("#api-key").value.trim());
    records.clear();
    follow();
    loadList().catch((err) => showListError(err.message));
    overviewGeneration++;
    refreshOverview();
  });
  follow();  // first, so nothing that happens while the list loads is missed
  pollOverview();
  setInterval(renderAges, 1000);
  window.addEventListener("resize", renderCharts);
  const [types, openapi, health] = await Promise.all([api("GET", "/catalog"), api("GET", "/openapi.json"), api("GET", "/health")]);
  catalog = types;
  $("#executor").textContent = `executor: ${health.executor}`;
  const states = (((openapi.components || {}).schemas || {}).TaskRecord || {}).properties?.state?.enum || [];
  for (const state of states) $("#filter-state").append(el("option", { value: state, text: state }));
  for (const spec of catalog) {
    $("#task-name").append(el("option", { value: spec.name, text: spec.name }));
    $("#filter-name").append(el("option", { value: spec.name, text: spec.name }));
  }
  $("#task-name").addEventListener("change", renderForm);
  $("#start-form").addEventListener("submit", startTask);
  for (const id of ["#filter-state", "#filter-name"]) $(id).addEventListener("change", () => { render(); loadList(); });
  renderForm();
  try { await loadList(); } catch (err) { showListError(err.message); }  // e.g. 401 until a key is given
  document.body.dataset.ready = "true";
}

init().catch((err) => showListError(err.message));
