// Shared by the integration tests: where the server is and what it serves.
export const URL = process.env.LMHOST_URL ?? 'http://127.0.0.1:8080';

// Names of the embedding models (their /health entry says embedding: true).
async function embeddingNames() {
  const h = await (await fetch(`${URL}/health`)).json();
  return new Set(h.models.filter((m) => m.embedding).map((m) => m.name));
}

// Chat/completion model names in the order the server lists them (the first
// answers requests that name none); embedding models left out.
export async function servedModels() {
  const r = await fetch(`${URL}/v1/models`);
  const j = await r.json();
  const emb = await embeddingNames();
  return j.data.map((m) => m.id).filter((id) => !emb.has(id));
}

// The embedding model served (golden bert-tiny, or demo-embed).
export async function embeddingModel() {
  const r = await fetch(`${URL}/v1/models`);
  const j = await r.json();
  const emb = await embeddingNames();
  const m = j.data.map((x) => x.id).find((id) => emb.has(id));
  if (!m) throw new Error('the server serves no embedding model');
  return m;
}

// Cosine similarity and L2 norm of number arrays.
export function cosine(a, b) {
  let d = 0, na = 0, nb = 0;
  for (let i = 0; i < a.length; i++) { d += a[i] * b[i]; na += a[i] * a[i]; nb += b[i] * b[i]; }
  return d / Math.sqrt(na * nb);
}
export function norm(a) { return Math.sqrt(a.reduce((s, x) => s + x * x, 0)); }

// NAME=PATH pairs of the golden models the server was started with ("" = demo).
export function modelFiles() {
  const s = process.env.LMHOST_MODEL_FILES ?? '';
  return s ? s.split(',').map((kv) => { const i = kv.indexOf('='); return [kv.slice(0, i), kv.slice(i + 1)]; }) : [];
}
