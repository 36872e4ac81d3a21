// FabGuard dashboard: reads /api/v1 with the token from sessionStorage and follows /api/v1/stream.
// Every value from the server is put on the page as text (serials and messages come from fixtures).
// Two views in one page: the overview, and one order at #order=<id> (so back, reload and links work).
"use strict";

const TOKEN_KEY = "fabguard.token";
// The stream can send an event every half second while a line runs; the order view re-reads its
// statistics once things are quiet for this long, and at least this often while they never are.
const ORDER_QUIET_MS = 700;
const ORDER_MAX_WAIT_MS = 2500;
// Rates and projections move with time alone: re-read an order this old even without a new event.
const ORDER_STALE_MS = 60_000;
const $ = (id) => document.getElementById(id);
let stream = null;
let charts = {};
let lastOverview = null;
// The open order (null on the overview): its id, the newest event sequence asked for, refresh bookkeeping.
let shown = null;

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
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    const err = new Error((body.error && body.error.message) || `${response.status} ${response.statusText}`);
    err.status = response.status;
    throw err;
  }
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
      el("a", { class: "order", href: orderHref(o.id), "data-order": o.id, title: `Open order ${o.id}` },
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

// Field checks (README "Field checks") and the field_clone alerts they raised.
function renderField(checks, alerts) {
  const body = $("field-checks");
  body.replaceChildren();
  for (const c of checks || []) {
    const verdict = c.genuine ? "genuine" : "not genuine: " + String(c.reason || "").replaceAll("_", " ");
    body.append(
      el("tr", { "data-field-check": String(c.seq), class: c.genuine ? "" : "bad" },
        el("td", { title: c.at }, ago(c.at)),
        el("td", { class: "mono" }, c.serial || "–"),
        el("td", {}, el("span", { class: "state " + (c.genuine ? "active" : "revoked") }, verdict)),
        el("td", {}, c.clone ? c.clone.replaceAll("_", " ") : "–"),
        el("td", {}, c.place)));
  }
  if (!(checks || []).length) body.append(el("tr", {}, el("td", { class: "empty", colSpan: 5 }, "No field checks yet.")));
  const list = $("field-alerts");
  list.replaceChildren();
  const field = alerts.filter((a) => a.kind === "field_clone");
  $("field-alerts-count").textContent = String(field.filter((a) => !a.acknowledged).length);
  if (!field.length) list.append(el("li", { class: "empty" }, "No clones seen in the field."));
  for (const a of field) {
    list.append(
      el("li", { class: `alert ${a.severity}${a.acknowledged ? " acked" : ""}`, "data-field-alert": a.id },
        el("div", { class: "msg" }, a.message),
        el("div", { class: "row" }, el("span", { class: "when" }, `${ago(a.last_at)} · ${a.count} check${a.count === 1 ? "" : "s"}`))));
  }
}

const palette = ["#4cc2ff", "#f85149", "#d29922", "#f0883e", "#a371f7", "#3fb950", "#db61a2", "#8b98a5", "#56d4dd"];
const hhmm = (iso) => new Date(iso).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });

function chartTheme() {
  Chart.defaults.color = "#8b98a5";
  Chart.defaults.borderColor = "#2a3440";
}

// One horizontal bar per refusal code, most frequent first; `none` is the note shown when there are none.
function renderRefusalChart(key, canvas, counts, none) {
  const codes = Object.keys(counts).sort((a, b) => counts[b] - counts[a]);
  none.hidden = codes.length > 0;
  canvas.parentElement.hidden = !codes.length;
  const values = codes.map((c) => counts[c]);
  const colours = codes.map((_, i) => palette[i % palette.length]);
  if (!charts[key]) {
    charts[key] = new Chart(canvas, {
      type: "bar",
      data: { labels: codes, datasets: [{ label: "refusals", data: values, maxBarThickness: 26, backgroundColor: colours }] },
      options: { indexAxis: "y", animation: false, maintainAspectRatio: false, plugins: { legend: { display: false } }, scales: { x: { beginAtZero: true, ticks: { precision: 0 } } } },
    });
  } else {
    charts[key].data.labels = codes;
    charts[key].data.datasets[0].data = values;
    charts[key].data.datasets[0].backgroundColor = colours;
    charts[key].update("none");
  }
}

function renderCharts(data) {
  if (!window.Chart) return;
  chartTheme();
  const labels = data.series.map((b) => hhmm(b.start));
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
  renderRefusalChart("refusals", $("chart-refusals"), counts, $("no-refusals"));
}

function render(data) {
  renderKpis(data);
  renderOrders(data.orders);
  renderAlerts(data.alerts, data.totals.open_alerts);
  renderFixtures(data.fixtures);
  renderField(data.field_checks, data.alerts);
  renderCharts(data);
}

// ------------------------------------------------------------------------------------- one order

const orderHref = (id) => "#order=" + encodeURIComponent(id);
// Order ids are slugs. The check is looser than that, but an address such as "#order=.." (which
// would change the API path it is read from) never makes a request.
const ORDER_ID = /^[A-Za-z0-9][A-Za-z0-9_-]{0,99}$/;

// Capability: below 1.00 the process makes out-of-spec parts, below 1.33 it has little margin.
const grade = (x) => (x === null || x === undefined ? "none" : x < 1 ? "bad" : x < 1.33 ? "marginal" : "good");
const sig = (x) => (x === null || x === undefined ? "–" : Number(x).toLocaleString(undefined, { maximumSignificantDigits: 4 }));
const day = (iso) => new Date(iso).toLocaleDateString([], { dateStyle: "medium" });
const when = (iso) => new Date(iso).toLocaleString([], { dateStyle: "medium", timeStyle: "short" });

function limits(c) {
  if (c.lower !== null && c.upper !== null) return `${sig(c.lower)} – ${sig(c.upper)}`;
  if (c.lower !== null) return `≥ ${sig(c.lower)}`;
  if (c.upper !== null) return `≤ ${sig(c.upper)}`;
  return "–";
}

function untilText(iso) {
  const minutes = Math.round((Date.parse(iso) - Date.now()) / 60000);
  if (minutes < 1) return "now";
  if (minutes < 90) return `in ${minutes} min`;
  if (minutes < 36 * 60) return `in ${Math.round(minutes / 60)} h`;
  return `in ${Math.round(minutes / 1440)} days`;
}

function exhaustionText(burn) {
  if (burn.remaining === 0) return burn.projected_exhaustion ? `used up at ${clock(burn.projected_exhaustion)}` : "used up";
  if (!burn.projected_exhaustion) return "idle: no units in the last hour";
  const at = Date.parse(burn.projected_exhaustion) - Date.now() < 20 * 3600e3 ? clock(burn.projected_exhaustion) : when(burn.projected_exhaustion);
  return `${at} (${untilText(burn.projected_exhaustion)})`;
}

function indexCell(name, x) {
  return el("td", { class: "num " + name }, el("span", { class: "index " + grade(x) }, x === null || x === undefined ? "–" : x.toFixed(2)));
}

// Where the measurement sits in its spec: the band is mean ± 3σ (overall), the tick the mean.
function spreadCell(c) {
  if (c.lower === null || c.upper === null || c.mean === null || !(c.upper > c.lower)) return el("td", {});
  const at = (v) => Math.min(100, Math.max(0, (100 * (v - c.lower)) / (c.upper - c.lower)));
  const band = el("div", { class: "band " + grade(c.ppk) });
  const lo = at(c.mean - 3 * (c.sigma || 0));
  band.style.left = lo.toFixed(2) + "%";
  band.style.width = (at(c.mean + 3 * (c.sigma || 0)) - lo).toFixed(2) + "%";
  const mean = el("div", { class: "mean" });
  mean.style.left = at(c.mean).toFixed(2) + "%";
  return el("td", {}, el("div", { class: "spread", title: `mean ${sig(c.mean)} ± 3σ overall, spec ${limits(c)}` }, band, mean));
}

function renderCapability(rows, site) {
  const body = $("order-capability");
  body.replaceChildren();
  let bad = 0;
  let marginal = 0;
  for (const c of rows) {
    const worst = [c.cpk, c.ppk].filter((x) => x !== null && x !== undefined);
    const verdict = worst.length ? grade(Math.min(...worst)) : "none";
    if (verdict === "bad") bad += 1;
    if (verdict === "marginal") marginal += 1;
    body.append(
      el("tr", { "data-measurement": `${c.phase}/${c.name}` },
        el("td", { class: "muted" }, c.phase.replaceAll("_", " ")),
        el("td", { class: "mono" }, c.name),
        el("td", { class: "num" }, num(c.n)),
        el("td", { class: "num" }, sig(c.mean)),
        el("td", { class: "num" }, sig(c.sigma_within)),
        el("td", { class: "num" }, sig(c.sigma)),
        el("td", { class: "num" }, limits(c)),
        spreadCell(c),
        indexCell("cpk", c.cpk),
        indexCell("ppk", c.ppk)));
  }
  if (!rows.length) body.append(el("tr", {}, el("td", { class: "empty", colSpan: 10 }, `No measurements yet from tests at site ${site}.`)));
  const summary = $("order-capability-summary");
  summary.hidden = !rows.length;
  summary.className = "pill " + (bad ? "bad" : marginal ? "marginal" : "good");
  summary.textContent = bad ? `${bad} not capable` : marginal ? `${marginal} marginal` : "all capable";
}

// The series starts when the order opened (at most the analytics window ago); empty buckets before it
// keep the time axis as long as the overview's, so a young order does not fill the chart with two bars.
function renderOrderSeries(data) {
  const site = data.order.site_id;
  const width = lastOverview ? lastOverview.bucket_seconds * 1000 : 0;
  const series = data.series.slice();
  const span = lastOverview && width && series.length ? lastOverview.series.length : 0;
  while (series.length < span) {
    const start = new Date(Date.parse(series[0].start) - width).toISOString();
    series.unshift({ start, provisioned: null, tests_passed: null, tests_failed: null });
  }
  $("order-bucket-note").textContent = width
    ? `per ${Math.round(width / 60000)} min, last ${Math.round((series.length * width) / 3600e3)} h · units on this order, tests at site ${site}`
    : `units on this order, tests at site ${site}`;
  const labels = series.map((b) => hhmm(b.start));
  const sets = [series.map((b) => b.provisioned), series.map((b) => b.tests_passed), series.map((b) => b.tests_failed)];
  if (!charts.order) {
    const bar = { type: "bar", maxBarThickness: 28, borderRadius: 2 };
    charts.order = new Chart($("chart-order-series"), {
      data: { labels, datasets: [
        { ...bar, label: "Provisioned", data: sets[0], backgroundColor: "#4cc2ff", stack: "units" },
        { ...bar, label: "Tests passed", data: sets[1], backgroundColor: "#3fb950", stack: "tests" },
        { ...bar, label: "Tests failed", data: sets[2], backgroundColor: "#f85149", stack: "tests" },
      ] },
      options: {
        animation: false, maintainAspectRatio: false, interaction: { mode: "index", intersect: false },
        scales: { x: { stacked: true }, y: { stacked: true, beginAtZero: true, ticks: { precision: 0 }, title: { display: true, text: "per bucket" } } },
      },
    });
  } else {
    charts.order.data.labels = labels;
    sets.forEach((values, i) => { charts.order.data.datasets[i].data = values; });
    charts.order.update("none");
  }
}

function renderOrder(data) {
  const o = data.order;
  const burn = data.burn_down;
  const y = data.yield;
  $("order-page").classList.remove("loading");
  $("order-error").hidden = true;
  $("order-id").textContent = o.id;
  $("order-state").textContent = o.state;
  $("order-state").className = "state " + o.state;
  $("order-meta").textContent = `${o.product_id} · site ${o.site_id} · issuing CA ${o.issuing_ca} · created ${when(o.created_at)} by ${o.created_by}`;
  $("order-updated").textContent = `event ${num(data.sequence)} · as of ${clock(data.as_of)}`;

  $("order-used").textContent = String(burn.used);
  $("order-quota").textContent = num(burn.quota);
  const share = burn.quota ? burn.used / burn.quota : 1;
  $("order-fill").className = "fill" + (share >= 1 ? " full" : share >= 0.9 ? " warn" : "");
  $("order-fill").style.width = Math.min(100, 100 * share).toFixed(1) + "%";
  $("order-remaining").textContent = num(burn.remaining);
  $("order-rate").textContent = `${(burn.rate_per_hour || 0).toFixed(1)} units/h`;
  $("order-exhaustion").textContent = exhaustionText(burn);
  $("order-valid").textContent = `${day(o.valid_from)} → ${o.valid_until ? day(o.valid_until) : "no end"}`;
  const pending = o.pending_quota_changes || [];
  $("order-pending").hidden = !pending.length;
  $("order-pending").textContent = pending.map((c) => `Quota change to ${num(c.new_quota)} awaits approval (asked by ${c.requested_by}).`).join(" ");

  $("order-yield-note").textContent = "units provisioned on this order";
  $("order-fpy").textContent = pct(y.first_pass_yield);
  $("order-final").textContent = pct(y.final_yield);
  $("order-retest").textContent = pct(y.retest_rate);
  $("order-yield-counts").textContent = `${num(y.units_tested)} units tested · ${num(y.tests)} tests · ${num(y.retested)} retested`;

  const refused = data.refused || {};
  $("order-refused-total").textContent = num(Object.values(refused).reduce((a, b) => a + b, 0));
  $("order-capability-note").textContent =
    `From every test measured at site ${o.site_id} since the order opened (whole hours). Cpk uses σ within (moving range), Ppk σ overall; ` +
    "each needs two values and a spec limit.";
  renderCapability(data.capability, o.site_id);
  if (window.Chart) {
    chartTheme();
    renderRefusalChart("orderRefusals", $("chart-order-refusals"), refused, $("order-no-refusals"));
    renderOrderSeries(data);
  }
}

function showOrderMissing(message) {
  shown.gone = true;
  $("order-page").hidden = true;
  $("order-missing").hidden = false;
  $("order-missing-text").textContent = message;
  document.title = "FabGuard · order not found";
}

function showOrderError(err) {
  const retry = el("button", { class: "small ghost", type: "button" }, "Retry now");
  retry.addEventListener("click", () => loadOrder());
  const stale = shown.data ? ` Showing figures as of ${clock(shown.data.as_of)}; retrying with the next update.` : " Retrying with the next update.";
  $("order-page").classList.remove("loading");
  $("order-error").replaceChildren(el("span", {}, `Could not read order statistics: ${String(err.message || err).replace(/\.$/, "")}.${stale}`), retry);
  $("order-error").hidden = false;
}

async function loadOrder() {
  const mine = shown;
  if (!mine || mine.gone) return;
  if (mine.loading) {
    mine.again = true;
    return;
  }
  mine.loading = true;
  mine.triedAt = Date.now();
  try {
    const data = await api(`/api/v1/stats/orders/${encodeURIComponent(mine.id)}`);
    if (shown !== mine) return;
    mine.data = data;
    mine.asked = Math.max(mine.asked, data.sequence);
    renderOrder(data);
  } catch (err) {
    if (shown !== mine || String(err.message) === "unauthorized") return;
    if (err.status === 404) showOrderMissing(err.message);
    else showOrderError(err);
  } finally {
    mine.loading = false;
    if (mine.again && shown === mine) {
      mine.again = false;
      refreshOrderSoon();
    }
  }
}

// Coalesce a burst of events: fetch once the stream is quiet, or after ORDER_MAX_WAIT_MS at the latest.
function refreshOrderSoon() {
  const mine = shown;
  const now = Date.now();
  mine.firstAsk = mine.firstAsk || now;
  clearTimeout(mine.timer);
  mine.timer = setTimeout(() => {
    mine.timer = null;
    mine.firstAsk = 0;
    if (shown === mine) loadOrder();
  }, Math.min(ORDER_QUIET_MS, Math.max(0, mine.firstAsk + ORDER_MAX_WAIT_MS - now)));
}

function openOrder(id, fromOverview) {
  closeOrder();
  // The overview was read before this order, so the order's figures are at least that recent.
  const asked = lastOverview ? lastOverview.sequence : -1;
  shown = { id, fromOverview, asked, triedAt: 0, data: null, timer: null, firstAsk: 0, loading: false, again: false, gone: false };
  document.title = `FabGuard · ${id}`;
  $("order-missing").hidden = true;
  $("order-page").hidden = false;
  $("order-error").hidden = true;
  $("order-page").classList.add("loading");
  $("order-id").textContent = id;
  $("order-state").textContent = "";
  $("order-updated").textContent = "loading…";
  window.scrollTo(0, 0);
  if (ORDER_ID.test(id)) loadOrder();
  else showOrderMissing(`“${id}” is not an order id.`);
}

function closeOrder() {
  if (shown) clearTimeout(shown.timer);
  shown = null;
}

// ------------------------------------------------------------------------------ views and stream

function routedOrder() {
  const m = /^#order=(.*)$/.exec(location.hash);
  if (!m) return null;
  try {
    return decodeURIComponent(m[1]);
  } catch {
    return "";
  }
}

function route() {
  if ($("dash").hidden) return;
  const id = routedOrder();
  const wasOverview = !$("overview-view").hidden;
  $("overview-view").hidden = id !== null;
  $("order-view").hidden = id === null;
  if (id === null) {
    closeOrder();
    document.title = "FabGuard · Production";
    if (lastOverview) render(lastOverview);
  } else if (!shown || shown.id !== id) {
    openOrder(id, wasOverview);
  }
}

// Back to the overview: through the history when the order was opened from it, so back/forward stay tidy.
function backToOverview(e) {
  e.preventDefault();
  if (shown && shown.fromOverview) history.back();
  else {
    history.pushState(null, "", location.pathname + location.search);
    route();
  }
}

function showLive(data) {
  document.body.dataset.sequence = String(data.sequence);
  setLive(true, `live · event ${num(data.sequence)} · ${clock(data.as_of)}`);
}

function onOverview(data) {
  lastOverview = data;
  showLive(data);
  if (!shown) render(data);
  else if (!shown.gone && (data.sequence > shown.asked || Date.now() - shown.triedAt > ORDER_STALE_MS)) {
    shown.asked = Math.max(shown.asked, data.sequence);
    refreshOrderSoon();
  }
}

function follow() {
  if (stream) stream.close();
  const token = sessionStorage.getItem(TOKEN_KEY);
  stream = new EventSource("/api/v1/stream?token=" + encodeURIComponent(token));
  stream.addEventListener("overview", (e) => onOverview(JSON.parse(e.data)));
  stream.onerror = () => setLive(false, "reconnecting…");
}

async function start() {
  $("login").hidden = true;
  $("dash").hidden = false;
  $("logout").hidden = false;
  $("overview-view").hidden = routedOrder() !== null;
  try {
    lastOverview = await api("/api/v1/stats/overview");
  } catch (err) {
    if (String(err.message) !== "unauthorized") setLive(false, String(err.message || err));
    return;
  }
  route();
  showLive(lastOverview);
  follow();
}

function signOut(message) {
  sessionStorage.removeItem(TOKEN_KEY);
  if (stream) stream.close();
  stream = null;
  closeOrder();
  lastOverview = null;
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
  $("order-back").addEventListener("click", backToOverview);
  $("order-missing-back").addEventListener("click", backToOverview);
  window.addEventListener("hashchange", route);
  if (sessionStorage.getItem(TOKEN_KEY)) start();
  else signOut("");
});
