// FabGuard dashboard: sign-in (a browser session), the views and their addresses, the range picker and
// the live stream. Views: the overview (no hash), one order (#order=<id>), stations and lines
// (#stations), units (#units, #unit=<serial>); the range is in the query (?range=…), so a view with its
// range can be shared as a link.
"use strict";

let stream = null;
// The stream's newest overview (the default range, of the operator's site for an operator).
let lastOverview = null;
// Re-reads of a view whose range is not the stream's: coalesced, at most one every LIVE_MIN_MS.
const LIVE_MIN_MS = 3000;
let liveTimer = null;
let liveAt = 0;
let sessionCheckedAt = 0;

function routedOrder() {
  const m = /^#order=(.*)$/.exec(location.hash);
  if (!m) return null;
  try {
    return decodeURIComponent(m[1]);
  } catch {
    return "";
  }
}

function currentView() {
  const h = location.hash;
  if (h.startsWith("#order=")) return "order";
  if (h === "#stations") return "stations";
  if (h === "#units" || h.startsWith("#unit=")) return "units";
  return "overview";
}

function routedUnit() {
  const m = /^#unit=(.*)$/.exec(location.hash);
  if (!m) return null;
  try {
    return decodeURIComponent(m[1]);
  } catch {
    return null;
  }
}

function showView(view) {
  for (const v of ["overview", "order", "stations", "units"]) $(v + "-view").hidden = v !== view;
  for (const a of document.querySelectorAll("#nav a")) a.classList.toggle("current", a.dataset.view === view);
  $("range-box").hidden = view === "order" || view === "units";
}

function route() {
  if ($("dash").hidden) return;
  const view = currentView();
  const wasOverview = !$("overview-view").hidden;
  showView(view);
  if (view !== "order") closeOrder();
  if (view === "overview") {
    document.title = "FabGuard · Production";
    loadOverview();
  } else if (view === "order") {
    const id = routedOrder();
    if (!shown || shown.id !== id) openOrder(id, wasOverview);
  } else if (view === "stations") {
    document.title = "FabGuard · Stations";
    loadStations();
  } else {
    const serial = routedUnit();
    document.title = "FabGuard · Units";
    if (serial) openUnit(serial);
    else $("unit-page").replaceChildren();
  }
}

// The overview over the chosen range: the stream's snapshot for the shift, a read of its own otherwise.
async function loadOverview() {
  const w = rangeWindow(lastOverview && lastOverview.orders);
  if (!w) {
    if (lastOverview) render(lastOverview);
    return;
  }
  try {
    const data = await api("/api/v1/stats/overview" + windowQuery(w));
    if (currentView() === "overview") render(data);
  } catch (err) {
    if (String(err.message) !== "unauthorized") setLive(false, String(err.message || err));
  }
}

function refreshLiveView() {
  const view = currentView();
  const reload = view === "stations" ? loadStations : view === "overview" && rangeWindow(lastOverview.orders) ? loadOverview : null;
  if (!reload || liveTimer) return;
  liveTimer = setTimeout(() => { liveTimer = null; liveAt = Date.now(); reload(); }, Math.max(0, liveAt + LIVE_MIN_MS - Date.now()));
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

function setLive(on, text) {
  $("live").className = "live " + (on ? "on" : "off");
  $("live-text").textContent = text;
}

function showLive(data) {
  document.body.dataset.sequence = String(data.sequence);
  setLive(true, `live · event ${num(data.sequence)} · ${clock(data.as_of)}`);
}

function onOverview(data) {
  lastOverview = data;
  showLive(data);
  const view = currentView();
  if (view === "overview" && !rangeWindow(data.orders)) render(data);
  else if (view === "order" && shown && !shown.gone && (data.sequence > shown.asked || Date.now() - shown.triedAt > ORDER_STALE_MS)) {
    shown.asked = Math.max(shown.asked, data.sequence);
    refreshOrderSoon();
  } else refreshLiveView();
}

function follow() {
  if (stream) stream.close();
  // The session cookie goes with the request: no token in the address.
  stream = new EventSource("/api/v1/stream");
  stream.addEventListener("overview", (e) => onOverview(JSON.parse(e.data)));
  stream.onerror = () => {
    setLive(false, "reconnecting…");
    // The stream also fails when the session ended (signed out elsewhere, its token revoked): ask, at
    // most every few seconds; a 401 shows the sign-in form with the reason.
    if (Date.now() - sessionCheckedAt > 4000) {
      sessionCheckedAt = Date.now();
      api("/api/v1/session").catch(() => {});
    }
  };
}

// ------------------------------------------------------------------------------ the range picker

function renderRangeOrders(orders) {
  const pick = $("range-order");
  const r = currentRange();
  const keep = r.order || pick.value;
  pick.replaceChildren(...orders.map((o) => el("option", { value: o.id }, o.id)));
  if (keep && orders.some((o) => o.id === keep)) pick.value = keep;
}

function showRange() {
  const r = currentRange();
  $("range").value = r.name;
  $("range-order").hidden = r.name !== "order";
  $("range-custom").hidden = r.name !== "custom";
  if (r.name === "custom") {
    $("range-since").value = r.since.slice(0, 16);
    $("range-until").value = r.until.slice(0, 16);
  }
}

function localInput(ms) {
  const d = new Date(ms - new Date().getTimezoneOffset() * 60e3);
  return d.toISOString().slice(0, 16);
}

function pickRange() {
  const name = $("range").value;
  if (name === "custom") {
    const until = Date.now();
    if (!$("range-since").value) $("range-since").value = localInput(until - 86400e3);
    if (!$("range-until").value) $("range-until").value = localInput(until);
    $("range-custom").hidden = false;
    $("range-order").hidden = true;
    return; // applied with its button
  }
  if (name === "order") {
    if (lastOverview) renderRangeOrders(lastOverview.orders);
    setRange({ name, order: $("range-order").value });
  } else setRange({ name });
  showRange();
  route();
}

function applyCustom(e) {
  e.preventDefault();
  const since = $("range-since").value;
  const until = $("range-until").value;
  if (!since || !until || Date.parse(since) >= Date.parse(until)) {
    $("range-until").setCustomValidity("The range must end after it starts.");
    $("range-until").reportValidity();
    return;
  }
  $("range-until").setCustomValidity("");
  setRange({ name: "custom", since: new Date(since).toISOString(), until: new Date(until).toISOString() });
  showRange();
  route();
}

// ------------------------------------------------------------------------------ signing in and out

function showWho() {
  $("site-badge").hidden = !(who && who.site_id);
  $("site-badge").textContent = who && who.site_id ? `Site ${who.site_id} only` : "";
  $("who").textContent = who ? (who.site_id ? `${who.name} · ${who.role} · site ${who.site_id}` : `${who.name} · ${who.role}`) : "";
}

async function start() {
  $("login").hidden = true;
  $("dash").hidden = false;
  $("logout").hidden = false;
  $("nav").hidden = false;
  showWho();
  showRange();
  showView(currentView());
  try {
    lastOverview = await api("/api/v1/stats/overview");
  } catch (err) {
    if (String(err.message) !== "unauthorized") setLive(false, String(err.message || err));
    return;
  }
  renderRangeOrders(lastOverview.orders);
  route();
  showLive(lastOverview);
  follow();
}

async function signIn(token) {
  const response = await fetch("/api/v1/session", {
    method: "POST", credentials: "same-origin", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ token }),
  });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    const why = (body.error && body.error.message) || `${response.status} ${response.statusText}`;
    return showLogin(response.status === 401 ? `Your token was refused: ${why}` : why);
  }
  who = body;
  start();
}

function showLogin(message) {
  if (stream) stream.close();
  stream = null;
  closeOrder();
  lastOverview = null;
  who = null;
  $("dash").hidden = true;
  $("logout").hidden = true;
  $("nav").hidden = true;
  $("who").textContent = "";
  $("login").hidden = false;
  $("login-error").hidden = !message;
  $("login-error").textContent = message || "";
  setLive(false, "offline");
}

// Signing out ends the session on the server (and its cookie); a session that ended elsewhere just
// shows the sign-in form with why.
function signOut(message) {
  if (!message) fetch("/api/v1/session", { method: "DELETE", credentials: "same-origin" }).catch(() => {});
  showLogin(message);
}

document.addEventListener("DOMContentLoaded", async () => {
  $("login-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const token = $("token").value.trim();
    $("token").value = "";
    signIn(token);
  });
  $("logout").addEventListener("click", () => signOut(""));
  $("order-back").addEventListener("click", backToOverview);
  $("order-missing-back").addEventListener("click", backToOverview);
  $("range").addEventListener("change", pickRange);
  $("range-order").addEventListener("change", pickRange);
  $("range-custom").addEventListener("submit", applyCustom);
  $("dist-measurement").addEventListener("change", () => { stationsView.measurement = $("dist-measurement").value; loadDistribution(); });
  $("unit-search").addEventListener("submit", (e) => { e.preventDefault(); searchUnits($("unit-q").value.trim()); });
  window.addEventListener("hashchange", route);
  const answer = await fetch("/api/v1/session", { credentials: "same-origin" }).catch(() => null);
  if (answer && answer.ok) {
    who = await answer.json();
    start();
  } else showLogin(answer && answer.status === 403 ? "This token's role cannot read the dashboard." : "");
});
