// The dashboard page. Talks only to this API (CSP connect-src 'self'); keeps the JWT in
// sessionStorage (never in a URL or a cookie); writes every server string with textContent,
// never as HTML. Charts: uPlot (vendor/uplot, MIT).
"use strict";

const TOKEN_KEY = "agentops.token";
const DAY_MS = 86400000;
const $ = (id) => document.getElementById(id);
const state = { token: null, expMs: 0, signup: false, charts: [], windows: null, daily: [] };

// ---- session ----------------------------------------------------------------------------
function tokenExpiry(token) {
  try {
    const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    const claims = JSON.parse(atob(part));
    return typeof claims.exp === "number" ? claims.exp * 1000 : 0;
  } catch (_) {
    return 0;
  }
}

function saveToken(token) {
  state.token = token;
  state.expMs = tokenExpiry(token);
  sessionStorage.setItem(TOKEN_KEY, token);
}

function signOut(message) {
  state.token = null;
  sessionStorage.removeItem(TOKEN_KEY);
  destroyCharts();
  $("dashboard").hidden = true;
  $("signout").hidden = true;
  $("who").textContent = "";
  $("signin").hidden = false;
  setMessage($("signin-message"), message || "", Boolean(message));
}

class Expired extends Error {}

async function api(path) {
  if (!state.token || Date.now() >= state.expMs) {
    signOut("Your session expired. Sign in again.");
    throw new Expired();
  }
  const response = await fetch(path, { headers: { Authorization: "Bearer " + state.token } });
  if (response.status === 401) {
    signOut("Your session expired. Sign in again.");
    throw new Expired();
  }
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    const detail = (body && (body.message || body.error)) || response.statusText;
    throw new Error(String(detail));
  }
  return body;
}

function setMessage(el, text, isError) {
  el.textContent = text;
  el.classList.toggle("error", Boolean(isError));
}

// ---- sign in / sign up --------------------------------------------------------------------
async function post(path, payload) {
  const response = await fetch(path, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(payload),
  });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    const detail = (body && (body.message || body.error)) || response.statusText;
    throw new Error(String(detail));
  }
  return body;
}

async function onSignin(event) {
  event.preventDefault();
  const login = $("login").value.trim();
  const password = $("password").value;
  setMessage($("signin-message"), "", false);
  try {
    if (state.signup) {
      const user = { email: login, password };
      const username = $("username").value.trim();
      if (username) user.username = username;
      await post("/api/v1/register", user);
    }
    const token = await post("/api/v1/login", { login, password });
    saveToken(token.access_token || token.token);
    $("password").value = "";
    await showDashboard();
  } catch (e) {
    setMessage($("signin-message"), e.message, true);
  }
}

function toggleSignup() {
  state.signup = !state.signup;
  $("signin-title").textContent = state.signup ? "Create an account" : "Sign in";
  $("signin-submit").textContent = state.signup ? "Create and sign in" : "Sign in";
  $("signup-toggle").textContent = state.signup ? "I have an account" : "Create an account";
  $("username-row").hidden = !state.signup;
}

// ---- dashboard ----------------------------------------------------------------------------
function isoDay(ms) {
  return new Date(ms).toISOString().slice(0, 10);
}

function hashParams() {
  const params = new URLSearchParams(location.hash.slice(1));
  return { tenant: params.get("tenant"), from: params.get("from"), to: params.get("to"), agent: params.get("agent") };
}

async function showDashboard() {
  $("signin").hidden = true;
  $("dashboard").hidden = false;
  $("signout").hidden = false;
  $("content").hidden = true;
  setMessage($("status"), "Loading…", false);
  // Every request the first view needs goes out at once: the profile, the grants and, when
  // the URL names a tenant and a range, that tenant's numbers (used only if it is granted).
  const wanted = hashParams();
  const today = Date.now();
  const first = { tenant: wanted.tenant, from: wanted.from || isoDay(today - 6 * DAY_MS), to: wanted.to || isoDay(today), agent: wanted.agent || "" };
  const early = wanted.tenant ? fetchData(first) : null;
  if (early) early.promise.catch(() => {});
  const profile = api("/api/v1/profile");
  profile.then((p) => ($("who").textContent = p.email || ""), () => {});
  try {
    const { tenants } = await api("/api/v1/tenants");
    const select = $("tenant");
    select.replaceChildren();
    for (const t of tenants) select.append(new Option(t, t));
    if (tenants.length === 0) {
      $("controls").hidden = true;
      setMessage($("status"), "No tenant is granted to this account yet. Ask an administrator to grant one (auth-api grant).", false);
      $("status").dataset.state = "empty";
      return;
    }
    $("controls").hidden = false;
    if (wanted.tenant && tenants.includes(wanted.tenant)) select.value = wanted.tenant;
    $("to").value = first.to;
    $("from").value = first.from;
    if (wanted.agent) ensureAgentOption(wanted.agent, true);
    await load(undefined, early);
  } catch (e) {
    if (!(e instanceof Expired)) setMessage($("status"), "Could not load: " + e.message, true);
  }
}

function ensureAgentOption(agent, select) {
  const el = $("agent");
  if (![...el.options].some((o) => o.value === agent)) el.append(new Option(agent, agent));
  if (select) el.value = agent;
}

// The daily rows and the KPI windows of one tenant, range and agent (both requests at once).
function fetchData({ tenant, from, to, agent }) {
  const t = encodeURIComponent(tenant);
  const dayTo = isoDay(Date.parse(to + "T00:00:00Z") + DAY_MS);
  const windowQuery = new URLSearchParams({ from: from + "T00:00:00Z", to: dayTo + "T00:00:00Z" });
  if (agent) windowQuery.set("agent", agent);
  // Columns: each field once rather than once per window (a fifth of the bytes to parse).
  windowQuery.set("layout", "columns");
  const dailyQuery = new URLSearchParams({ from, to, agent: agent || "*" });
  const promise = Promise.all([
    api(`/api/v1/tenants/${t}/metrics/daily?${dailyQuery}`),
    api(`/api/v1/tenants/${t}/windows?${windowQuery}`),
  ]);
  return { key: JSON.stringify([tenant, from, to, agent || ""]), promise };
}

async function load(event, early) {
  if (event) event.preventDefault();
  const wanted = { tenant: $("tenant").value, from: $("from").value, to: $("to").value, agent: $("agent").value };
  $("status").dataset.state = "loading";
  setMessage($("status"), "Loading…", false);
  const key = JSON.stringify([wanted.tenant, wanted.from, wanted.to, wanted.agent]);
  try {
    const [daily, windows] = await (early && early.key === key ? early : fetchData(wanted)).promise;
    state.daily = daily.rows;
    state.windows = windows.columns;
    for (const agent of state.windows.agents) ensureAgentOption(agent, false);
    render();
  } catch (e) {
    if (e instanceof Expired) return;
    $("content").hidden = true;
    $("status").dataset.state = "error";
    setMessage($("status"), "Could not load: " + e.message, true);
  }
}

// ---- rendering ----------------------------------------------------------------------------
const KPIS = [
  { title: "Task success rate", daily: (r) => r.success_rate, lines: [["success_rate", "TSR"]] },
  { title: "Human intervention rate", daily: (r) => r.intervention_rate, lines: [["intervention_rate", "HIR"]] },
  { title: "Latency P95 (P50, P99), ms", daily: (r) => r.latency_p95_ms, lines: [["latency_p95_ms", "P95"], ["latency_p50_ms", "P50"], ["latency_p99_ms", "P99"]] },
  { title: "Cost per task, USD", daily: (r) => usd(r.cost_per_task_micros), lines: [["cost_per_task_micros", "cost"]], scale: usd },
  { title: "Volume, tasks", daily: (r) => r.tasks_total, lines: [["tasks_total", "tasks"]] },
];
const COLORS = ["#2459b3", "#d9822b", "#2e8540", "#8e44ad", "#c0392b", "#16a085", "#7f8c8d", "#b7950b", "#34495e", "#e84393"];

function usd(micros) {
  return micros == null ? null : micros / 1e6;
}

function destroyCharts() {
  for (const c of state.charts) c.destroy();
  state.charts = [];
  $("charts").replaceChildren();
}

function render() {
  destroyCharts();
  const windows = state.windows;
  const count = windows.window_start.length;
  const daily = state.daily;
  if (count === 0 && daily.length === 0) {
    $("content").hidden = true;
    $("status").dataset.state = "empty";
    setMessage($("status"), "No data for this tenant, agent and range.", false);
    return;
  }
  $("content").hidden = false;
  $("status").dataset.state = "ready";
  setMessage($("status"), `${count} windows, ${daily.length} daily rows.`, false);
  const grid = windowGrid(windows);
  const flagged = windows.flagged;
  const width = Math.max(480, Math.min(900, ($("charts").clientWidth || 960) / 2 - 24));
  for (const kpi of KPIS) {
    chartDaily(kpi, daily, width);
    chartWindows(kpi, grid, flagged, width);
  }
  renderAlarms(flagged);
  renderDailyTable(daily);
  // The window table (thousands of rows) is built when it is first opened.
  $("windows-table").tBodies[0].replaceChildren();
  state.windowTableFor = null;
  if ($("table-view").open) renderWindowTable(windows);
  performance.mark("dashboard-rendered");
  document.body.dataset.rendered = String(Date.now());
  // The first task after the next frame: the charts with the data are on screen.
  requestAnimationFrame(() => {
    const channel = new MessageChannel();
    channel.port1.onmessage = () => {
      performance.mark("dashboard-painted");
      document.body.dataset.painted = String(Date.now());
    };
    channel.port2.postMessage(null);
  });
}

// The windows (columns) on one time axis: the sorted window starts and, per agent (sorted),
// the slot on that axis and the index of each of its windows.
function windowGrid(windows) {
  const starts = windows.window_start;
  const xs = [...new Set(starts)].sort((a, b) => a - b);
  const slot = new Map(xs.map((v, i) => [v, i]));
  const rows = windows.agents.map(() => []);
  for (let i = 0; i < starts.length; i++) rows[windows.agent[i]].push([slot.get(starts[i]), i]);
  return { xs, agents: windows.agents, rows, columns: windows };
}

function chartBox(title, kind) {
  const box = document.createElement("div");
  box.className = "chart";
  box.dataset.chart = kind;
  const h = document.createElement("h3");
  h.textContent = title;
  box.append(h);
  $("charts").append(box);
  return box;
}

function chartDaily(kpi, daily, width) {
  const box = chartBox(kpi.title + " — by day", "daily");
  const days = [...new Set(daily.map((r) => r.day))].sort();
  const x = days.map((d) => Date.parse(d + "T00:00:00Z") / 1000);
  const byAgent = new Map();
  for (const r of daily) {
    if (!byAgent.has(r.agent_id)) byAgent.set(r.agent_id, new Map());
    byAgent.get(r.agent_id).set(r.day, kpi.daily(r));
  }
  const series = [{}];
  const data = [x];
  let i = 0;
  for (const [agent, values] of byAgent) {
    series.push({ label: agent === "*" ? "all agents" : agent, stroke: COLORS[i++ % COLORS.length], width: 2, points: { show: true } });
    data.push(days.map((d) => (values.has(d) ? values.get(d) : null)));
  }
  state.charts.push(new uPlot({ width, height: 180, series, scales: { x: { time: true } } }, data, box));
}

function chartWindows(kpi, grid, flagged, width) {
  const box = chartBox(kpi.title + " — KPI windows", "windows");
  const { xs, agents, rows, columns } = grid;
  const series = [{}];
  const data = [xs.map((v) => v / 1000)];
  let color = 0;
  agents.forEach((agent, a) => {
    for (const [field, label] of kpi.lines) {
      const column = new Array(xs.length).fill(null);
      const values = columns[field];
      for (const [at, i] of rows[a]) column[at] = kpi.scale ? kpi.scale(values[i]) : values[i];
      series.push({ label: agents.length > 1 ? `${agent} ${label}` : label, stroke: COLORS[color++ % COLORS.length], width: 1 });
      data.push(column);
    }
  });
  const periods = flagged.map((w) => [w.window_start / 1000, w.window_end / 1000, w]);
  const shade = (u) => {
    const { ctx, bbox } = u;
    ctx.save();
    ctx.fillStyle = "rgba(214, 48, 49, 0.18)";
    let drawn = 0;
    for (const [start, end] of periods) {
      const left = u.valToPos(start, "x", true);
      const right = u.valToPos(end, "x", true);
      if (right < bbox.left || left > bbox.left + bbox.width) continue;
      ctx.fillRect(left, bbox.top, Math.max(right - left, 2), bbox.height);
      drawn++;
    }
    ctx.restore();
    box.dataset.shaded = String(drawn);
  };
  const opts = { width, height: 200, series, scales: { x: { time: true } }, legend: { show: agents.length <= 3 }, hooks: { drawClear: [shade] } };
  const chart = new uPlot(opts, data, box);
  chart.over.addEventListener("click", () => {
    const i = chart.cursor.idx;
    if (i == null) return;
    const start = xs[i];
    const hit = flagged.find((w) => w.window_start <= start && start < w.window_end) || flagged.find((w) => w.window_start === start);
    if (hit) explain(hit);
  });
  state.charts.push(chart);
}

function fmtTime(ms) {
  return new Date(ms).toISOString().slice(0, 16).replace("T", " ");
}

function fmt(v, digits) {
  return v == null ? "–" : Number(v).toFixed(digits);
}

function explanationText(w) {
  const lines = (w.verdict.explanation || []).map((k) => `${k.kpi} ${fmt(k.observed, 3)}, expected ${fmt(k.expected, 3)} (${fmt(k.low, 3)}–${fmt(k.high, 3)})`);
  return lines.join("\n") || "no KPI explanation";
}

function explain(w) {
  $("explain").textContent = `${w.agent_id}, ${fmtTime(w.window_start)} UTC, score ${fmt(w.verdict.ensemble_score, 2)} (threshold ${fmt(w.verdict.threshold, 2)})\n${explanationText(w)}`;
}

function cell(row, text, value) {
  const td = document.createElement("td");
  td.textContent = text;
  if (value !== undefined) td.dataset.value = value == null ? "" : String(value);
  row.append(td);
}

function renderAlarms(flagged) {
  const body = $("alarms-table").tBodies[0];
  body.replaceChildren();
  $("alarms-empty").hidden = flagged.length > 0;
  for (const w of flagged) {
    const tr = document.createElement("tr");
    cell(tr, fmtTime(w.window_start));
    cell(tr, w.agent_id);
    cell(tr, fmt(w.verdict.ensemble_score, 2), w.verdict.ensemble_score);
    cell(tr, explanationText(w).split("\n")[0]);
    tr.addEventListener("click", () => explain(w));
    body.append(tr);
  }
}

function metricCells(tr, r) {
  cell(tr, String(r.tasks_total), r.tasks_total);
  cell(tr, fmt(r.success_rate, 3), r.success_rate);
  cell(tr, fmt(r.intervention_rate, 3), r.intervention_rate);
  cell(tr, fmt(r.latency_p50_ms, 0), r.latency_p50_ms);
  cell(tr, fmt(r.latency_p95_ms, 0), r.latency_p95_ms);
  cell(tr, fmt(r.latency_p99_ms, 0), r.latency_p99_ms);
  cell(tr, fmt(usd(r.cost_per_task_micros), 4), r.cost_per_task_micros);
}

function renderDailyTable(daily) {
  const body = $("daily-table").tBodies[0];
  body.replaceChildren();
  for (const r of daily) {
    const tr = document.createElement("tr");
    cell(tr, r.day);
    cell(tr, r.agent_id);
    metricCells(tr, r);
    body.append(tr);
  }
}

function renderWindowTable(windows) {
  if (state.windowTableFor === windows) return;
  state.windowTableFor = windows;
  const body = $("windows-table").tBodies[0];
  const rows = document.createDocumentFragment();
  const c = windows;
  for (let i = 0; i < c.window_start.length; i++) {
    const tr = document.createElement("tr");
    tr.dataset.start = String(c.window_start[i]);
    cell(tr, fmtTime(c.window_start[i]));
    cell(tr, c.agents[c.agent[i]]);
    metricCells(tr, {
      tasks_total: c.tasks_total[i],
      success_rate: c.success_rate[i],
      intervention_rate: c.intervention_rate[i],
      latency_p50_ms: c.latency_p50_ms[i],
      latency_p95_ms: c.latency_p95_ms[i],
      latency_p99_ms: c.latency_p99_ms[i],
      cost_per_task_micros: c.cost_per_task_micros[i],
    });
    const score = c.ensemble_score[i];
    cell(tr, score == null ? "not scored" : fmt(score, 2), score);
    cell(tr, c.is_anomaly[i] ? "yes" : "no");
    if (c.is_anomaly[i]) tr.className = "flagged";
    rows.append(tr);
  }
  body.replaceChildren(rows);
}

// ---- start --------------------------------------------------------------------------------
document.addEventListener("DOMContentLoaded", () => {
  $("signin-form").addEventListener("submit", onSignin);
  $("signup-toggle").addEventListener("click", toggleSignup);
  $("signout").addEventListener("click", () => signOut(""));
  $("controls").addEventListener("submit", load);
  $("table-view").addEventListener("toggle", () => {
    if ($("table-view").open && state.windows) renderWindowTable(state.windows);
  });
  $("tenant").addEventListener("change", () => {
    $("agent").replaceChildren(new Option("All agents (roll-up)", ""));
    load();
  });
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (token && tokenExpiry(token) > Date.now()) {
    saveToken(token);
    showDashboard();
  } else {
    signOut(token ? "Your session expired. Sign in again." : "");
  }
});
