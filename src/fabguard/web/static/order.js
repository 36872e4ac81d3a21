// FabGuard dashboard, one order at #order=<id>: quota and its burn-down, yield of its units, refusals,
// its series, and capability over its own units. Re-read when the stream says something changed.
"use strict";

// The stream can send an event every half second while a line runs; the order view re-reads its
// statistics once things are quiet for this long, and at least this often while they never are.
const ORDER_QUIET_MS = 700;
const ORDER_MAX_WAIT_MS = 2500;
// Rates and projections move with time alone: re-read an order this old even without a new event.
const ORDER_STALE_MS = 60_000;
// The open order (null elsewhere): its id, the newest event sequence asked for, refresh bookkeeping.
let shown = null;

// ------------------------------------------------------------------------------------- one order

const orderHref = (id) => "#order=" + encodeURIComponent(id);
// Order ids are slugs. The check is looser than that, but an address such as "#order=.." (which
// would change the API path it is read from) never makes a request.
const ORDER_ID = /^[A-Za-z0-9][A-Za-z0-9_-]{0,99}$/;

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
  if (!rows.length) emptyRow(body, 10, `No measurements yet from this order's units (tested at site ${site}).`);
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
        scales: { x: { stacked: true, ticks: { maxRotation: 0, autoSkip: true, autoSkipPadding: 12 } }, y: { stacked: true, beginAtZero: true, ticks: { precision: 0 }, title: { display: true, text: "per bucket" } } },
      },
    });
  } else {
    charts.order.data.labels = labels;
    sets.forEach((values, i) => { charts.order.data.datasets[i].data = values; });
    charts.order.update("none");
  }
}

// Quota leases: a lease's units left the order's quota when it was issued; the units its agent did not make
// go back when it is closed (returned = units - made), so an open lease still holds all of its units.
function renderLeases(leases) {
  const rows = leases || [];
  $("order-leases-card").hidden = !rows.length;
  const open = rows.filter((l) => l.state !== "closed");
  $("order-leased-fact").hidden = !open.length;
  const held = open.reduce((a, l) => a + l.units, 0);
  const made = open.reduce((a, l) => a + l.units_synced, 0);
  $("order-leased").textContent = `${num(held)} units in ${open.length} open lease${open.length === 1 ? "" : "s"} (${num(made)} made as last synced)`;
  const body = $("order-leases");
  body.replaceChildren();
  for (const l of rows) {
    const closed = l.state === "closed";
    const state = el("span", { class: "state " + l.state }, l.state);
    body.append(
      el("tr", { "data-lease": l.id },
        el("td", { class: "mono" }, l.id),
        el("td", {}, l.site_id),
        el("td", { class: "num" }, num(l.units)),
        el("td", { class: "num" }, num(l.units_synced)),
        el("td", { class: "num" }, closed ? num(l.units - l.units_synced) : "–"),
        el("td", { title: l.discrepancy || "" }, state, l.discrepancy ? el("div", { class: "muted small" }, l.discrepancy) : ""),
        el("td", {}, l.synced_at ? when(l.synced_at) : "never"),
        el("td", {}, when(l.not_after))));
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
    `From this order's own units: each unit's latest test at site ${o.site_id} (its newest 500 units). Cpk uses σ within (moving range), Ppk σ overall; ` +
    "each needs two values and a spec limit.";
  renderCapability(data.capability, o.site_id);
  renderLeases(data.leases);
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

