// FabGuard dashboard, shared helpers: building elements, formatting, the API (through the browser
// session's HttpOnly cookie: no script holds a token), the time range in the address, chart colours.
// Every value from the server is put on the page as text (serials and messages come from fixtures).
"use strict";

const $ = (id) => document.getElementById(id);
// Who is signed in (GET /api/v1/session): role and, for an operator, its one site.
let who = null;
let charts = {};

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") node.className = v;
    else if (k.startsWith("data-")) node.setAttribute(k, v);
    else node[k] = v;
  }
  for (const c of children) if (c !== null && c !== undefined) node.append(c);
  return node;
}

const pct = (x) => (x === null || x === undefined ? "–" : (100 * x).toFixed(1) + "%");
const num = (x) => (x === null || x === undefined ? "–" : Number(x).toLocaleString());
const sig = (x) => (x === null || x === undefined ? "–" : Number(x).toLocaleString(undefined, { maximumSignificantDigits: 4 }));
const clock = (iso) => (iso ? new Date(iso).toLocaleTimeString() : "–");
const day = (iso) => new Date(iso).toLocaleDateString([], { dateStyle: "medium" });
const when = (iso) => new Date(iso).toLocaleString([], { dateStyle: "medium", timeStyle: "short" });
const hhmm = (iso) => new Date(iso).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
// Capability: below 1.00 the process makes out-of-spec parts, below 1.33 it has little margin.
const grade = (x) => (x === null || x === undefined ? "none" : x < 1 ? "bad" : x < 1.33 ? "marginal" : "good");
const palette = ["#4cc2ff", "#f85149", "#d29922", "#f0883e", "#a371f7", "#3fb950", "#db61a2", "#8b98a5", "#56d4dd"];

function ago(iso) {
  if (!iso) return "never";
  const s = Math.max(0, (Date.now() - Date.parse(iso)) / 1000);
  if (s < 60) return Math.round(s) + " s ago";
  if (s < 3600) return Math.round(s / 60) + " min ago";
  if (s < 86400) return Math.round(s / 3600) + " h ago";
  return new Date(iso).toLocaleDateString();
}

function limits(c) {
  if (c.lower !== null && c.upper !== null) return `${sig(c.lower)} – ${sig(c.upper)}`;
  if (c.lower !== null) return `≥ ${sig(c.lower)}`;
  if (c.upper !== null) return `≤ ${sig(c.upper)}`;
  return "–";
}

// A request to the API with the session cookie; a 401 signs the page out (the session ended).
async function api(path, options = {}) {
  const response = await fetch(path, Object.assign({ credentials: "same-origin" }, options));
  const body = await response.json().catch(() => ({}));
  if (response.status === 401) {
    signOut("Your session ended: " + ((body.error && body.error.message) || "sign in again."));
    throw new Error("unauthorized");
  }
  if (!response.ok) {
    const err = new Error((body.error && body.error.message) || `${response.status} ${response.statusText}`);
    err.status = response.status;
    throw err;
  }
  return body;
}

function chartTheme() {
  Chart.defaults.color = "#aab6c2";
  Chart.defaults.borderColor = "#2a3440";
  Chart.defaults.font.size = 12;
}

function emptyRow(body, columns, text) {
  body.append(el("tr", {}, el("td", { class: "empty", colSpan: columns }, text)));
}

// ------------------------------------------------------------------------ the time range, in the URL

// ?range=hour|shift|day|week, ?range=order&order=<id>, or ?range=custom&since=…&until=… (RFC 3339).
const RANGES = { hour: 3600e3, shift: 8 * 3600e3, day: 86400e3, week: 7 * 86400e3 };
const RANGE_LABELS = { hour: "Last hour", shift: "Shift (8 h)", day: "Day", week: "Week", order: "Order's lifetime", custom: "Custom" };

function currentRange() {
  const q = new URLSearchParams(location.search);
  const name = q.get("range") || "shift";
  if (name === "custom" && q.get("since") && q.get("until")) return { name, since: q.get("since"), until: q.get("until") };
  if (name === "order" && q.get("order")) return { name, order: q.get("order") };
  return { name: RANGES[name] ? name : "shift" };
}

function setRange(range) {
  const q = new URLSearchParams();
  if (range.name !== "shift") q.set("range", range.name);
  if (range.name === "custom") { q.set("since", range.since); q.set("until", range.until); }
  if (range.name === "order") q.set("order", range.order);
  const search = q.toString();
  history.replaceState(null, "", location.pathname + (search ? "?" + search : "") + location.hash);
}

// The window [since, until) the range stands for now (null: the server's default, the shift).
function rangeWindow(orders) {
  const r = currentRange();
  if (r.name === "shift") return null;
  if (r.name === "custom") return { since: new Date(r.since).toISOString(), until: new Date(r.until).toISOString() };
  if (r.name === "order") {
    const o = (orders || []).find((x) => x.id === r.order);
    if (!o) return null;
    const end = o.state === "active" ? Date.now() : Math.min(Date.now(), Date.parse(o.valid_until || new Date().toISOString()));
    return { since: o.created_at, until: new Date(Math.max(end, Date.parse(o.created_at) + 60e3)).toISOString() };
  }
  const until = Date.now();
  return { since: new Date(until - RANGES[r.name]).toISOString(), until: new Date(until).toISOString() };
}

function windowQuery(w, extra) {
  const q = new URLSearchParams(extra || {});
  if (w) { q.set("since", w.since); q.set("until", w.until); }
  const s = q.toString();
  return s ? "?" + s : "";
}

function bucketLabel(seconds) {
  if (seconds < 3600) return `${Math.round(seconds / 60)} min`;
  if (seconds < 86400) return `${Math.round(seconds / 3600)} h`;
  return `${Math.round(seconds / 86400)} d`;
}

// Labels for a series' buckets: times within a day, dates (and hours) beyond.
function bucketTicks(series, bucketSeconds) {
  const span = series.length * bucketSeconds;
  return series.map((b) => (span <= 86400 ? hhmm(b.start)
    : bucketSeconds >= 86400 ? new Date(b.start).toLocaleDateString([], { month: "short", day: "numeric" })
      : new Date(b.start).toLocaleString([], { weekday: "short", hour: "2-digit" })));
}
