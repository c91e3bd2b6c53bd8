// Greedy decoding (temperature 0) through /v1/completions gives the same
// token ids as `lmhost logits --greedy` on the same model file and prompt.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { URL, modelFiles, servedModels } from './common.mjs';

const files = modelFiles();
const prompts = ['The quick brown fox', 'Hello world, this is', 'In 1492, Columbus'];
const N = 16;

test('greedy over HTTP == lmhost logits --greedy', { skip: files.length ? false : 'no golden models (../shared absent): the demo model is covered by test_api' }, async () => {
  for (const [name, path] of files) {
    for (const prompt of prompts) {
      const out = execFileSync(process.env.LMHOST_BINARY, ['logits', '-m', path, '-p', prompt, '--greedy', String(N), '--top', '1', '-t', '1'],
        { encoding: 'utf8', maxBuffer: 64 << 20 });
      const ref = JSON.parse(out);
      const r = await fetch(`${URL}/v1/completions`, {
        method: 'POST', headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ model: name, prompt, max_tokens: N, temperature: 0, return_tokens: true, ignore_eos: true }),
      });
      assert.equal(r.status, 200, await r.clone().text());
      const j = await r.json();
      const got = j.choices[0].tokens;
      assert.equal(j.usage.prompt_tokens, ref.tokens.length, `${name} "${prompt}": same prompt tokens`);
      // Compare id by id; where the reference's top-2 margin is tiny a
      // different summation order may legitimately pick the other token, and
      // everything after depends on that pick.
      let compared = 0;
      for (let i = 0; i < ref.greedy.length && i < got.length; i++) {
        const [id, margin] = ref.greedy[i];
        if (got[i] !== id && margin < 1e-3) break;
        assert.equal(got[i], id, `${name} "${prompt}" step ${i}: ${JSON.stringify(got)} vs ${JSON.stringify(ref.greedy.map((g) => g[0]))}`);
        compared++;
      }
      assert.ok(compared >= Math.min(4, ref.greedy.length), `${name} "${prompt}": only ${compared} steps compared`);
      assert.equal(got.length, N, 'ignore_eos: all steps generated');
    }
  }
});

test('return_tokens ids decode to the returned text', async () => {
  const models = await servedModels();  // chat models (the embedding model has no completions)
  for (const model of models) {
    const r = await (await fetch(`${URL}/v1/completions`, {
      method: 'POST', headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model, prompt: 'Once upon', max_tokens: 8, temperature: 0, return_tokens: true }),
    })).json();
    const d = await (await fetch(`${URL}/detokenize`, {
      method: 'POST', headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model, tokens: r.choices[0].tokens }),
    })).json();
    assert.equal(d.content, r.choices[0].text, model);
  }
});
