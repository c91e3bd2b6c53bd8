// The OpenAPI document (src/web/assets/openapi.json, served at /openapi.json)
// is valid OpenAPI 3 according to @apidevtools/swagger-parser, documents
// every route registered in src/, and every documented operation is served.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import SwaggerParser from "@apidevtools/swagger-parser";
import { startServer } from "./server.mjs";

const src = process.env.LMHOST_SOURCE_DIR;
const docFile = path.join(src, "src/web/assets/openapi.json");
// Documented endpoints of the production layer (issue 5) that a build may not
// serve yet; reported, not failed, while absent.
const PENDING = new Set(["GET /ready", "GET /info", "GET /metrics"]);

let server;
before(async () => { server = await startServer(); });
after(async () => { await server?.stop(); });

function routesInSource() {
  const out = [];
  const walk = (dir) => {
    for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
      const p = path.join(dir, e.name);
      if (e.isDirectory()) walk(p);
      else if (p.endsWith(".cpp")) {
        const text = fs.readFileSync(p, "utf8");
        for (const m of text.matchAll(/\.add\(\s*"(GET|POST|PUT|DELETE|PATCH)"\s*,\s*"(\/[^"]*)"/g))
          out.push({ method: m[1], path: m[2].replace(/\{\*(\w+)\}/g, "{$1}"), file: path.relative(src, p) });
      }
    }
  };
  walk(path.join(src, "src"));
  return out;
}

test("the document is valid OpenAPI 3 (swagger-parser)", async () => {
  const doc = JSON.parse(fs.readFileSync(docFile, "utf8").replaceAll("@LMHOST_VERSION@", "0.0.0"));
  const api = await SwaggerParser.validate(doc);
  assert.match(api.openapi, /^3\./);
  assert.ok(Object.keys(api.paths).length >= 20);
});

test("every route registered in src/ is documented", () => {
  const doc = JSON.parse(fs.readFileSync(docFile, "utf8"));
  const routes = routesInSource();
  assert.ok(routes.length >= 20, "found the routes in the source");
  const missing = routes.filter((r) => !doc.paths[r.path]?.[r.method.toLowerCase()]);
  assert.deepEqual(missing.map((r) => `${r.method} ${r.path} (${r.file})`), []);
});

test("the served /openapi.json is valid and carries the server's version", async () => {
  const res = await fetch(server.base + "/openapi.json");
  assert.equal(res.status, 200);
  assert.match(res.headers.get("content-type"), /application\/json/);
  const doc = await res.json();
  assert.doesNotMatch(doc.info.version, /@/);
  await SwaggerParser.validate(doc);
});

test("every documented operation is served", async (t) => {
  const doc = await (await fetch(server.base + "/openapi.json")).json();
  const pending = [];
  for (const [p, item] of Object.entries(doc.paths)) {
    for (const [method, op] of Object.entries(item)) {
      const url = server.base + p.replace("{id}", "demo");
      const init = { method: method.toUpperCase(), headers: {} };
      const example = op.requestBody?.content?.["application/json"]?.example;
      if (example) { init.body = JSON.stringify(example); init.headers["content-type"] = "application/json"; }
      const res = await fetch(url, init);
      const body = await res.text();
      const noRoute = res.status === 405 || (res.status === 404 && /no route/.test(body));
      if (noRoute && PENDING.has(`${method.toUpperCase()} ${p}`)) { pending.push(`${method.toUpperCase()} ${p}`); continue; }
      assert.ok(!noRoute, `${method.toUpperCase()} ${p} is documented but not served (${res.status} ${body.slice(0, 120)})`);
      assert.ok(res.status < 500 || res.status === 503, `${method.toUpperCase()} ${p} with its example: ${res.status} ${body.slice(0, 200)}`);
      if (example) assert.equal(res.status, 200, `${method.toUpperCase()} ${p} with the documented example: ${body.slice(0, 200)}`);
    }
  }
  if (pending.length) t.diagnostic("documented, not served by this build yet (issue 5): " + pending.join(", "));
});

test("GET / negotiates: browsers get the playground, Ollama clients the plain probe answer", async () => {
  for (const accept of [undefined, "*/*", "application/json", "text/plain"]) {
    const res = await fetch(server.base + "/", { headers: accept ? { accept } : {} });
    assert.equal(res.status, 200);
    assert.equal(await res.text(), "Ollama is running", `Accept: ${accept}`);
  }
  const res = await fetch(server.base + "/", {
    headers: { accept: "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8" } });
  assert.equal(res.status, 200);
  assert.match(res.headers.get("content-type"), /text\/html/);
  assert.match(res.headers.get("vary") || "", /Accept/i);
  const html = await res.text();
  assert.match(html, /<title>lmhost playground<\/title>/);
  assert.doesNotMatch(html, /@LMHOST_VERSION@/);
});

test("the pages load nothing from other origins (air-gapped hosts)", async () => {
  for (const page of ["/docs", "/playground"]) {
    const res = await fetch(server.base + page);
    assert.equal(res.status, 200);
    assert.match(res.headers.get("content-security-policy") || "", /default-src 'self'/);
    const html = await res.text();
    assert.doesNotMatch(html, /(src|href)=["']?(https?:)?\/\//i, `${page} references another origin`);
    assert.doesNotMatch(html, /@import|url\(\s*["']?https?:/i);
  }
});
