// `lmhost serve` as a user runs it: flags, HOST/PORT from the environment,
// several --model NAME=PATH, usage errors (exit 2), and graceful shutdown on
// SIGTERM (the stream in flight ends with its final chunk, new connections are
// refused, exit code 0). Each test starts its own server.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import net from 'node:net';
import fs from 'node:fs';
import path from 'node:path';
import { modelFiles } from './common.mjs';

const BIN = process.env.LMHOST_BINARY;

function freePort() {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.listen(0, '127.0.0.1', () => { const p = s.address().port; s.close(() => resolve(p)); });
  });
}

// Starts `lmhost serve ARGS` and waits for /health 200; returns {proc, url, log(), exited}.
async function startServer(args, env = {}, port = null) {
  const proc = spawn(BIN, ['serve', ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let log = '';
  proc.stdout.on('data', (d) => { log += d; });
  proc.stderr.on('data', (d) => { log += d; });
  const exited = new Promise((resolve) => proc.on('exit', (code, signal) => resolve({ code, signal })));
  const url = `http://127.0.0.1:${port}`;
  for (let i = 0; i < 300; i++) {
    if (proc.exitCode !== null) throw new Error(`lmhost serve exited (${proc.exitCode}): ${log}`);
    try {
      const r = await fetch(`${url}/health`);
      if (r.status === 200) return { proc, url, log: () => log, exited };
    } catch {}
    await new Promise((r) => setTimeout(r, 100));
  }
  proc.kill('SIGKILL');
  throw new Error(`the server did not become healthy: ${log}`);
}

async function stop(s) {
  s.proc.kill('SIGTERM');
  return s.exited;
}

// The demo model file (synthesized by the first demo server) for multi-model tests without ../shared.
function demoFile() {
  return path.join(process.env.XDG_CACHE_HOME ?? '/tmp', 'lmhost', 'demo-v1.gguf');
}

test('HOST and PORT come from the environment; no model = the demo model', async () => {
  const port = await freePort();
  const s = await startServer(['-q', '-t', '1'], { HOST: '127.0.0.1', PORT: String(port) }, port);
  try {
    const m = await (await fetch(`${s.url}/v1/models`)).json();
    assert.ok(m.data.some((x) => x.id === 'demo' && x.demo === true), JSON.stringify(m));
    assert.match(s.log(), /--model/, 'the start-up log says how to serve a real GGUF file');
  } finally {
    const e = await stop(s);
    assert.equal(e.code, 0);
  }
});

test('--host/--port flags win over HOST/PORT', async () => {
  const port = await freePort();
  const other = await freePort();
  const s = await startServer(['--host', '127.0.0.1', '--port', String(port), '-q', '-t', '1'], { PORT: String(other) }, port);
  await stop(s);
});

test('several --model NAME=PATH are all listed and served', async () => {
  let files = modelFiles();
  if (!files.length) {
    assert.ok(fs.existsSync(demoFile()), 'the demo test ran first');
    files = [['one', demoFile()], ['two', demoFile()]];
  }
  const port = await freePort();
  const args = ['--port', String(port), '-q', '-t', '1', '--ctx', '512'];
  for (const [name, file] of files) args.push('--model', `${name}=${file}`);
  const s = await startServer(args, {}, port);
  try {
    const ids = (await (await fetch(`${s.url}/v1/models`)).json()).data.map((x) => x.id);
    assert.deepEqual(ids.slice().sort(), files.map((f) => f[0]).sort());
    for (const [name] of files) {
      const r = await fetch(`${s.url}/v1/completions`, {
        method: 'POST', headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ model: name, prompt: 'Hi', max_tokens: 2 }),
      });
      assert.equal(r.status, 200, name);
      assert.equal((await r.json()).model, name);
    }
    const tags = (await (await fetch(`${s.url}/api/tags`)).json()).models.map((m) => m.name);
    for (const [name] of files) assert.ok(tags.some((t) => t === name || t === `${name}:latest`), `${name} in ${tags}`);
  } finally {
    assert.equal((await stop(s)).code, 0);
  }
});

test('usage errors exit 2 with a clear message', () => {
  const unknown = spawnSync(BIN, ['serve', '--no-such-flag'], { encoding: 'utf8' });
  assert.equal(unknown.status, 2);
  assert.match(unknown.stderr + unknown.stdout, /--no-such-flag/);
  const bad = spawnSync(BIN, ['serve', '--port', 'eighty'], { encoding: 'utf8' });
  assert.equal(bad.status, 2);
  assert.match(bad.stderr + bad.stdout, /port/i);
  const missing = spawnSync(BIN, ['serve', '--model', '/no/such/file.gguf', '--port', '0'], { encoding: 'utf8', timeout: 30000 });
  assert.notEqual(missing.status, 0);
  assert.match(missing.stderr + missing.stdout, /no\/such\/file\.gguf/);
});

test('SIGTERM: the stream in flight finishes with its final chunk, new connections are refused, exit 0', async () => {
  const port = await freePort();
  const s = await startServer(['--port', String(port), '-q', '-t', '1', '--ctx', '2048', '--parallel', '1'], {}, port);
  const res = await fetch(`${s.url}/v1/completions`, {
    method: 'POST', headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'demo', prompt: 'Go', max_tokens: 2000, ignore_eos: true, stream: true }),
  });
  assert.equal(res.status, 200);
  const reader = res.body.getReader();
  const dec = new TextDecoder();
  let body = dec.decode((await reader.read()).value);
  s.proc.kill('SIGTERM');
  // The listener closes (within the signal poll interval) while the stream drains.
  let refused = false;
  for (let i = 0; i < 40 && !refused; i++) {
    await new Promise((r) => setTimeout(r, 50));
    try { await fetch(`${s.url}/health`); } catch { refused = true; }
  }
  assert.ok(refused, 'new connections after SIGTERM must be refused');
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    body += dec.decode(value);
  }
  const events = body.split('\n\n').filter((e) => e.startsWith('data: ')).map((e) => e.slice(6));
  assert.equal(events.at(-1), '[DONE]', 'the stream ended normally');
  const last = JSON.parse(events.at(-2));
  assert.equal(last.choices[0].finish_reason, 'length', 'all 2000 tokens, not cut by the shutdown');
  const e = await s.exited;
  assert.equal(e.code, 0, s.log());
});
