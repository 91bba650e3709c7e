// Browser tests of crema's three screens, in Debian's headless Chromium,
// against the real `crema serve` binary (built by `cargo test --release`).
// UPDATE_SCREENSHOTS=1 also writes docs/screenshots/*.png.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { createServer } from "node:net";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const root = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const binary = join(process.env.CARGO_TARGET_DIR || join(root, "target"), "release", "crema");
const shots = process.env.UPDATE_SCREENSHOTS ? join(root, "docs", "screenshots") : mkdtempSync(join(tmpdir(), "crema-shots-"));
mkdirSync(shots, { recursive: true });

/** A loopback port free right now. */
function freePort() {
  return new Promise((resolve) => {
    const server = createServer();
    server.listen(0, "127.0.0.1", () => { const { port } = server.address(); server.close(() => resolve(port)); });
  });
}

/**
 * Starts `crema serve` with `env` (on `port`, default 0, over `data`, default
 * a new temporary dir); resolves to { base, data, key, signIn, stop, kill }:
 * `key` is the admin key a first start prints (null on a restart, or when
 * the config names keys), `signIn(path)` the address of a staff screen that
 * signs in with it.
 */
function startCrema(env, { port = 0, data = mkdtempSync(join(tmpdir(), "crema-browser-")), config = null } = {}) {
  const args = ["serve", "--bind", `127.0.0.1:${port}`, "--data", data];
  if (config) {
    const file = join(mkdtempSync(join(tmpdir(), "crema-config-")), "crema.toml");
    writeFileSync(file, config);
    args.push("--config", file);
  }
  const child = spawn(binary, args, {
    env: { ...process.env, RUST_LOG: "warn", ...env },
    stdio: ["ignore", "pipe", "inherit"],
  });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("crema did not start in 60 s")), 60_000);
    child.on("exit", (code) => reject(new Error(`crema exited with ${code}`)));
    let said = "", started = false;
    child.stdout.on("data", async (chunk) => {
      said += chunk.toString();
      const match = /listening on (http:\/\/\S+)/.exec(said);
      if (match && !started) {
        started = true;
        clearTimeout(timer);
        // The first start's key follows the address (on the same or the next write).
        for (let i = 0; i < 20 && !/crema_[0-9a-f]{64}/.test(said); i++) await new Promise((r) => setTimeout(r, 25));
        const key = (/crema_[0-9a-f]{64}/.exec(said) || [null])[0];
        resolve({
          base: match[1],
          data,
          key,
          signIn: (path) => `${match[1]}${path}#key=${key}`,
          // Waits for crema to exit before removing its data: it writes there while it shuts down.
          stop: () => new Promise((done) => {
            const remove = () => { rmSync(data, { recursive: true, force: true, maxRetries: 5 }); done(); };
            if (child.exitCode !== null || child.signalCode !== null) { remove(); return; }
            child.removeAllListeners("exit");
            child.on("exit", remove);
            child.kill("SIGTERM");
          }),
          kill: () => new Promise((done) => { child.removeAllListeners("exit"); child.on("exit", done); child.kill("SIGKILL"); }),
        });
      }
    });
  });
}

let browser;
before(async () => {
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
      "--disable-component-update", "--disable-sync"],
  });
});
after(async () => { await browser?.close(); });

test("an order placed on the customer page is made at a manual station and turns ready without a reload", async () => {
  const crema = await startCrema({ CREMA_BARISTA__MODE: "manual", CREMA_BARISTA__STATIONS: "2" });
  try {
    const phone = await browser.newPage({ viewport: { width: 390, height: 844 } });
    await phone.goto(crema.base + "/");
    await phone.getByTestId("add-americano").click();
    await phone.getByTestId("add-americano").click();
    await phone.getByTestId("add-latte").click();
    await phone.getByTestId("place").click();
    await phone.getByTestId("status").filter({ hasText: "queued" }).waitFor();
    const orderId = await phone.evaluate(() => localStorage.getItem("crema.order"));
    assert.ok(orderId, "the page remembers the order");
    assert.equal(await phone.getByTestId("number").textContent(), "1", "the pickup number, large");

    const barista = await browser.newPage({ viewport: { width: 1200, height: 800 } });
    await barista.goto(crema.signIn("/barista"));
    await barista.locator(`[data-testid=ticket][data-order="${orderId}"]`).waitFor();
    assert.equal(await barista.locator(`[data-testid=ticket][data-order="${orderId}"] [data-testid=ticket-number]`).textContent(), "1",
      "the ticket shows the number the barista calls");
    await barista.getByTestId("next-bar-1").click();
    await phone.getByTestId("status").filter({ hasText: "brewing" }).waitFor();
    await barista.locator(`[data-testid=station-bar-1] [data-testid=station-ticket][data-order="${orderId}"]`).waitFor();
    await barista.getByTestId("done-bar-1").click();

    // The customer page follows the order over server-sent events: no reload.
    await phone.getByTestId("status").filter({ hasText: "ready" }).waitFor({ timeout: 10_000 });
    assert.equal(await phone.getByTestId("pickup").isEnabled(), true);
    await phone.screenshot({ path: join(shots, "customer.png"), fullPage: true });

    const dashboard = await browser.newPage({ viewport: { width: 1200, height: 800 } });
    await dashboard.goto(crema.signIn("/dashboard"));
    await dashboard.getByTestId("counts").filter({ hasText: "ready" }).waitFor();
    await dashboard.getByTestId("breaker").filter({ hasText: "closed" }).waitFor();
    await dashboard.waitForTimeout(1500);
    await dashboard.screenshot({ path: join(shots, "dashboard.png"), fullPage: true });

    // On the pickup shelf until it is collected.
    const onShelf = barista.locator(`[data-testid=shelf-order][data-order="${orderId}"]`);
    await onShelf.waitFor();
    await phone.getByTestId("pickup").click();
    await phone.getByTestId("status").filter({ hasText: "picked up" }).waitFor();
    await onShelf.waitFor({ state: "detached", timeout: 10_000 });
    // The order is settled: its event stream ends and is not re-opened (it
    // once was, every ~3 s, forever).
    let reopened = 0;
    phone.on("request", (request) => { if (request.url().includes(`/orders/${orderId}/events`)) reopened += 1; });
    await phone.waitForTimeout(4_000);
    assert.equal(reopened, 0, "a settled order's stream is not re-opened");
  } finally {
    await crema.stop();
  }
});

test("a 503 from payment is shown to the customer as a retry message", async () => {
  const crema = await startCrema({ CREMA_PAYMENT__SIMULATED__FAIL_RATE: "1.0" });
  try {
    const page = await browser.newPage({ viewport: { width: 390, height: 844 } });
    await page.goto(crema.base + "/");
    await page.getByTestId("add-espresso").click();
    await page.getByTestId("place").click();
    const error = page.getByTestId("error");
    await error.filter({ hasText: /Payment is busy, try again in \d+ s/ }).waitFor();
    assert.equal(await page.getByTestId("order").isVisible(), false, "no order is shown");
  } finally {
    await crema.stop();
  }
});

test("the customer page says when crema is unreachable and carries on without a reload", async () => {
  const port = await freePort();
  const env = { CREMA_BARISTA__MODE: "manual" };
  let crema = await startCrema(env, { port });
  const { data, key } = crema;
  try {
    const page = await browser.newPage({ viewport: { width: 390, height: 844 } });
    await page.goto(crema.base + "/");
    await page.getByTestId("add-latte").click();
    await page.getByTestId("place").click();
    await page.getByTestId("status").filter({ hasText: "queued" }).waitFor();

    // crema goes away: the page says so instead of showing stale data as live.
    await crema.kill();
    const banner = page.getByTestId("connection");
    await banner.filter({ hasText: "Connection to crema lost" }).waitFor({ state: "visible", timeout: 15_000 });

    // An order tried meanwhile waits, with its one key, instead of failing for good.
    await page.getByRole("button", { name: "New order" }).click();
    await page.getByTestId("add-americano").click();
    await page.getByTestId("place").click();
    await page.getByTestId("place").filter({ hasText: "Confirming your order" }).waitFor();

    // crema comes back on the same address and data: the banner goes and the
    // order placed while it was down goes through — once.
    crema = await startCrema(env, { port, data });
    await banner.waitFor({ state: "hidden", timeout: 15_000 });
    await page.getByTestId("status").filter({ hasText: "queued" }).waitFor({ timeout: 15_000 });
    const lines = await page.locator("#order-lines").textContent();
    assert.match(lines, /Americano/);
    const orders = await (await fetch(crema.base + "/orders", { headers: { authorization: `Bearer ${key}` } })).json();
    assert.equal(orders.orders.length, 2, "the latte, and the americano exactly once");
  } finally {
    await crema.stop();
  }
});

test("prices are shown in the menu's currency with its minor unit, never a fixed symbol", async () => {
  for (const [currency, price, total] of [["KRW", /₩\s?4,500/, /₩\s?9,000/], ["EUR", /€\s?45\.00/, /€\s?90\.00/]]) {
    const crema = await startCrema({ CREMA_MENU__CURRENCY: currency });
    try {
      const page = await browser.newPage({ locale: "en-US" });
      await page.goto(crema.base + "/");
      const americano = page.getByTestId("item-americano");
      await americano.waitFor();
      assert.match(await americano.textContent(), price, `${currency} menu price`);
      await page.getByTestId("add-americano").click();
      await page.getByTestId("add-americano").click();
      assert.match(await page.locator("#total").textContent(), total, `${currency} cart total`);
      await page.close();
    } finally {
      await crema.stop();
    }
  }
});

test("an item marked sold out on the barista screen cannot be ordered on the customer page", async () => {
  const crema = await startCrema({});
  try {
    const barista = await browser.newPage({ viewport: { width: 1200, height: 800 } });
    await barista.goto(crema.signIn("/barista"));
    await barista.getByTestId("sold-out-latte").click();
    await barista.getByTestId("sold-out-latte").filter({ hasText: "sold out" }).waitFor();

    const phone = await browser.newPage({ viewport: { width: 390, height: 844 } });
    await phone.goto(crema.base + "/");
    await phone.getByTestId("item-latte").filter({ hasText: "Sold out" }).waitFor();
    assert.equal(await phone.getByTestId("add-latte").isDisabled(), true, "a sold-out item cannot be added");
    assert.equal(await phone.getByTestId("add-americano").isDisabled(), false);
    // The API refuses it too, before any charge.
    const refused = await phone.evaluate(async () => (await fetch("/orders", { method: "POST",
      headers: { "content-type": "application/json" }, body: JSON.stringify({ items: [{ menu_id: "latte", qty: 1 }] }) })).status);
    assert.equal(refused, 409);

    await barista.getByTestId("sold-out-latte").click();
    await barista.getByTestId("sold-out-latte").filter({ hasNotText: "sold out" }).waitFor();
    await phone.reload();
    assert.equal(await phone.getByTestId("add-latte").isDisabled(), false, "back on the menu");
  } finally {
    await crema.stop();
  }
});

test("a latte ordered with options on the customer page is priced as it changes and reaches the barista with them", async () => {
  const crema = await startCrema({ CREMA_BARISTA__MODE: "manual" });
  try {
    const phone = await browser.newPage({ viewport: { width: 390, height: 844 }, locale: "en-US" });
    await phone.goto(crema.base + "/");
    await phone.getByTestId("customize-latte").click();
    const price = phone.getByTestId("customize-price");
    assert.match(await price.textContent(), /₩\s?5,000/, "tall, hot, no extras: the item's price");
    await phone.getByTestId("choice-size-grande").click();
    await phone.getByTestId("choice-milk-oat").click();
    await phone.getByTestId("choice-extras-extra_shot").click();
    await phone.getByTestId("choice-extras-vanilla").click();
    await phone.getByTestId("choice-extras-caramel").click();
    assert.equal(await phone.getByTestId("choice-extras-decaf").isDisabled(), true, "at most 3 extras");
    await phone.getByTestId("choice-extras-caramel").click();
    assert.equal(await phone.getByTestId("choice-extras-decaf").isDisabled(), false);
    assert.match(await price.textContent(), /₩\s?7,100/, "5,000 + 500 + 600 + 500 + 500");
    await phone.getByTestId("customize-note").fill("extra hot");
    await phone.getByTestId("customize-add").click();
    assert.match(await phone.locator("#total").textContent(), /₩\s?7,100/);
    await phone.getByTestId("place").click();
    await phone.getByTestId("status").filter({ hasText: "queued" }).waitFor();
    const orderId = await phone.evaluate(() => localStorage.getItem("crema.order"));
    const order = await (await fetch(`${crema.base}/orders/${orderId}`)).json();
    assert.equal(order.total, 7100, "the server priced it the same");
    assert.deepEqual(order.items[0].options.map((o) => o.choice), ["grande", "hot", "oat", "extra_shot", "vanilla"]);
    assert.equal(order.items[0].note, "extra hot");

    const barista = await browser.newPage({ viewport: { width: 1200, height: 800 } });
    await barista.goto(crema.signIn("/barista"));
    const ticket = barista.locator(`[data-testid=ticket][data-order="${orderId}"]`);
    await ticket.waitFor();
    assert.match(await ticket.textContent(), /Grande, Hot, Oat milk, Extra shot, Vanilla syrup/);
    assert.equal(await ticket.getByTestId("ticket-note").textContent(), "“extra hot”");
  } finally {
    await crema.stop();
  }
});

// Two stores: gangnam (latte at 5,200; a manual espresso bar and a manual
// oven) and hongdae (one station for everything).
const CHAIN = `
[[stores]]
id = "gangnam"
name = "Gangnam"
prices = { latte = 5200 }
[[stores.stations]]
id = "bar-1"
serves = ["bar"]
mode = "manual"
[[stores.stations]]
id = "oven"
serves = ["kitchen"]
mode = "manual"
[[stores]]
id = "hongdae"
name = "Hongdae"
[[stores.stations]]
id = "bar-1"
`;

test("an order with options placed at a chosen store is priced at that store and routed to two stations, ready only when both are done", async () => {
  const crema = await startCrema({}, { config: CHAIN });
  try {
    const phone = await browser.newPage({ viewport: { width: 390, height: 844 }, locale: "en-US" });
    await phone.goto(crema.base + "/");
    await phone.getByTestId("store").selectOption("hongdae");
    await phone.getByTestId("item-latte").filter({ hasText: /₩\s?5,000/ }).waitFor();
    await phone.getByTestId("store").selectOption("gangnam");
    await phone.getByTestId("item-latte").filter({ hasText: /₩\s?5,200/ }).waitFor();
    await phone.getByTestId("customize-latte").click();
    await phone.getByTestId("choice-size-grande").click();
    assert.match(await phone.getByTestId("customize-price").textContent(), /₩\s?5,700/, "gangnam's latte, grande");
    await phone.getByTestId("customize-add").click();
    await phone.getByTestId("customize-croissant").click();
    await phone.getByTestId("choice-warming-warmed").click();
    await phone.getByTestId("customize-add").click();
    await phone.getByTestId("place").click();
    await phone.getByTestId("status").filter({ hasText: "queued" }).waitFor();
    const orderId = await phone.evaluate(() => localStorage.getItem("crema.order"));
    const order = await (await fetch(`${crema.base}/orders/${orderId}`)).json();
    assert.equal(order.store, "gangnam");
    assert.equal(order.total, 5700 + 3800);
    assert.deepEqual(order.tickets.map((t) => t.kind), ["bar", "kitchen"]);

    const barista = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    await barista.goto(crema.signIn("/barista?store=gangnam"));
    await barista.locator(`[data-testid=column-bar] [data-testid=ticket][data-order="${orderId}"]`).waitFor();
    const kitchenTicket = barista.locator(`[data-testid=column-kitchen] [data-testid=ticket][data-order="${orderId}"]`);
    assert.match(await kitchenTicket.textContent(), /Butter Croissant — Warmed/);
    assert.doesNotMatch(await kitchenTicket.textContent(), /Latte/, "each station kind sees its own lines");
    await barista.screenshot({ path: join(shots, "barista.png"), fullPage: true });
    await barista.getByTestId("next-oven").click();
    await barista.locator("[data-testid=station-oven] [data-testid=station-ticket]").filter({ hasText: "Croissant" }).waitFor();
    await barista.getByTestId("done-oven").click();
    await phone.getByTestId("status").filter({ hasText: "brewing" }).waitFor();
    await phone.waitForTimeout(500);
    assert.equal(await phone.getByTestId("status").textContent(), "brewing", "the latte is not made yet: not ready");
    await barista.getByTestId("next-bar-1").click();
    await barista.getByTestId("done-bar-1").click();
    await phone.getByTestId("status").filter({ hasText: "ready" }).waitFor({ timeout: 10_000 });
    await barista.locator(`[data-testid=shelf-order][data-order="${orderId}"]`).waitFor();
  } finally {
    await crema.stop();
  }
});

test("a choice marked sold out on the barista screen is greyed in the options and refused", async () => {
  const crema = await startCrema({});
  try {
    const barista = await browser.newPage({ viewport: { width: 1200, height: 800 } });
    await barista.goto(crema.signIn("/barista"));
    await barista.getByTestId("sold-out-milk.oat").click();
    await barista.getByTestId("sold-out-milk.oat").filter({ hasText: "sold out" }).waitFor();

    const phone = await browser.newPage({ viewport: { width: 390, height: 844 } });
    await phone.goto(crema.base + "/");
    await phone.getByTestId("customize-latte").click();
    assert.equal(await phone.getByTestId("choice-milk-oat").isDisabled(), true, "out of oat milk");
    assert.equal(await phone.getByTestId("choice-milk-soy").isDisabled(), false);
    const refused = await phone.evaluate(async () => (await fetch("/orders", { method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ items: [{ menu_id: "latte", qty: 1, options: { milk: "oat" } }] }) })).status);
    assert.equal(refused, 409);
  } finally {
    await crema.stop();
  }
});

test("the staff screens sign in with a key, and a barista's screen shows only their store and no ordering pause", async () => {
  const key = "crema_browser-test-hongdae-bar";
  const sha256 = createHash("sha256").update(key).digest("hex");
  const config = `${CHAIN}\n[[auth.keys]]\nname = "hongdae-bar"\nrole = "barista"\nstores = ["hongdae"]\nsha256 = "${sha256}"\n`;
  const crema = await startCrema({}, { config });
  try {
    assert.equal(crema.key, null, "keys are configured: no first-start key");
    const page = await browser.newPage({ viewport: { width: 1200, height: 800 } });
    await page.goto(crema.base + "/barista");
    await page.getByTestId("sign-in").waitFor();
    await page.getByTestId("sign-in-key").fill("crema_wrong");
    await page.getByTestId("sign-in-submit").click();
    await page.getByTestId("sign-in-error").filter({ hasText: "not known" }).waitFor();
    await page.getByTestId("sign-in-key").fill(key);
    await page.getByTestId("sign-in-submit").click();
    await page.locator("[data-testid=station-bar-1]").waitFor();
    assert.equal(await page.getByTestId("signed-in-as").textContent(), "hongdae-bar (barista)");
    assert.equal(await page.getByTestId("store").inputValue(), "hongdae", "the only store the key covers");
    assert.ok(await page.getByTestId("ordering-toggle").isHidden(), "pausing ordering is a manager's");
    assert.equal(await page.evaluate(() => document.cookie), "", "the session cookie is HttpOnly");

    // Signed in across a reload; an order at hongdae reaches the screen live (the stream carries the cookie).
    await page.reload();
    await page.locator("[data-testid=station-bar-1]").waitFor();
    const placed = await (await fetch(crema.base + "/orders", { method: "POST", headers: { "content-type": "application/json" },
      body: JSON.stringify({ store: "hongdae", items: [{ menu_id: "espresso", qty: 1 }] }) })).json();
    await page.locator(`[data-order="${placed.id}"]`).first().waitFor();
    if (process.env.UPDATE_SCREENSHOTS) await page.screenshot({ path: join(shots, "barista-signed-in.png") });

    await page.getByTestId("sign-out").click();
    await page.getByTestId("sign-in").waitFor();
    if (process.env.UPDATE_SCREENSHOTS) await page.screenshot({ path: join(shots, "sign-in.png") });
    const after = await page.evaluate(async () => (await fetch("/stores/hongdae/queue")).status);
    assert.equal(after, 401, "signed out");
  } finally {
    await crema.stop();
  }
});
