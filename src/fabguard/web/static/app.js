// FabGuard dashboard: reads /api/v1 with the token from sessionStorage and follows /api/v1/stream.
// Every value from the server is put on the page as text (serials and messages come from fixtures).
"use strict";

const TOKEN_KEY = "fabguard.token";
const $ = (id) => document.getElementById(id);
let stream = null;
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

function ago(iso) {
  if (!iso) return "never";
  const s = Math.max(0, (Date.now() - Date.parse(iso)) / 1000);
  if (s < 60) return Math.round(s) + " s ago";
  if (s < 3600) return Math.round(s / 60) + " min ago";
  if (s < 86400) return Math.round(s / 3600) + " h ago";
  return new Date(iso).toLocaleDateString();
}

const clock = (iso) => (iso ? new Date(iso).toLocaleTimeString() : "–");

async function api(path, options = {}) {
  const token = sessionStorage.getItem(TOKEN_KEY);
  const headers = Object.assign({ Authorization: "Bearer " + token }, options.headers || {});
  const response = await fetch(path, Object.assign({}, options, { headers }));
  if (response.status === 401) {
    signOut("Your token was refused.");
    throw new Error("unauthorized");
  }
  const body = await response.json();
  if (!response.ok) throw new Error((body.error && body.error.message) || response.statusText);
  return body;
}

function setLive(on, text) {
  $("live").className = "live " + (on ? "on" : "off");
  $("live-text").textContent = text;
}

function renderKpis(data) {
  $("kpi-provisioned").textContent = num(data.totals.provisioned);
  $("kpi-orders").textContent = num(data.totals.active_orders);
  $("kpi-fpy").textContent = pct(data.yield.first_pass_yield);
  $("kpi-yield").textContent = pct(data.yield.final_yield);
  $("kpi-refused").textContent = num(data.totals.refused);
  $("kpi-alerts").textContent = num(data.totals.open_alerts);
  $("kpi-alerts").parentElement.classList.toggle("hot", data.totals.open_alerts > 0);
}

function renderOrders(orders) {
  const box = $("orders");
  box.replaceChildren();
  if (!orders.length) box.append(el("div", { class: "empty" }, "No orders yet."));
  for (const o of orders) {
    const share = o.quota ? o.used / o.quota : 1;
    const fill = el("div", { class: "fill" + (share >= 1 ? " full" : share >= 0.9 ? " warn" : "") });
    fill.style.width = Math.min(100, 100 * share).toFixed(1) + "%";
    const burn = o.burn_down || {};
    const exhaustion = o.remaining === 0 ? "quota used up" : burn.projected_exhaustion ? "runs out " + clock(burn.projected_exhaustion) : "idle";
    box.append(
      el("div", { class: "order", "data-order": o.id },
        el("div", { class: "head" }, el("span", { class: "id" }, o.id), el("span", { class: "state " + o.state }, o.state)),
        el("div", { class: "meta" }, `${o.product_id} · ${o.site_id}`),
        el("div", { class: "gauge", title: `${o.used} of ${o.quota}` }, fill),
        el("div", { class: "numbers" },
          el("span", {}, el("b", { class: "used", "data-testid": "used" }, String(o.used)), ` / ${num(o.quota)} used`),
          el("span", {}, el("b", { class: "remaining" }, num(o.remaining)), " left")),
        el("div", { class: "foot" },
          el("span", {}, `${(burn.rate_per_hour || 0).toFixed(0)} units/h`),
          el("span", {}, o.refused_total ? `${o.refused_total} refused` : "no refusals"),
          el("span", {}, exhaustion))));
  }
}

async function acknowledge(alert, button) {
  button.disabled = true;
  try {
    await api(`/api/v1/alerts/${encodeURIComponent(alert.id)}/ack`, {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ note: "" }),
    });
  } catch (err) {
    button.disabled = false;
    button.title = String(err.message || err);
  }
}

function renderAlerts(alerts, open) {
  const list = $("alerts");
  list.replaceChildren();
  $("alerts-count").textContent = String(open);
  if (!alerts.length) list.append(el("li", { class: "empty" }, "No alerts. The line looks clean."));
  for (const a of alerts) {
    const scope = [a.order_id && "order " + a.order_id, a.site_id && "site " + a.site_id, a.fixture_id && "fixture " + a.fixture_id]
      .filter(Boolean).join(" · ");
    const action = a.acknowledged
      ? el("span", { class: "when" }, "acknowledged")
      : el("button", { class: "small ghost ack", type: "button" }, "Acknowledge");
    if (!a.acknowledged) action.addEventListener("click", () => acknowledge(a, action));
    list.append(
      el("li", { class: `alert ${a.severity}${a.acknowledged ? " acked" : ""}`, "data-alert": a.id, "data-kind": a.kind },
        el("div", { class: "row" }, el("span", { class: "kind" }, a.kind.replaceAll("_", " ")), el("span", { class: "sev" }, a.severity)),
        el("div", { class: "msg" }, a.message),
        el("div", { class: "row" }, el("span", { class: "when" }, `${ago(a.last_at)}${scope ? " · " + scope : ""}`), action)));
  }
}

function renderFixtures(fixtures) {
  const body = $("fixtures");
  body.replaceChildren();
  for (const f of fixtures) {
    body.append(
      el("tr", { "data-fixture": f.id },
        el("td", { class: "mono" }, f.id),
        el("td", {}, f.site_id),
        el("td", {}, el("span", { class: "state " + f.state }, f.state.replaceAll("_", " "))),
        el("td", { title: f.last_activity || "" }, ago(f.last_activity)),
        el("td", {}, f.cert_not_after ? new Date(f.cert_not_after).toLocaleDateString() : "–")));
  }
  if (!fixtures.length) body.append(el("tr", {}, el("td", { class: "empty", colSpan: 5 }, "No fixtures.")));
}

const palette = ["#4cc2ff", "#f85149", "#d29922", "#f0883e", "#a371f7", "#3fb950", "#db61a2", "#8b98a5", "#56d4dd"];

function renderCharts(data) {
  if (!window.Chart) return;
  Chart.defaults.color = "#8b98a5";
  Chart.defaults.borderColor = "#2a3440";
  const labels = data.series.map((b) => new Date(b.start).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" }));
  const made = data.series.map((b) => b.provisioned * 3600 / data.bucket_seconds);
  const rate = data.series.map((b) => (b.pass_rate === null ? null : 100 * b.pass_rate));
  $("bucket-note").textContent = `per ${Math.round(data.bucket_seconds / 60)} min, last ${Math.round(data.series.length * data.bucket_seconds / 3600)} h`;
  if (!charts.throughput) {
    charts.throughput = new Chart($("chart-throughput"), {
      data: { labels, datasets: [
        { type: "bar", label: "Provisioned (units/h)", data: made, backgroundColor: "#4cc2ff", yAxisID: "y", order: 2 },
        { type: "line", label: "Test pass rate (%)", data: rate, borderColor: "#3fb950", backgroundColor: "#3fb950", yAxisID: "y1", spanGaps: true, tension: 0.25, pointRadius: 3, order: 1 },
      ] },
      options: {
        animation: false, maintainAspectRatio: false, interaction: { mode: "index", intersect: false },
        scales: { y: { beginAtZero: true, title: { display: true, text: "units/h" } },
                  y1: { position: "right", min: 0, max: 100, grid: { drawOnChartArea: false }, title: { display: true, text: "% pass" } } },
      },
    });
  } else {
    charts.throughput.data.labels = labels;
    charts.throughput.data.datasets[0].data = made;
    charts.throughput.data.datasets[1].data = rate;
    charts.throughput.update("none");
  }
  const counts = {};
  for (const byCode of Object.values(data.refusals)) for (const [code, n] of Object.entries(byCode)) counts[code] = (counts[code] || 0) + n;
  const codes = Object.keys(counts).sort((a, b) => counts[b] - counts[a]);
  $("no-refusals").hidden = codes.length > 0;
  const values = codes.map((c) => counts[c]);
  if (!charts.refusals) {
    charts.refusals = new Chart($("chart-refusals"), {
      type: "bar",
      data: { labels: codes, datasets: [{ label: "refusals", data: values, maxBarThickness: 26, backgroundColor: codes.map((_, i) => palette[i % palette.length]) }] },
      options: { indexAxis: "y", animation: false, maintainAspectRatio: false, plugins: { legend: { display: false } }, scales: { x: { beginAtZero: true, ticks: { precision: 0 } } } },
    });
  } else {
    charts.refusals.data.labels = codes;
    charts.refusals.data.datasets[0].data = values;
    charts.refusals.data.datasets[0].backgroundColor = codes.map((_, i) => palette[i % palette.length]);
    charts.refusals.update("none");
  }
}

function render(data) {
  renderKpis(data);
  renderOrders(data.orders);
  renderAlerts(data.alerts, data.totals.open_alerts);
  renderFixtures(data.fixtures);
  renderCharts(data);
  document.body.dataset.sequence = String(data.sequence);
  setLive(true, `live · event ${num(data.sequence)} · ${clock(data.as_of)}`);
}

function follow() {
  if (stream) stream.close();
  const token = sessionStorage.getItem(TOKEN_KEY);
  stream = new EventSource("/api/v1/stream?token=" + encodeURIComponent(token));
  stream.addEventListener("overview", (e) => render(JSON.parse(e.data)));
  stream.onerror = () => setLive(false, "reconnecting…");
}

async function start() {
  $("login").hidden = true;
  $("dash").hidden = false;
  $("logout").hidden = false;
  try {
    render(await api("/api/v1/stats/overview"));
  } catch (err) {
    if (String(err.message) !== "unauthorized") setLive(false, String(err.message || err));
    return;
  }
  follow();
}

function signOut(message) {
  sessionStorage.removeItem(TOKEN_KEY);
  if (stream) stream.close();
  stream = null;
  $("dash").hidden = true;
  $("logout").hidden = true;
  $("login").hidden = false;
  $("login-error").hidden = !message;
  $("login-error").textContent = message || "";
  setLive(false, "offline");
}

document.addEventListener("DOMContentLoaded", () => {
  $("login-form").addEventListener("submit", (e) => {
    e.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, $("token").value.trim());
    $("token").value = "";
    start();
  });
  $("logout").addEventListener("click", () => signOut(""));
  if (sessionStorage.getItem(TOKEN_KEY)) start();
  else signOut("");
});
