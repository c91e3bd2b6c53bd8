// Shared by the integration tests: where the server is and what it serves.
export const URL = process.env.LMHOST_URL ?? 'http://127.0.0.1:8080';

// Model names in the order the server lists them (the first answers requests
// that name none).
export async function servedModels() {
  const r = await fetch(`${URL}/v1/models`);
  const j = await r.json();
  return j.data.map((m) => m.id);
}

// NAME=PATH pairs of the golden models the server was started with ("" = demo).
export function modelFiles() {
  const s = process.env.LMHOST_MODEL_FILES ?? '';
  return s ? s.split(',').map((kv) => { const i = kv.indexOf('='); return [kv.slice(0, i), kv.slice(i + 1)]; }) : [];
}
