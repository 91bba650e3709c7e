// Browser tests of crema's three screens, in Debian's headless Chromium,
// against the real `crema serve` binary (built by `cargo test --release`).
// UPDATE_SCREENSHOTS=1 also writes docs/screenshots/*.png.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, mkdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const root = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const binary = join(root, "target", "release", "crema");
const shots = process.env.UPDATE_SCREENSHOTS ? join(root, "docs", "screenshots") : mkdtempSync(join(tmpdir(), "crema-shots-"));
mkdirSync(shots, { recursive: true });

/** Starts `crema serve` on port 0 with `env`; resolves to { base, stop }. */
function startCrema(env) {
  const data = mkdtempSync(join(tmpdir(), "crema-browser-"));
  const child = spawn(binary, ["serve", "--bind", "127.0.0.1:0", "--data", data], {
    env: { ...process.env, RUST_LOG: "warn", ...env },
    stdio: ["ignore", "pipe", "inherit"],
  });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("crema did not start in 60 s")), 60_000);
    child.on("exit", (code) => reject(new Error(`crema exited with ${code}`)));
    child.stdout.on("data", (chunk) => {
      const match = /listening on (http:\/\/\S+)/.exec(chunk.toString());
      if (match) {
        clearTimeout(timer);
        resolve({
          base: match[1],
          stop: () => { child.kill("SIGTERM"); rmSync(data, { recursive: true, force: true }); },
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

    const barista = await browser.newPage({ viewport: { width: 1200, height: 800 } });
    await barista.goto(crema.base + "/barista");
    await barista.locator(`[data-testid=ticket][data-order="${orderId}"]`).waitFor();
    await barista.screenshot({ path: join(shots, "barista.png"), fullPage: true });
    await barista.getByTestId("next-bar-1").click();
    await phone.getByTestId("status").filter({ hasText: "brewing" }).waitFor();
    await barista.getByTestId("station-bar-1").filter({ hasText: orderId.slice(-6) }).waitFor();
    await barista.getByTestId("done-bar-1").click();

    // The customer page follows the order over server-sent events: no reload.
    await phone.getByTestId("status").filter({ hasText: "ready" }).waitFor({ timeout: 10_000 });
    assert.equal(await phone.getByTestId("pickup").isEnabled(), true);
    await phone.screenshot({ path: join(shots, "customer.png"), fullPage: true });

    const dashboard = await browser.newPage({ viewport: { width: 1200, height: 800 } });
    await dashboard.goto(crema.base + "/dashboard");
    await dashboard.getByTestId("counts").filter({ hasText: "ready" }).waitFor();
    await dashboard.getByTestId("breaker").filter({ hasText: "closed" }).waitFor();
    await dashboard.waitForTimeout(1500);
    await dashboard.screenshot({ path: join(shots, "dashboard.png"), fullPage: true });

    await phone.getByTestId("pickup").click();
    await phone.getByTestId("status").filter({ hasText: "picked up" }).waitFor();
  } finally {
    crema.stop();
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
    crema.stop();
  }
});
