// Shared helpers for crema's screens: money, API calls, error messages.
// Amounts are integers in the currency's minor unit (API.md): KRW has none,
// EUR has cents. The currency comes from the menu (`useCurrency`), never a
// hard-coded symbol.
let moneyFormat = null;
let minorDigits = 0;
function useCurrency(code) {
  try {
    moneyFormat = new Intl.NumberFormat(undefined, { style: "currency", currency: code });
    minorDigits = moneyFormat.resolvedOptions().maximumFractionDigits;
  } catch (_) {
    moneyFormat = null; // an unknown code: the number and the code, below
    minorDigits = 0;
  }
  money.code = code;
}
function money(amount) {
  const value = Number(amount) / 10 ** minorDigits;
  return moneyFormat ? moneyFormat.format(value) : `${value.toLocaleString()} ${money.code || ""}`.trim();
}

// Calls the API. Never throws: a network failure is `{ status: 0, network: true }`
// and marks the connection lost (see `connectionLost`).
async function api(method, path, body, headers = {}) {
  const init = { method, headers: { ...headers }, cache: "no-store" };
  if (body !== undefined) {
    init.headers["content-type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response, text;
  try {
    response = await fetch(path, init);
    text = await response.text();
  } catch (_) {
    connectionLost();
    return { status: 0, ok: false, network: true, retryAfter: null, data: null };
  }
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch (_) { data = { detail: text }; }
  if (response.status === 401 && staff.page && path !== "/session") signInAgain();
  return { status: response.status, ok: response.ok, retryAfter: response.headers.get("retry-after"), data };
}

// The connection to crema: when a call or a live stream fails, every screen
// shows "connection lost — retrying", greys out what it shows (it may be
// stale), probes /healthz every 2 s, and on success hides the banner and
// calls the page's `onReconnect` handlers to reload what it shows.
const connection = { lost: false, handlers: [] };

function onReconnect(handler) { connection.handlers.push(handler); }

function connectionBanner() {
  let banner = document.getElementById("connection");
  if (!banner) {
    banner = el("div", { id: "connection", class: "banner error connection hidden", role: "status", "data-testid": "connection" },
      "Connection to crema lost — retrying…");
    document.body.prepend(banner);
  }
  return banner;
}

function connectionLost() {
  if (connection.lost) return;
  connection.lost = true;
  connectionBanner().classList.remove("hidden");
  document.body.classList.add("stale");
  setTimeout(probeConnection, 2000);
}

async function probeConnection() {
  try {
    const response = await fetch("/healthz", { cache: "no-store" });
    if (response.ok) {
      connection.lost = false;
      connectionBanner().classList.add("hidden");
      document.body.classList.remove("stale");
      for (const handler of connection.handlers) handler();
      return;
    }
  } catch (_) { /* still down */ }
  setTimeout(probeConnection, 2000);
}

// An EventSource that reports a lost connection. The browser reconnects it by
// itself; `onReconnect` handlers reload what the events would have said.
function liveEvents(path) {
  const source = new EventSource(path);
  source.addEventListener("error", () => { if (source.readyState !== EventSource.OPEN) connectionLost(); });
  return source;
}

// What to tell a person about a failed call.
function problemMessage(result) {
  const code = result.data && result.data.code;
  const wait = result.retryAfter || (result.data && result.data.retry_after_s);
  if (code === "payment_unavailable") return `Payment is busy, try again in ${wait || 1} s`;
  if (code === "overloaded") return `We're very busy right now, try again in ${wait || 1} s`;
  if (code === "payment_declined") return "Your payment was declined; no order was placed";
  if (code === "too_late_to_cancel") return "Too late to cancel: your order is already made";
  if (code === "storage_unavailable") return `We can't take orders for a moment, try again in ${wait || 5} s`;
  if (code === "store_paused") return "This store is not taking orders right now; nothing was charged";
  if (code === "store_busy") return `This store is very busy: your order would take too long. Try again in ${wait || 60} s; nothing was charged`;
  if (code === "item_unavailable") return `${(result.data && result.data.detail) || "Something is sold out"}. Please choose something else`;
  if (result.network) return "crema can't be reached; check your connection";
  return (result.data && result.data.detail) || `Something went wrong (${result.status})`;
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "class") node.className = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value);
  }
  for (const child of children) node.append(child);
  return node;
}

function secondsUntil(iso) {
  return Math.max(0, Math.round((Date.parse(iso) - Date.now()) / 1000));
}

// Shows `text` in the page's error banner (`#error`); empty text hides it.
function showError(text) {
  const box = document.getElementById("error");
  box.textContent = text;
  box.classList.toggle("hidden", !text);
}

// Staff screens (barista, dashboard) sign in with a key (API.md "Access").
// The key is sent once, to POST /session, which answers with an HttpOnly,
// SameSite=Strict session cookie: the page never keeps the key, and the
// cookie also reaches the live event streams (an EventSource cannot send an
// Authorization header). A `#key=` in the address (the link crema prints at
// its first start) signs in at once and is removed from the address.
const staff = { page: false, session: null, asking: false };

async function staffSession() {
  staff.page = true;
  const fromLink = new URLSearchParams(location.hash.slice(1)).get("key");
  if (fromLink) {
    window.history.replaceState(null, "", location.pathname + location.search);
    const result = await api("POST", "/session", { key: fromLink });
    if (result.ok) return signedIn(result.data);
  }
  const current = await api("GET", "/session");
  if (current.ok) return signedIn(current.data);
  return signedIn(await signInForm(fromLink ? "That sign-in link's key is not known" : ""));
}

function signedIn(session) {
  staff.session = session;
  const nav = document.querySelector("header nav");
  if (nav && session.access === "on" && !document.getElementById("sign-out")) {
    nav.append(el("span", { class: "muted who", "data-testid": "signed-in-as" }, `${session.name} (${session.role})`),
      el("button", { class: "ghost", id: "sign-out", "data-testid": "sign-out", onclick: signOut }, "Sign out"));
  }
  return session;
}

async function signOut() {
  await api("DELETE", "/session");
  location.reload();
}

// The sign-in form, over the page; resolves with the session once a key is accepted.
function signInForm(message = "") {
  staff.asking = true;
  return new Promise((resolve) => {
    const input = el("input", { type: "password", autocomplete: "current-password", placeholder: "crema_…",
      "aria-label": "Staff key", "data-testid": "sign-in-key" });
    const error = el("div", { class: `banner error${message ? "" : " hidden"}`, role: "alert", "data-testid": "sign-in-error" }, message);
    const form = el("form", { class: "card sign-in", "data-testid": "sign-in" },
      el("h2", {}, "Sign in"),
      el("p", { class: "muted" }, "This screen is for staff. Enter your key (ask your manager; the first key is the one crema printed when it first started)."),
      input, el("button", { type: "submit", "data-testid": "sign-in-submit" }, "Sign in"), error);
    const overlay = el("div", { class: "overlay", id: "sign-in-overlay" }, form);
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const result = await api("POST", "/session", { key: input.value.trim() });
      if (result.ok) {
        overlay.remove();
        document.body.classList.remove("signing-in");
        staff.asking = false;
        resolve(result.data);
      } else {
        error.textContent = result.status === 401 ? "This key is not known" : problemMessage(result);
        error.classList.remove("hidden");
      }
    });
    document.body.append(overlay);
    document.body.classList.add("signing-in");
    input.focus();
  });
}

// A call answered 401 while signed in: the sign-in ended (it expired, or crema restarted).
function signInAgain() {
  if (staff.asking) return;
  signInForm("Your sign-in has ended; sign in again").then(() => location.reload());
}
