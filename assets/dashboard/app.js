// litevault's dashboard: reads and acts through the HTTP API with the
// token the user gives (kept in this tab's session storage only). Every
// value from the API is set as text, never as markup.
"use strict";

const KEY = "litevault-token";
const $ = (sel, root = document) => root.querySelector(sel);

function token() { return sessionStorage.getItem(KEY); }

async function api(path, options = {}) {
  const headers = Object.assign({}, options.headers || {}, { Authorization: "Bearer " + token() });
  const r = await fetch(path, Object.assign({}, options, { headers }));
  if (r.status === 401) { signOut("Your token was refused: sign in again."); throw new Error("signed out"); }
  const type = r.headers.get("content-type") || "";
  const body = type.includes("json") ? await r.json() : await r.text();
  if (!r.ok) { throw new Error((body && body.error) || (r.status + " " + r.statusText)); }
  return body;
}

function when(t) { return t ? new Date(t).toLocaleString() : "never"; }

function bytes(n) {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return (i ? n.toFixed(1) : String(n)) + " " + units[i];
}

function signOut(message) {
  sessionStorage.removeItem(KEY);
  $("#overview").hidden = true;
  $("#signout").hidden = true;
  $("#login").hidden = false;
  $("#login-error").textContent = message || "";
  $("#token").value = "";
  $("#token").focus();
}

async function signIn(event) {
  event.preventDefault();
  sessionStorage.setItem(KEY, $("#token").value);
  try {
    await api("/v1/status");
  } catch (e) {
    sessionStorage.removeItem(KEY);
    $("#login-error").textContent = e.message === "signed out" ? "That token was refused." : e.message;
    return;
  }
  $("#login-error").textContent = "";
  await show();
}

// The databases the status names, with their backup units and streams.
function databasesOf(status) {
  const dbs = new Map();
  // Scheduled units give the next run; the API's (job `api`) count for
  // the last run of a database the jobs name.
  for (const job of status.jobs) {
    for (const u of job.units) {
      if (u.operation !== "backup" || !u.database) continue;
      if (job.job === "api") continue;
      const d = dbs.get(u.database) || { name: u.database, units: [], streams: [], api: [] };
      d.units.push(Object.assign({ job: job.job }, u));
      dbs.set(u.database, d);
    }
  }
  for (const job of status.jobs.filter((j) => j.job === "api")) {
    for (const u of job.units) {
      const d = dbs.get(u.database);
      if (d && u.operation === "backup") d.api.push(u);
    }
  }
  for (const s of status.replication || []) {
    for (const d of dbs.values()) {
      if (s.database.endsWith("/" + d.name) || s.database === d.name) d.streams.push(s);
    }
    const name = s.database.split("/").pop();
    if (![...dbs.values()].some((d) => d.streams.includes(s))) {
      const d = dbs.get(name) || { name, units: [], streams: [], api: [] };
      d.streams.push(s);
      dbs.set(name, d);
    }
  }
  return [...dbs.values()].sort((a, b) => a.name.localeCompare(b.name));
}

async function show() {
  $("#login").hidden = true;
  $("#overview").hidden = false;
  $("#signout").hidden = false;
  await refresh();
}

async function refresh() {
  const status = await api("/v1/status");
  const dbs = databasesOf(status);
  const root = $("#databases");
  const names = dbs.map((d) => d.name);
  for (const d of dbs) {
    let card = root.querySelector('[data-database="' + CSS.escape(d.name) + '"]');
    if (!card) {
      card = $("#database-card").content.firstElementChild.cloneNode(true);
      card.dataset.database = d.name;
      root.appendChild(card);
      wire(card, d.name, names);
    }
    fill(card, d);
  }
  $("#status-line").textContent = "Updated " + new Date(status.time).toLocaleTimeString() + ".";
  await growth();
}

function fill(card, d) {
  $(".name", card).textContent = d.name;
  const last = d.units.concat(d.api).map((u) => u.last_run).filter(Boolean).sort((a, b) => (a.start < b.start ? 1 : -1))[0];
  $(".last", card).textContent = last ? when(last.start) + " (" + last.outcome + ")" : "never";
  const next = d.units.map((u) => u.next_run).filter(Boolean).sort()[0];
  $(".next", card).textContent = d.units.length ? when(next) : "continuous";
  $(".failures", card).textContent = String(d.units.reduce((n, u) => n + u.failures_since_success, 0));
  $(".lag", card).textContent = d.streams.length
    ? d.streams.map((s) => s.repository + ": " + s.lag_seconds.toFixed(1) + " s (" + s.phase + ")").join(", ")
    : "not captured continuously";
  const error = d.units.map((u) => u.last_run).find((r) => r && r.error && r.outcome !== "success");
  $(".last-error", card).textContent = error ? "Last error: " + error.error : "";
}

function wire(card, name, names) {
  const label = (sel, text) => $(sel, card).setAttribute("aria-label", text);
  label(".backup", "Back up " + name + " now");
  label(".points", "Show the restore points of " + name);
  label(".do-restore", "Restore the chosen snapshot of " + name);
  label(".download", "Download the chosen snapshot of " + name);
  $(".backup", card).addEventListener("click", () => backup(card, name));
  $(".points", card).addEventListener("click", () => points(card, name, names));
  $(".do-restore", card).addEventListener("click", () => restore(card, name));
  $(".download", card).addEventListener("click", () => download(card, name));
}

async function follow(card, what, id) {
  const line = $(".task", card);
  for (;;) {
    const t = await api("/v1/tasks/" + encodeURIComponent(id));
    if (t.state !== "running") {
      line.textContent = what + " " + t.state + (t.error ? ": " + t.error : ".");
      line.className = "task " + (t.state === "succeeded" ? "ok" : "error");
      await refresh();
      return t;
    }
    const p = t.progress.bytes_total ? " (" + Math.floor((100 * t.progress.bytes_done) / t.progress.bytes_total) + "%)" : "";
    line.textContent = what + " running" + p + "…";
    await new Promise((r) => setTimeout(r, 400));
  }
}

async function act(card, what, start) {
  const line = $(".task", card);
  line.className = "task";
  line.textContent = what + " starting…";
  try {
    const r = await start();
    await follow(card, what, r.task_id);
  } catch (e) {
    line.className = "task error";
    line.textContent = what + " not started: " + e.message;
  }
}

function backup(card, name) {
  return act(card, "Backup", () => api("/v1/backups", { method: "POST", body: JSON.stringify({ database: name }) }));
}

async function points(card, name, names) {
  const box = $(".restore", card);
  box.hidden = false;
  const list = await api("/v1/snapshots?database=" + encodeURIComponent(name));
  const select = $(".snapshot", card);
  select.replaceChildren();
  const ranges = [];
  for (const s of list.slice().reverse()) {
    const o = document.createElement("option");
    o.value = s.id + "@" + s.repository;
    o.textContent = when(s.time) + " — " + s.short_id + " in " + s.repository;
    select.appendChild(o);
    if (s.continuous && s.continuous.to) ranges.push(when(s.continuous.from || s.time) + " to " + when(s.continuous.to));
  }
  $(".ranges", card).textContent = list.length
    ? list.length + " snapshot(s)" + (ranges.length ? "; continuous from " + ranges.join(", ") : "") + "."
    : "No snapshot yet.";
  const target = $(".target", card);
  target.replaceChildren();
  for (const n of names) {
    const o = document.createElement("option");
    o.value = n;
    o.textContent = n;
    target.appendChild(o);
  }
  target.value = name;
  select.focus();
}

function chosen(card) {
  const [id, repository] = ($(".snapshot", card).value || "@").split("@");
  return { id, repository };
}

function restore(card, name) {
  const { id, repository } = chosen(card);
  const into = $(".target", card).value;
  if (!id) return;
  const ok = window.confirm("Restore snapshot " + id.slice(0, 8) + " of " + name + " into " + into + "? The database " + into + " is replaced.");
  if (!ok) return;
  return act(card, "Restore", () => api("/v1/restores", { method: "POST", body: JSON.stringify({ snapshot: id, repository, database: into }) }));
}

async function download(card, name) {
  const { id, repository } = chosen(card);
  if (!id) return;
  const line = $(".task", card);
  try {
    line.textContent = "Download running…";
    const r = await fetch("/v1/snapshots/" + encodeURIComponent(id) + "/database?repository=" + encodeURIComponent(repository), { headers: { Authorization: "Bearer " + token() } });
    if (!r.ok) throw new Error(((await r.json()) || {}).error || r.statusText);
    const url = URL.createObjectURL(await r.blob());
    const a = document.createElement("a");
    a.href = url;
    a.download = name + "-" + id.slice(0, 8) + ".db";
    document.body.appendChild(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
    line.textContent = "Download saved.";
  } catch (e) {
    line.className = "task error";
    line.textContent = "Download failed: " + e.message;
  }
}

// Each day's added bytes (bars) and the repository's growth (a line),
// summed over repositories, for the last 30 days of history.
async function growth() {
  const { days } = await api("/v1/history?days=30");
  const byDay = new Map();
  for (const d of days) byDay.set(d.day, (byDay.get(d.day) || 0) + d.bytes_added);
  const rows = [...byDay.entries()].sort();
  const box = $("#growth");
  box.replaceChildren();
  if (!rows.length) { box.textContent = "No backup in the last 30 days."; return; }
  const W = 640, H = 200, pad = 36, n = rows.length, bw = (W - 2 * pad) / n;
  const max = Math.max(...rows.map((r) => r[1]), 1);
  let total = 0;
  const cumulative = rows.map((r) => (total += r[1]));
  const NS = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(NS, "svg");
  svg.setAttribute("viewBox", "0 0 " + W + " " + H);
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", "Bytes added per day (bars) and in all (line), " + rows[0][0] + " to " + rows[n - 1][0] + ": " + bytes(total) + " in all");
  const el = (tag, attrs, text) => {
    const e = document.createElementNS(NS, tag);
    for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
    if (text) e.textContent = text;
    svg.appendChild(e);
    return e;
  };
  rows.forEach(([day, b], i) => {
    const h = ((H - 2 * pad) * b) / max;
    el("rect", { class: "bar", x: pad + i * bw + 2, y: H - pad - h, width: Math.max(bw - 4, 1), height: h }).appendChild(document.createElementNS(NS, "title")).textContent = day + ": " + bytes(b);
  });
  const points = cumulative.map((c, i) => (pad + i * bw + bw / 2) + "," + (H - pad - ((H - 2 * pad) * c) / total)).join(" ");
  el("polyline", { class: "line", points });
  el("text", { x: pad, y: H - 8 }, rows[0][0]);
  el("text", { x: W - pad, y: H - 8, "text-anchor": "end" }, rows[n - 1][0]);
  el("text", { x: pad, y: 20 }, "largest day " + bytes(max) + ", " + bytes(total) + " in all");
  box.appendChild(svg);
}

document.addEventListener("DOMContentLoaded", () => {
  $("#login-form").addEventListener("submit", signIn);
  $("#signout").addEventListener("click", () => signOut("Signed out."));
  if (token()) show().catch(() => signOut("")); else $("#token").focus();
  setInterval(() => { if (token() && !$("#overview").hidden) refresh().catch(() => {}); }, 15000);
});
