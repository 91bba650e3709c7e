// Shared helpers for crema's screens: money, API calls, error messages.
const won = (n) => "₩" + Number(n).toLocaleString("ko-KR");

async function api(method, path, body, headers = {}) {
  const init = { method, headers: { ...headers } };
  if (body !== undefined) {
    init.headers["content-type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(path, init);
  const text = await response.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch (_) { data = { detail: text }; }
  return { status: response.status, ok: response.ok, retryAfter: response.headers.get("retry-after"), data };
}

// What to tell a person about a failed call.
function problemMessage(result) {
  const code = result.data && result.data.code;
  const wait = result.retryAfter || (result.data && result.data.retry_after_s);
  if (code === "payment_unavailable") return `Payment is busy, try again in ${wait || 1} s`;
  if (code === "overloaded") return `We're very busy right now, try again in ${wait || 1} s`;
  if (code === "payment_declined") return "Your payment was declined; no order was placed";
  if (code === "too_late_to_cancel") return "Too late to cancel: your order is already made";
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
