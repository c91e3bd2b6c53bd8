// The official `openai` npm package against lmhost, unchanged: chat and
// completions (streamed and not), models, error classes.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import { URL, servedModels } from './common.mjs';

const client = new OpenAI({ baseURL: `${URL}/v1`, apiKey: 'not-needed', maxRetries: 0, timeout: 60_000 });
let models = [];
let model = '';
before(async () => {
  models = await servedModels();
  model = models[0];
});

test('models.list lists every served model, models.retrieve finds one', async () => {
  const ids = [];
  for await (const m of client.models.list()) ids.push(m.id);
  for (const m of models) assert.ok(ids.includes(m), `${m} in ${ids}`);
  const one = await client.models.retrieve(model);
  assert.equal(one.id, model);
  assert.equal(one.object, 'model');
});

test('chat.completions.create (not streamed)', async () => {
  const r = await client.chat.completions.create({
    model,
    messages: [{ role: 'system', content: 'Be brief.' }, { role: 'user', content: 'Say hello.' }],
    max_tokens: 12,
    temperature: 0,
  });
  assert.equal(r.object, 'chat.completion');
  assert.equal(r.model, model);
  assert.equal(r.choices.length, 1);
  assert.equal(r.choices[0].message.role, 'assistant');
  assert.equal(typeof r.choices[0].message.content, 'string');
  assert.ok(['stop', 'length'].includes(r.choices[0].finish_reason));
  assert.ok(r.usage.prompt_tokens > 0);
  assert.ok(r.usage.completion_tokens <= 12);
  assert.equal(r.usage.total_tokens, r.usage.prompt_tokens + r.usage.completion_tokens);
});

test('chat.completions.create streamed: deltas add up to the same text as not streamed', async () => {
  const body = { model, messages: [{ role: 'user', content: 'Count to five.' }], max_tokens: 16, temperature: 0 };
  const whole = await client.chat.completions.create(body);
  const stream = await client.chat.completions.create({ ...body, stream: true, stream_options: { include_usage: true } });
  let text = '';
  let finish = null;
  let usage = null;
  let chunks = 0;
  for await (const chunk of stream) {
    chunks++;
    assert.equal(chunk.object, 'chat.completion.chunk');
    if (chunk.usage) usage = chunk.usage;
    for (const c of chunk.choices) {
      text += c.delta?.content ?? '';
      if (c.finish_reason) finish = c.finish_reason;
    }
  }
  assert.ok(chunks >= 2, 'streamed in several chunks');
  assert.equal(text, whole.choices[0].message.content);
  assert.equal(finish, whole.choices[0].finish_reason);
  assert.ok(usage, 'include_usage gives a usage chunk');
  assert.equal(usage.completion_tokens, whole.usage.completion_tokens);
});

test('chat.completions with n=2, seed and stop', async () => {
  const r = await client.chat.completions.create({
    model, messages: [{ role: 'user', content: 'Hi' }], max_tokens: 8, n: 2, seed: 42, temperature: 0.8, stop: ['\n\n'],
  });
  assert.equal(r.choices.length, 2);
  assert.deepEqual(r.choices.map((c) => c.index), [0, 1]);
});

test('completions.create (not streamed and streamed)', async () => {
  const r = await client.completions.create({ model, prompt: 'Once upon a time', max_tokens: 10, temperature: 0 });
  assert.equal(r.object, 'text_completion');
  assert.equal(typeof r.choices[0].text, 'string');
  assert.ok(r.usage.completion_tokens <= 10);
  const stream = await client.completions.create({ model, prompt: 'Once upon a time', max_tokens: 10, temperature: 0, stream: true });
  let text = '';
  for await (const chunk of stream) for (const c of chunk.choices) text += c.text;
  assert.equal(text, r.choices[0].text);
});

test('completions with logprobs', async () => {
  const r = await client.completions.create({ model, prompt: 'The', max_tokens: 4, temperature: 0, logprobs: 2 });
  const lp = r.choices[0].logprobs;
  assert.equal(lp.tokens.length, r.usage.completion_tokens);
  assert.equal(lp.token_logprobs.length, lp.tokens.length);
  for (const x of lp.token_logprobs) assert.ok(x <= 0);
});

test('an unknown model is a NotFoundError (404)', async () => {
  await assert.rejects(
    client.chat.completions.create({ model: 'no-such-model', messages: [{ role: 'user', content: 'x' }] }),
    (e) => e instanceof OpenAI.NotFoundError && e.status === 404 && /no-such-model/.test(e.message));
  await assert.rejects(client.models.retrieve('no-such-model'), (e) => e instanceof OpenAI.NotFoundError);
});

test('bad parameters are a BadRequestError (400) with a message', async () => {
  const msgs = [{ role: 'user', content: 'x' }];
  for (const extra of [{ temperature: 7 }, { max_tokens: -3 }, { top_p: 'high' }, { n: 100 }]) {
    await assert.rejects(
      client.chat.completions.create({ model, messages: msgs, ...extra }),
      (e) => e instanceof OpenAI.BadRequestError && e.status === 400 && e.message.length > 10,
      JSON.stringify(extra));
  }
  await assert.rejects(
    client.chat.completions.create({ model, messages: [{ role: 'wizard', content: 'x' }] }),
    (e) => e instanceof OpenAI.BadRequestError);
  await assert.rejects(client.completions.create({ model, prompt: 'x', max_tokens: 100_000_000 }),
    (e) => e instanceof OpenAI.BadRequestError);
});

test('every served model answers a chat', async () => {
  for (const m of models) {
    const r = await client.chat.completions.create({ model: m, messages: [{ role: 'user', content: 'Hello' }], max_tokens: 4 });
    assert.equal(r.model, m);
  }
});

// ---- embeddings (the golden bert-tiny, or demo-embed without ../shared) ----

import { embeddingModel, cosine, norm } from './common.mjs';
import { readFileSync, existsSync } from 'node:fs';

test('embeddings.create: a string and an array, float and base64', async () => {
  const em = await embeddingModel();
  const texts = ['The sky is blue.', 'Grass is green and the sky is blue.', 'The sky is blue.'];
  // The client asks for base64 by default and decodes it itself.
  const one = await client.embeddings.create({ model: em, input: texts[0] });
  assert.equal(one.object, 'list');
  assert.equal(one.model, em);
  assert.equal(one.data.length, 1);
  assert.equal(one.data[0].object, 'embedding');
  assert.equal(one.data[0].index, 0);
  const v = one.data[0].embedding;
  assert.ok(Array.isArray(v) && v.length >= 8, `a vector (${v.length})`);
  assert.ok(Math.abs(norm(v) - 1) < 1e-4, 'L2-normalised');
  assert.ok(one.usage.prompt_tokens > 0);
  assert.equal(one.usage.total_tokens, one.usage.prompt_tokens);

  const floats = await client.embeddings.create({ model: em, input: texts, encoding_format: 'float' });
  assert.equal(floats.data.length, 3);
  assert.deepEqual(floats.data.map((d) => d.index), [0, 1, 2]);
  for (const d of floats.data) assert.equal(d.embedding.length, v.length);
  assert.ok(cosine(floats.data[0].embedding, v) > 0.99999, 'float == base64 decoded by the client');
  assert.deepEqual(floats.data[2].embedding, floats.data[0].embedding, 'same text, same vector');
  assert.ok(cosine(floats.data[0].embedding, floats.data[1].embedding) < 0.99999, 'different texts differ');
  assert.ok(floats.usage.prompt_tokens > one.usage.prompt_tokens);

  // Explicit base64: the client hands the string back; it holds little-endian float32.
  const b64 = await client.embeddings.create({ model: em, input: texts.slice(0, 2), encoding_format: 'base64' });
  assert.equal(b64.data.length, 2);
  for (let i = 0; i < 2; i++) {
    assert.equal(typeof b64.data[i].embedding, 'string');
    const buf = Buffer.from(b64.data[i].embedding, 'base64');
    const f = new Float32Array(buf.buffer, buf.byteOffset, buf.byteLength / 4);
    assert.equal(f.length, v.length);
    for (let k = 0; k < f.length; k++) assert.equal(f[k], Math.fround(floats.data[i].embedding[k]), `element ${k}`);
  }

  // dimensions: truncated and re-normalised.
  const short = await client.embeddings.create({ model: em, input: texts[0], dimensions: 4, encoding_format: 'float' });
  assert.equal(short.data[0].embedding.length, 4);
  assert.ok(Math.abs(norm(short.data[0].embedding) - 1) < 1e-4);
});

test('embeddings.create matches the golden reference (bert-tiny f32)', async (t) => {
  const em = await embeddingModel();
  const dir = `${process.env.LMHOST_SHARED_DIR ?? ''}/golden/embeddings`;
  if (em !== 'bert-tiny' || !existsSync(`${dir}/bert-tiny-f32.e0.txt`)) return t.skip('golden bert-tiny not served (../shared absent)');
  for (const e of ['e0', 'e1', 'e2']) {
    const text = readFileSync(`${dir}/bert-tiny-f32.${e}.txt`, 'utf8');
    const ref = JSON.parse(readFileSync(`${dir}/bert-tiny-f32.${e}.json`, 'utf8'));
    const refv = Array.isArray(ref) ? ref : ref.data?.[0]?.embedding ?? ref.embedding;
    const r = await client.embeddings.create({ model: em, input: text });
    assert.ok(cosine(r.data[0].embedding, refv) >= 0.9999, `${e}: cosine ${cosine(r.data[0].embedding, refv)}`);
  }
});

test('embeddings.create errors: unknown model 404, bad input 400', async () => {
  const em = await embeddingModel();
  await assert.rejects(client.embeddings.create({ model: 'no-such-model', input: 'x' }), (e) => e instanceof OpenAI.NotFoundError);
  await assert.rejects(client.embeddings.create({ model: em, input: 42 }), (e) => e instanceof OpenAI.BadRequestError);
});
