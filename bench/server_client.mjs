// Load generator for an OpenAI-compatible server: C concurrent clients, each
// sending R streaming /v1/chat/completions requests one after another
// (max_tokens N, ignore_eos so every request generates N tokens). Prints one
// JSON object: aggregate generated tokens/s over the wall time, time to first
// token p50/p99 (ms), per-stream decode tokens/s, request count and errors.
//
//   node bench/server_client.mjs --url http://127.0.0.1:8080 [--model M] [--clients 8]
//        [--requests 4] [--max-tokens 128] [--prompt-words 64] [--logprobs]
//
// Sampling is sent explicitly (temperature 0.8, top_k 40, top_p 0.95, min_p
// 0.05: llama.cpp's defaults) so two servers do the same work. A token is a
// chunk whose delta carries content (not the opening role chunk) or logprobs;
// --logprobs asks for logprobs (no top alternatives) for servers that send no
// chunk for a token whose text is empty (lmhost; synthesized vocabularies are
// mostly such tokens). The generated count comes from the final usage.
const args = Object.fromEntries(
  process.argv.slice(2).reduce((acc, a, i, all) => (a.startsWith("--") && all[i + 1] !== undefined && !all[i + 1].startsWith("--") ? [...acc, [a.slice(2), all[i + 1]]] : acc), []));
const url = (args.url || "http://127.0.0.1:8080").replace(/\/$/, "");
const model = args.model || "bench";
const clients = Number(args.clients || 8);
const requests = Number(args.requests || 4);
const maxTokens = Number(args["max-tokens"] || 128);
const promptWords = Number(args["prompt-words"] || 64);
const logprobs = process.argv.includes("--logprobs");

const words = "the of and to in is was for on as with by at from his her it he she they we you are be this have had".split(" ");
function prompt(c, r) {
  const out = [];
  for (let i = 0; i < promptWords; i++) out.push(words[(c * 131 + r * 17 + i * 7) % words.length]);
  return `Request ${c}.${r}: continue this text. ` + out.join(" ");
}

async function one(c, r) {
  const t0 = performance.now();
  const res = await fetch(`${url}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({
      model, stream: true, max_tokens: maxTokens, ignore_eos: true, seed: c * 1000 + r,
      temperature: 0.8, top_k: 40, top_p: 0.95, min_p: 0.05, ...(logprobs ? { logprobs: true } : {}),
      stream_options: { include_usage: true },
      messages: [{ role: "user", content: prompt(c, r) }],
    }),
  });
  if (!res.ok) throw new Error(`HTTP ${res.status}: ${await res.text()}`);
  const reader = res.body.getReader();
  const dec = new TextDecoder();
  let buf = "", chunks = 0, usage = null, ttft = null;
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buf += dec.decode(value, { stream: true });
    let nl;
    while ((nl = buf.indexOf("\n")) >= 0) {
      const line = buf.slice(0, nl).trim();
      buf = buf.slice(nl + 1);
      if (!line.startsWith("data:")) continue;
      const data = line.slice(5).trim();
      if (data === "[DONE]") continue;
      const ev = JSON.parse(data);
      if (ev.usage && ev.usage.completion_tokens) usage = ev.usage.completion_tokens;
      const ch = ev.choices && ev.choices[0];
      const d = ch && ch.delta;
      const isToken = (d && d.content !== undefined && d.role === undefined) ||
                      (ch && ch.logprobs && ch.logprobs.content && ch.logprobs.content.length > 0);
      if (isToken) {
        if (ttft === null) ttft = performance.now() - t0;
        chunks++;
      }
    }
  }
  const t1 = performance.now();
  const tokens = usage || chunks;
  return { ttft: ttft ?? t1 - t0, tokens, decode_s: (t1 - t0 - (ttft ?? 0)) / 1000 };
}

const results = [];
let errors = 0;
const start = performance.now();
await Promise.all(Array.from({ length: clients }, async (_, c) => {
  for (let r = 0; r < requests; r++) {
    try {
      results.push(await one(c, r));
    } catch (e) {
      errors++;
      console.error(`client ${c} request ${r}: ${e.message}`);
    }
  }
}));
const wall = (performance.now() - start) / 1000;
const q = (v, p) => {
  if (!v.length) return null;
  const s = [...v].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil(p * s.length) - 1)];
};
const tokens = results.reduce((a, r) => a + r.tokens, 0);
const ttfts = results.map((r) => r.ttft);
const perStream = results.filter((r) => r.decode_s > 0).map((r) => (r.tokens - 1) / r.decode_s);
console.log(JSON.stringify({
  url, clients, requests: results.length, errors, max_tokens: maxTokens, wall_s: +wall.toFixed(3),
  generated_tokens: tokens, tokens_per_s: +(tokens / wall).toFixed(2),
  ttft_p50_ms: +q(ttfts, 0.5)?.toFixed(1), ttft_p99_ms: +q(ttfts, 0.99)?.toFixed(1),
  stream_tokens_per_s_p50: +q(perStream, 0.5)?.toFixed(2),
}));
