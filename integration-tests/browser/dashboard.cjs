// Drives the dashboard page in headless Chromium (Debian's `chromium`, through playwright-core
// from npm) for integration-tests/tests/dashboard_browser.rs, which starts the auth-api, fills
// the store and checks what this script reports (one JSON object on stdout) against the API.
// Environment: BASE_URL, PLAYWRIGHT_DIR, CHROMIUM_BIN, GRANTED_LOGIN, OUTSIDER_LOGIN, PASSWORD,
// HASH (the page's #tenant=...&from=...&to=...), SCREENSHOT (a .png path), LOADS (how many
// times the week is opened and timed, default 5).
"use strict";
const path = require("path");
const { chromium } = require(path.join(process.env.PLAYWRIGHT_DIR, "node_modules", "playwright-core"));

const BASE = process.env.BASE_URL;
const TIMEOUT = 30000;

// One opening of the week, timed by the page's own clock (ms after navigation start):
// first_contentful_paint_ms (the browser's first paint of the page, its loading state),
// data_ms (the windows' answer received), rendered_ms (the charts built with the data) and
// painted_ms (the first task after the next frame: the charts with the data on screen).
async function timedLoad(page) {
  await page.reload({ waitUntil: "load" });
  await page.waitForSelector("body[data-painted]", { timeout: TIMEOUT });
  return page.evaluate(() => {
    const at = (name) => {
      const e = performance.getEntriesByName(name)[0];
      return e ? e.startTime : null;
    };
    const windows = performance.getEntriesByType("resource").find((e) => e.name.includes("/windows?"));
    return {
      first_contentful_paint_ms: at("first-contentful-paint"),
      data_ms: windows ? windows.responseEnd : null,
      windows_request_ms: windows ? windows.startTime : null,
      windows_bytes: windows ? windows.encodedBodySize : null,
      rendered_ms: at("dashboard-rendered"),
      painted_ms: at("dashboard-painted"),
    };
  });
}

async function signIn(page, login) {
  await page.goto(`${BASE}/`, { waitUntil: "load" });
  await page.waitForSelector("#signin:not([hidden])", { timeout: TIMEOUT });
  await page.fill("#login", login);
  await page.fill("#password", process.env.PASSWORD);
  await page.click("#signin-submit");
}

async function tableRows(page, id) {
  return page.$$eval(`#${id} tbody tr`, (trs) =>
    trs.map((tr) => [...tr.cells].map((td) => ({ text: td.textContent, value: td.dataset.value ?? null }))),
  );
}

(async () => {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM_BIN,
    headless: true,
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
  const out = { console_errors: [], csp_violations: 0 };
  try {
    // 1. The granted user: sign in, then the dashboard of a week of 9 series.
    const context = await browser.newContext({ viewport: { width: 1600, height: 1400 } });
    const page = await context.newPage();
    // Script errors and CSP violations (a refused token's 401 is expected and not counted).
    page.on("console", (m) => {
      if (m.type() === "error" && !m.text().startsWith("Failed to load resource")) out.console_errors.push(m.text());
    });
    page.on("pageerror", (e) => out.console_errors.push(String(e)));
    await signIn(page, process.env.GRANTED_LOGIN);
    await page.waitForSelector("#tenant option", { state: "attached", timeout: TIMEOUT });
    out.tenants = await page.$$eval("#tenant option", (os) => os.map((o) => o.value));
    // Open the week with the token already in sessionStorage: what a returning user sees.
    await page.goto(`${BASE}/ui/#${process.env.HASH}`, { waitUntil: "load" });
    out.loads = [];
    for (let i = 0; i < Number(process.env.LOADS || 5); i++) out.loads.push(await timedLoad(page));
    out.token_in_url = page.url().includes("eyJ");
    out.cookies = (await context.cookies()).length;
    out.status = await page.textContent("#status");
    out.shaded = await page.$$eval(".chart[data-chart=windows]", (cs) => cs.map((c) => Number(c.dataset.shaded || 0)));
    out.charts = await page.$$eval(".chart", (cs) => cs.length);
    out.alarms = await tableRows(page, "alarms-table");
    await page.click("#alarms-table tbody tr");
    out.explain = await page.textContent("#explain");
    await page.evaluate(() => (document.getElementById("table-view").open = true));
    await page.waitForFunction(() => document.querySelectorAll("#windows-table tbody tr").length > 0, null, { timeout: TIMEOUT });
    out.windows = await tableRows(page, "windows-table");
    out.daily = await tableRows(page, "daily-table");
    out.agents = await page.$$eval("#agent option", (os) => os.map((o) => o.textContent));
    out.injected_elements = await page.$$eval("main img, main script", (els) => els.length);
    out.pwned = await page.evaluate(() => window.pwned === 1);
    await page.screenshot({ path: process.env.SCREENSHOT, fullPage: false });

    // 2. A token the server refuses (signature tampered; not expired by its own claims): 401,
    //    back to sign-in.
    await page.evaluate(() => {
      const t = sessionStorage.getItem("agentops.token");
      sessionStorage.setItem("agentops.token", t.slice(0, -2) + (t.endsWith("AA") ? "BB" : "AA"));
    });
    await page.reload({ waitUntil: "load" });
    await page.click("#load").catch(() => {});
    await page.waitForSelector("#signin:not([hidden])", { timeout: TIMEOUT });
    out.refused_token = {
      message: await page.textContent("#signin-message"),
      dashboard_hidden: await page.$eval("#dashboard", (d) => d.hidden),
      token_kept: await page.evaluate(() => sessionStorage.getItem("agentops.token") !== null),
    };

    // 3. An expired token (its exp in the past): back to sign-in without a request.
    await signIn(page, process.env.GRANTED_LOGIN);
    await page.waitForSelector("#tenant option", { state: "attached", timeout: TIMEOUT });
    await page.evaluate(() => {
      const [h, p, s] = sessionStorage.getItem("agentops.token").split(".");
      const claims = JSON.parse(atob(p.replace(/-/g, "+").replace(/_/g, "/")));
      claims.exp = Math.floor(Date.now() / 1000) - 60;
      const body = btoa(JSON.stringify(claims)).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
      sessionStorage.setItem("agentops.token", [h, body, s].join("."));
    });
    await page.reload({ waitUntil: "load" });
    await page.waitForSelector("#signin:not([hidden])", { timeout: TIMEOUT });
    out.expired_token = { message: await page.textContent("#signin-message") };
    await context.close();

    // 4. A user without a grant: the empty state.
    const other = await browser.newContext();
    const page2 = await other.newPage();
    await signIn(page2, process.env.OUTSIDER_LOGIN);
    await page2.waitForSelector("#status[data-state=empty]", { timeout: TIMEOUT });
    out.outsider = {
      status: await page2.textContent("#status"),
      tenants: await page2.$$eval("#tenant option", (os) => os.map((o) => o.value)),
      content_hidden: await page2.$eval("#content", (c) => c.hidden),
    };
    await other.close();
  } finally {
    await browser.close();
  }
  process.stdout.write(JSON.stringify(out));
})().catch((e) => {
  console.error(e && e.stack ? e.stack : String(e));
  process.exit(1);
});
