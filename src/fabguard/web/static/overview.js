// FabGuard dashboard, the overview: KPIs, orders with their quota, alerts, throughput and yield over the
// chosen range, refusals, field checks and fixtures. An operator's overview is its own site's.
"use strict";

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
    const canAck = who && (who.role === "engineer" || who.role === "admin");
    const action = a.acknowledged
      ? el("span", { class: "when" }, "acknowledged")
      : canAck ? el("button", { class: "small ghost ack", type: "button" }, "Acknowledge") : null;
    if (action && !a.acknowledged) action.addEventListener("click", () => acknowledge(a, action));
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
  const labels = bucketTicks(data.series, data.bucket_seconds);
  const made = data.series.map((b) => b.provisioned * 3600 / data.bucket_seconds);
  const rate = data.series.map((b) => (b.pass_rate === null ? null : 100 * b.pass_rate));
  const r = currentRange();
  const span = data.window ? RANGE_LABELS[r.name].toLowerCase() : "last 8 h";
  $("bucket-note").textContent = `per ${bucketLabel(data.bucket_seconds)} · ${span}`;
  if (!charts.throughput) {
    charts.throughput = new Chart($("chart-throughput"), {
      data: { labels, datasets: [
        { type: "bar", label: "Provisioned (units/h)", data: made, backgroundColor: "#4cc2ff", yAxisID: "y", order: 2 },
        { type: "line", label: "Test pass rate (%)", data: rate, borderColor: "#3fb950", backgroundColor: "#3fb950", yAxisID: "y1", spanGaps: true, tension: 0.25, pointRadius: 2, order: 1 },
      ] },
      options: {
        animation: false, maintainAspectRatio: false, interaction: { mode: "index", intersect: false },
        plugins: { legend: { labels: { boxWidth: 12 } } },
        scales: { x: { ticks: { maxRotation: 0, autoSkip: true, autoSkipPadding: 12 } },
                  y: { beginAtZero: true, title: { display: true, text: "units/h" } },
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
  $("field-card").hidden = Boolean(data.site_id);
  $("field-alerts-card").hidden = Boolean(data.site_id);
  if (!data.site_id) renderField(data.field_checks, data.alerts);
  renderCharts(data);
  renderRangeOrders(data.orders);
}
