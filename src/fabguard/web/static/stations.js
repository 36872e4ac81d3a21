// FabGuard dashboard, stations and lines at #stations: yield, throughput and retest rate per fixture and
// per site over the chosen range; the failing steps ranked (Pareto), each leading to the units that
// failed it; a measurement's distribution against its limits, with its Cpk.
"use strict";

let stationsView = null; // { data, fixture, measurement }

function yieldCells(y) {
  return [
    el("td", { class: "num" }, num(y.units_tested)),
    el("td", { class: "num fpy" }, pct(y.first_pass_yield)),
    el("td", { class: "num" }, pct(y.final_yield)),
    el("td", { class: "num" }, pct(y.retest_rate)),
  ];
}

function stationRow(r, id) {
  const row = el("tr", { "data-station": id },
    el("td", { class: "mono" }, id),
    ...yieldCells(r.yield),
    el("td", { class: "num" }, num(r.provisioned)),
    el("td", { class: "num" }, r.throughput_per_hour.toFixed(1)));
  return row;
}

function renderStationTables(data) {
  const lines = $("lines");
  lines.replaceChildren();
  for (const r of data.lines) lines.append(stationRow(r, r.site_id));
  if (!data.lines.length) emptyRow(lines, 7, "No tests in this range.");
  const body = $("stations");
  body.replaceChildren();
  for (const r of data.fixtures) {
    const row = stationRow(r, r.fixture_id);
    row.classList.toggle("picked", stationsView.fixture === r.fixture_id);
    row.tabIndex = 0;
    row.title = `Show ${r.fixture_id}'s failures and distributions`;
    const pick = () => { stationsView.fixture = stationsView.fixture === r.fixture_id ? null : r.fixture_id; loadStationDetail(); renderStationTables(data); };
    row.addEventListener("click", pick);
    row.addEventListener("keydown", (e) => { if (e.key === "Enter") pick(); });
    body.append(row);
  }
  if (!data.fixtures.length) emptyRow(body, 7, "No station tested anything in this range.");
  $("station-scope").textContent = stationsView.fixture ? `fixture ${stationsView.fixture}` : who && who.site_id ? `site ${who.site_id}` : "every station";
}

function renderPareto(failures) {
  const body = $("pareto");
  body.replaceChildren();
  for (const f of failures) {
    const step = f.measurement ? `${f.phase} / ${f.measurement}` : `${f.phase} (phase)`;
    const bar = el("div", { class: "bar" });
    bar.style.width = (100 * f.share).toFixed(1) + "%";
    const row = el("tr", { "data-step": step, tabIndex: 0, title: "Show the units that failed it" },
      el("td", { class: "mono step" }, step),
      el("td", { class: "num" }, num(f.failures)),
      el("td", { class: "share" }, el("div", { class: "share-bar" }, bar), el("span", { class: "muted small" }, pct(f.cumulative_share))));
    const open = () => loadFailingUnits(f);
    row.addEventListener("click", open);
    row.addEventListener("keydown", (e) => { if (e.key === "Enter") open(); });
    body.append(row);
  }
  if (!failures.length) emptyRow(body, 3, "No failures in this range.");
}

async function loadFailingUnits(f) {
  const w = rangeWindow(lastOverview && lastOverview.orders);
  const extra = { phase: f.phase };
  if (f.measurement) extra.measurement = f.measurement;
  if (stationsView.fixture) extra.fixture = stationsView.fixture;
  const list = $("failing-units");
  $("failing-title").textContent = f.measurement ? `${f.phase} / ${f.measurement}` : f.phase;
  $("failing-card").hidden = false;
  list.replaceChildren(el("li", { class: "empty" }, "loading…"));
  try {
    const data = await api("/api/v1/stats/failing-units" + windowQuery(w, extra));
    list.replaceChildren();
    for (const u of data.units) {
      list.append(el("li", { "data-failing-unit": u.serial },
        el("a", { href: "#unit=" + encodeURIComponent(u.serial), class: "mono" }, u.serial),
        el("span", { class: "muted small" }, ` ${u.fixture_id} · ${ago(u.received_at)}`)));
    }
    if (!data.units.length) list.append(el("li", { class: "empty" }, "No unit in the newest failed records."));
  } catch (err) {
    if (String(err.message) !== "unauthorized") list.replaceChildren(el("li", { class: "error" }, String(err.message || err)));
  }
}

function renderMeasurementPicker(capability) {
  const pick = $("dist-measurement");
  const keep = stationsView.measurement || pick.value;
  pick.replaceChildren();
  for (const c of capability) pick.append(el("option", { value: `${c.phase}\u0000${c.name}` }, `${c.phase} / ${c.name}`));
  if (!capability.length) pick.append(el("option", { value: "" }, "no measurements"));
  if (keep && capability.some((c) => `${c.phase}\u0000${c.name}` === keep)) pick.value = keep;
  stationsView.measurement = pick.value;
}

function renderHistogram(h) {
  const inSpec = (lo, hi) => (h.lower === null || lo >= h.lower) && (h.upper === null || hi <= h.upper);
  const labels = h.counts.map((_, i) => sig((h.edges[i] + h.edges[i + 1]) / 2));
  const colours = h.counts.map((_, i) => (inSpec(h.edges[i], h.edges[i + 1]) ? "#4cc2ff" : "#f85149"));
  const cap = h.capability || {};
  $("dist-note").textContent = h.n
    ? `${num(h.n)} values from the newest ${num(h.records_read)} records · spec ${limits(h)} · ${num(h.below_lower)} below, ${num(h.above_upper)} above · Cpk ${cap.cpk == null ? "–" : cap.cpk.toFixed(2)}, Ppk ${cap.ppk == null ? "–" : cap.ppk.toFixed(2)}`
    : "No values of this measurement in this range.";
  $("dist-cpk").className = "index " + grade(cap.cpk);
  $("dist-cpk").textContent = cap.cpk == null ? "Cpk –" : "Cpk " + cap.cpk.toFixed(2);
  if (!window.Chart) return;
  chartTheme();
  if (!charts.histogram) {
    charts.histogram = new Chart($("chart-histogram"), {
      type: "bar",
      data: { labels, datasets: [{ label: "units", data: h.counts, backgroundColor: colours, barPercentage: 1, categoryPercentage: 1 }] },
      options: { animation: false, maintainAspectRatio: false, plugins: { legend: { display: false } },
        scales: { x: { ticks: { maxRotation: 0, autoSkip: true, autoSkipPadding: 10 } }, y: { beginAtZero: true, ticks: { precision: 0 } } } },
    });
  } else {
    charts.histogram.data.labels = labels;
    charts.histogram.data.datasets[0].data = h.counts;
    charts.histogram.data.datasets[0].backgroundColor = colours;
    charts.histogram.update("none");
  }
}

async function loadDistribution() {
  const [phase, name] = (stationsView.measurement || "").split("\u0000");
  if (!name) return renderHistogram({ n: 0, counts: [], edges: [], lower: null, upper: null, records_read: 0 });
  const extra = { phase, name };
  if (stationsView.fixture) extra.fixture = stationsView.fixture;
  try {
    renderHistogram(await api("/api/v1/stats/distribution" + windowQuery(rangeWindow(lastOverview && lastOverview.orders), extra)));
  } catch (err) {
    if (String(err.message) !== "unauthorized") $("dist-note").textContent = String(err.message || err);
  }
}

async function loadStationDetail() {
  const w = rangeWindow(lastOverview && lastOverview.orders);
  const extra = stationsView.fixture ? { fixture: stationsView.fixture } : {};
  try {
    const prod = await api("/api/v1/stats/production" + windowQuery(w, extra));
    renderPareto(prod.failures);
    renderMeasurementPicker(prod.capability);
    await loadDistribution();
  } catch (err) {
    if (String(err.message) !== "unauthorized") $("stations-error").textContent = String(err.message || err);
  }
}

async function loadStations() {
  stationsView = stationsView || { data: null, fixture: null, measurement: null };
  const w = rangeWindow(lastOverview && lastOverview.orders);
  try {
    const data = await api("/api/v1/stats/stations" + windowQuery(w));
    stationsView.data = data;
    $("stations-error").textContent = "";
    $("stations-window").textContent = `${when(data.window.since)} → ${when(data.window.until)}`;
    renderStationTables(data);
    await loadStationDetail();
  } catch (err) {
    if (String(err.message) !== "unauthorized") $("stations-error").textContent = String(err.message || err);
  }
}
