// The playground at / in a real headless Chromium (Debian's chromium package,
// driven by playwright-core): the page renders, shows live health, lists the
// models, streams a chat reply token by token, embeds texts and shows live
// metrics. Saves a screenshot to $LMHOST_TEST_OUT/playground.png.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { chromium } from "playwright-core";
import { startServer } from "./server.mjs";

const CHROMIUM = process.env.LMHOST_CHROMIUM || "/usr/bin/chromium";
const out = process.env.LMHOST_TEST_OUT;
let server, browser, profile;  // browser: a persistent BrowserContext

before(async () => {
  server = await startServer();
  profile = fs.mkdtempSync(path.join(out, "chromium-profile-"));
  // A fresh profile folder: playwright passes it to Chromium as --user-data-dir.
  browser = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    viewport: { width: 1280, height: 900 },
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
});
after(async () => {
  await browser?.close();
  await server?.stop();
  if (profile) fs.rmSync(profile, { recursive: true, force: true });
});

test("playground: health, models, streamed chat, embeddings, metrics", { timeout: 120000 }, async () => {
  const page = await browser.newPage();
  const errors = [];
  const foreign = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  page.on("console", (m) => { if (m.type() === "error") errors.push(m.text()); });
  page.on("request", (r) => { if (!r.url().startsWith(server.base)) foreign.push(r.url()); });

  // A browser asking for / gets the page (content negotiation).
  const res = await page.goto(server.base + "/");
  assert.equal(res.status(), 200);
  assert.equal(await page.title(), "lmhost playground");

  // Live health and the model lists.
  await page.waitForFunction(() => document.getElementById("status-text").textContent.startsWith("ok"));
  await page.waitForFunction(() => document.querySelectorAll("#models-table tbody tr").length >= 2);
  await page.waitForFunction(() => document.querySelectorAll("#chat-model option").length > 0);
  assert.equal(await page.inputValue("#chat-model"), "demo");

  // Chat: the reply must arrive in several pieces (streamed), then finish.
  await page.evaluate(() => {
    window.__chunks = [];
    const target = document.getElementById("chat-log");
    new MutationObserver(() => {
      const last = target.querySelector(".msg.assistant:last-child .body");
      if (last) window.__chunks.push(last.textContent.length);
    }).observe(target, { subtree: true, characterData: true, childList: true });
  });
  // The demo model writes a reply faster than the page reads it (the whole
  // stream can arrive in one or two reads), so the browser's network is
  // throttled for the chat: the events then arrive over many reads, as they
  // do from a real model, and the page must render them as they come.
  const cdp = await page.context().newCDPSession(page);
  await cdp.send("Network.enable");
  await cdp.send("Network.emulateNetworkConditions",
                 { offline: false, latency: 0, downloadThroughput: 16 * 1024, uploadThroughput: -1 });
  await page.fill("#max-tokens", "200");
  await page.fill("#chat-input", "Hello there, tell me a story.");
  await page.press("#chat-input", "Enter");
  await page.waitForSelector(".msg.assistant[data-done]", { timeout: 60000 });
  const reply = await page.textContent(".msg.assistant .body");
  assert.ok(reply.length > 0, "the assistant replied");
  assert.ok(!(await page.$(".msg.error")), "no error message: " + (await page.textContent("#chat-log")));
  const growth = await page.evaluate(() => new Set(window.__chunks).size);
  assert.ok(growth >= 3, `the reply grew in ${growth} steps (streaming)`);
  await cdp.send("Network.emulateNetworkConditions",
                 { offline: false, latency: 0, downloadThroughput: -1, uploadThroughput: -1 });
  assert.match(await page.textContent("#chat-stats"), /tokens/);

  // Embeddings: three texts, a 3x3 similarity table with 1.000 on the diagonal.
  await page.click("#tab-embed");
  await page.waitForFunction(() => document.querySelectorAll("#embed-model option").length > 0);
  assert.equal(await page.inputValue("#embed-model"), "demo-embed");
  await page.click("#embed-run");
  await page.waitForSelector("#embed-table", { timeout: 30000 });
  const diag = await page.$$eval("#embed-table tbody tr", (rows) => rows.map((r, i) => r.cells[2 + i].textContent));
  assert.deepEqual(diag, ["1.000", "1.000", "1.000"]);
  assert.match(await page.textContent("#embed-stats"), /3 × \d+ dimensions/);

  // Metrics tab: lists live values when /metrics exists, or says why not.
  await page.click("#tab-metrics");
  await page.waitForFunction(() => document.querySelectorAll("#metrics-table tbody tr").length > 0 ||
    /answered/.test(document.getElementById("metrics-note").textContent), null, { timeout: 15000 });

  // Screenshot of the chat view for a human to look at.
  await page.click("#tab-chat");
  await page.screenshot({ path: path.join(out, "playground.png"), fullPage: true });
  assert.deepEqual(errors, [], "no script errors");
  assert.deepEqual(foreign, [], "no request left the server's origin");
});

test("docs page lists every operation of the OpenAPI document and can call one", { timeout: 60000 }, async () => {
  const page = await browser.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  await page.goto(server.base + "/docs");
  const doc = await (await fetch(server.base + "/openapi.json")).json();
  const nOps = Object.values(doc.paths).reduce((n, item) => n + Object.keys(item).length, 0);
  await page.waitForFunction((n) => document.querySelectorAll("details.op").length === n, nOps);
  // Open GET /v1/models and send it.
  const op = page.locator("details.op", { has: page.locator(".path", { hasText: /^\/v1\/models$/ }) });
  await op.locator("summary").click();
  await op.locator("button").click();
  await page.waitForFunction(() => [...document.querySelectorAll("pre.result")].some((p) => /^200 /.test(p.textContent)));
  assert.match(await op.locator("pre.result").textContent(), /"demo"/);
  await page.screenshot({ path: path.join(out, "docs.png") });
  assert.deepEqual(errors, []);
});
