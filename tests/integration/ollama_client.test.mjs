// The official `ollama` npm package against lmhost: generate and chat
// (streamed and not), list, show, ps, version, errors.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { Ollama } from 'ollama';
import { URL, servedModels } from './common.mjs';

const ollama = new Ollama({ host: URL });
let models = [];
let model = '';
before(async () => {
  models = await servedModels();
  model = models[0];
});

test('generate (not streamed) has the final fields', async () => {
  const r = await ollama.generate({ model, prompt: 'Why is the sky blue?', stream: false, options: { num_predict: 8, temperature: 0 } });
  assert.equal(r.model, model);
  assert.equal(typeof r.response, 'string');
  assert.equal(r.done, true);
  assert.ok(['stop', 'length'].includes(r.done_reason));
  assert.ok(r.eval_count <= 8);
  assert.ok(r.prompt_eval_count > 0);
  for (const k of ['total_duration', 'load_duration', 'prompt_eval_duration', 'eval_duration']) assert.equal(typeof r[k], 'number', k);
  assert.ok(Array.isArray(r.context));
});

test('generate streamed: parts add up to the same response', async () => {
  const req = { model, prompt: 'Tell me a story.', options: { num_predict: 12, temperature: 0, seed: 3 } };
  const whole = await ollama.generate({ ...req, stream: false });
  let text = '';
  let last = null;
  let parts = 0;
  for await (const part of await ollama.generate({ ...req, stream: true })) {
    parts++;
    text += part.response;
    last = part;
  }
  assert.ok(parts >= 2);
  assert.equal(last.done, true);
  assert.equal(text, whole.response);
  assert.equal(last.eval_count, whole.eval_count);
});

test('generate with system, raw and format json is accepted', async () => {
  const r = await ollama.generate({ model, prompt: 'x', system: 'Be terse.', stream: false, keep_alive: '5m', options: { num_predict: 2 } });
  assert.equal(r.done, true);
  const raw = await ollama.generate({ model, prompt: 'x', raw: true, stream: false, options: { num_predict: 2 } });
  assert.equal(raw.done, true);
});

test('chat (not streamed and streamed)', async () => {
  const messages = [{ role: 'system', content: 'You are terse.' }, { role: 'user', content: 'Hi there' }];
  const r = await ollama.chat({ model, messages, stream: false, options: { num_predict: 8, temperature: 0 } });
  assert.equal(r.message.role, 'assistant');
  assert.equal(typeof r.message.content, 'string');
  assert.equal(r.done, true);
  let text = '';
  let last = null;
  for await (const part of await ollama.chat({ model, messages, stream: true, options: { num_predict: 8, temperature: 0 } })) {
    text += part.message.content;
    last = part;
  }
  assert.equal(last.done, true);
  assert.equal(text, r.message.content);
});

test('list, show, ps, version', async () => {
  const l = await ollama.list();
  const names = l.models.map((m) => m.name);
  for (const m of models) assert.ok(names.some((n) => n === m || n === `${m}:latest`), `${m} in ${names}`);
  assert.equal(l.models[0].details.format, 'gguf');
  const s = await ollama.show({ model });
  assert.ok(s.model_info, 'model_info');
  assert.equal(typeof s.model_info['general.architecture'], 'string');
  assert.ok(s.details);
  const ps = await ollama.ps();
  assert.ok(ps.models.some((m) => m.name === model || m.name === `${model}:latest`));
  const v = await ollama.version();
  assert.match(v.version, /^\d+\.\d+/);
});

test('an unknown model is a ResponseError with status 404', async () => {
  await assert.rejects(ollama.generate({ model: 'no-such-model', prompt: 'x', stream: false }),
    (e) => e.name === 'ResponseError' && e.status_code === 404 && /no-such-model/.test(e.error));
  await assert.rejects(ollama.show({ model: 'no-such-model' }), (e) => e.status_code === 404);
  await assert.rejects(ollama.chat({ model: 'no-such-model', messages: [{ role: 'user', content: 'x' }], stream: true })
    .then(async (it) => { for await (const _ of it); }),
    (e) => e.status_code === 404);
});

test('bad options are a ResponseError with status 400', async () => {
  await assert.rejects(ollama.generate({ model, prompt: 'x', stream: false, options: { num_predict: 'many' } }),
    (e) => e.status_code === 400 && e.error.length > 5);
});

// ---- embeddings (the golden bert-tiny, or demo-embed without ../shared) ----

import { embeddingModel, cosine, norm } from './common.mjs';

test('embed: a string and a list; legacy embeddings(); truncate', async () => {
  const em = await embeddingModel();
  const one = await ollama.embed({ model: em, input: 'The sky is blue.' });
  assert.equal(one.model, em);
  assert.equal(one.embeddings.length, 1);
  const v = one.embeddings[0];
  assert.ok(v.length >= 8);
  assert.ok(Math.abs(norm(v) - 1) < 1e-4, 'L2-normalised');
  assert.ok(one.prompt_eval_count > 0);
  assert.equal(typeof one.total_duration, 'number');

  const many = await ollama.embed({ model: em, input: ['The sky is blue.', 'Grass is green.'] });
  assert.equal(many.embeddings.length, 2);
  assert.ok(cosine(many.embeddings[0], v) > 0.99999, 'same text, same vector');
  assert.ok(cosine(many.embeddings[1], v) < 0.99999);

  const legacy = await ollama.embeddings({ model: em, prompt: 'The sky is blue.' });
  assert.ok(cosine(legacy.embedding, v) > 0.99999, 'legacy /api/embeddings: the same vector');

  // Longer than the context: truncated by default, a 400 with truncate: false.
  const long = 'word '.repeat(5000);
  const cut = await ollama.embed({ model: em, input: long });
  assert.equal(cut.embeddings.length, 1);
  await assert.rejects(ollama.embed({ model: em, input: long, truncate: false }),
    (e) => e.name === 'ResponseError' && e.status_code === 400);
  await assert.rejects(ollama.embed({ model: 'no-such-model', input: 'x' }), (e) => e.name === 'ResponseError' && e.status_code === 404);
});
