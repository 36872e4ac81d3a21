// FabGuard dashboard, units at #units (search) and #unit=<serial> (genealogy): a serial or its start, or
// what a unit shows in the field (a MAC address, its certificate's serial or fingerprint) finds the unit;
// its page shows every test with its steps, each decision and refusal, its certificates, firmware, field
// checks, licences, who made it and its ledger entries, exportable as JSON (with the inclusion proofs) and PDF.
"use strict";

const unitHref = (serial) => "#unit=" + encodeURIComponent(serial);

async function searchUnits(query) {
  const list = $("unit-results");
  list.replaceChildren();
  if (!query) return;
  try {
    const found = await api("/api/v1/units/search?q=" + encodeURIComponent(query));
    // One unit named exactly (its serial, or an identifier of it, which its serial does not start with): open it.
    const [one] = found.serials;
    if (found.serials.length === 1 && (one === query || !one.startsWith(query))) {
      location.hash = unitHref(one);
      return;
    }
    for (const s of found.serials) list.append(el("li", {}, el("a", { href: unitHref(s), class: "mono", "data-serial": s }, s)));
    if (!found.serials.length) list.append(el("li", { class: "empty" }, `No unit starts with “${query}” or shows it as its MAC address, certificate or key.`));
  } catch (err) {
    if (String(err.message) !== "unauthorized") list.append(el("li", { class: "error" }, String(err.message || err)));
  }
}

function section(title, count, ...content) {
  return el("section", { class: "card span3 unit-section" },
    el("h2", {}, title, count === null ? null : el("span", { class: "pill" }, String(count))), ...content);
}

function table(headers, rows, empty) {
  const body = el("tbody", {});
  for (const r of rows) body.append(el("tr", {}, ...r.map((c) => (c instanceof Node ? el("td", {}, c) : el("td", {}, c === null || c === undefined ? "–" : String(c))))));
  if (!rows.length) emptyRow(body, headers.length, empty);
  return el("div", { class: "scroll" }, el("table", { class: "table" }, el("thead", {}, el("tr", {}, ...headers.map((h) => el("th", {}, h)))), body));
}

function outcome(text) {
  return el("span", { class: "state " + (text === "PASS" ? "active" : "revoked") }, text);
}

function unitsSection(g) {
  const cards = g.units.map((u) => {
    const made = u.made_by.kind === "site_agent" ? `site agent (lease ${u.made_by.lease_id})` : `fixture ${u.made_by.fixture_id}`;
    const c = u.certificate;
    return el("div", { class: "unit-card" },
      el("div", {}, el("b", {}, u.product_id), ` on order `, el("a", { href: "#order=" + encodeURIComponent(u.order_id) }, u.order_id), ` · site ${u.site_id}`),
      el("div", { class: "muted small" }, `made by ${made} · issued ${when(u.issued_at)} by CA ${u.issuing_ca}`),
      el("div", { class: "mono small wrap" }, `certificate ${c.serial}`),
      el("div", { class: "mono small wrap muted" }, `SHA-256 ${c.sha256}`),
      c.revoked_at ? el("div", { class: "error small" }, `revoked ${when(c.revoked_at)} (${c.revocation_reason})`) : null);
  });
  const old = g.superseded_certificates.map((c) => el("div", { class: "mono small muted wrap" }, `superseded ${c.serial} · ${when(c.superseded_at)}`));
  return section("Units and certificates", g.units.length, ...(cards.length ? cards : [el("p", { class: "empty" }, "Not provisioned.")]), ...old);
}

function recordsSection(records) {
  const items = records.slice().reverse().map((r, i) => {
    const rows = [];
    for (const s of r.steps) {
      rows.push([el("b", {}, s.phase), outcome(s.outcome), ""]);
      for (const m of s.measurements) rows.push([el("span", { class: "mono indent" }, m.name), outcome(m.outcome), `${sig(m.value)}  [${limits(m)}]`]);
    }
    return el("details", { class: "record", open: i === 0, "data-record": String(r.id) },
      el("summary", {}, outcome(r.outcome), ` record ${r.id} · ${when(r.received_at)} · fixture ${r.fixture_id} (site ${r.site_id})`),
      table(["Step / measurement", "Outcome", "Value [limits]"], rows, "No steps recorded."));
  });
  return section("Test records", records.length, ...(items.length ? items : [el("p", { class: "empty" }, "No test records.")]));
}

function entriesTable(entries, empty) {
  return table(["Entry", "When", "Kind", "Code", "Actor"], entries.map((e) => [e.index, when(e.at), e.kind, e.code, e.actor]), empty);
}

function renderGenealogy(g) {
  const box = $("unit-page");
  const json = el("a", { class: "button ghost", href: `/api/v1/units/${encodeURIComponent(g.serial)}/genealogy`, download: `${g.serial}-genealogy.json` }, "Export JSON");
  const pdf = el("a", { class: "button ghost", href: `/api/v1/units/${encodeURIComponent(g.serial)}/genealogy.pdf` }, "Export PDF");
  const proven = g.ledger.entries.filter((e) => e.inclusion.checkpointed).length;
  const checks = g.field_checks.map((c) => [when(c.at), c.genuine ? "genuine" : "NOT genuine", c.reason, c.clone, c.place]);
  const lic = g.licences.map((l) => [l.id, l.ledger_entry, ((l.licence && l.licence.features) || []).join(", ")]);
  box.replaceChildren(
    el("header", { class: "order-title" },
      el("div", {}, el("h1", {}, el("span", { class: "mono", id: "unit-serial" }, g.serial)),
        el("div", { class: "muted" }, g.site_id ? `what site ${g.site_id} saw` : "every site")),
      el("div", { class: "actions" }, json, pdf)),
    el("div", { class: "grid" },
      unitsSection(g),
      recordsSection(g.test_records),
      section("Provisioning decisions and refusals", g.decisions.length, entriesTable(g.decisions, "No decisions.")),
      section("Firmware", g.firmware.length, entriesTable(g.firmware, "No firmware released to this unit.")),
      section("Field checks", g.field_checks.length, table(["When", "Verdict", "Reason", "Clone", "Where"], checks, g.site_id ? "Field checks are not shown to a site." : "Never checked in the field.")),
      section("Licences", g.licences.length, table(["Licence", "Ledger entry", "Features"], lic, "No licences.")),
      section("Identities", null, el("p", { class: "muted" }, "MAC addresses and Matter codes allocated to this serial appear here once identity allocation is enabled.")),
      section("Ledger entries", g.ledger.entries.length,
        el("p", { class: "muted small" }, `${proven} of ${g.ledger.entries.length} proven against the signed checkpoint` +
          (g.ledger.checkpoint ? ` of size ${num(g.ledger.checkpoint.size)}` : " (none signed yet)") + "; the JSON export carries each inclusion proof."),
        entriesTable(g.ledger.entries, "No ledger entries name this serial."))));
}

async function openUnit(serial) {
  $("unit-page").replaceChildren(el("p", { class: "muted" }, "loading…"));
  $("unit-q").value = serial;
  document.title = `FabGuard · ${serial}`;
  try {
    renderGenealogy(await api(`/api/v1/units/${encodeURIComponent(serial)}/genealogy`));
  } catch (err) {
    if (String(err.message) === "unauthorized") return;
    $("unit-page").replaceChildren(el("section", { class: "card missing" }, el("h1", {}, "Unit not found"), el("p", { class: "muted", id: "unit-missing" }, String(err.message || err))));
  }
}
