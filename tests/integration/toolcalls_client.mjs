// The official `openai` and `ollama` npm packages reading tool calls from a
// server whose model writes the last user message verbatim (the scripted
// test server of tests/unit/api_toolcall_http_test.cpp, which runs this as
// `node toolcalls_client.mjs PORT` and expects exit 0 and "ok 4 checks").
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import { Ollama } from 'ollama';

const port = process.argv[2];
const openai = new OpenAI({ baseURL: `http://127.0.0.1:${port}/v1`, apiKey: 'x', maxRetries: 0 });
const ollama = new Ollama({ host: `http://127.0.0.1:${port}` });
const tools = [{ type: 'function', function: { name: 'get_weather', parameters: { type: 'object', properties: { city: { type: 'string' } } } } }];
const script = 'Let me look.\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>';
const messages = [{ role: 'user', content: script }];
let checks = 0;

// Not streamed.
const r = await openai.chat.completions.create({ model: 'hermes', messages, tools });
assert.equal(r.choices[0].finish_reason, 'tool_calls');
assert.equal(r.choices[0].message.content, 'Let me look.');
const call = r.choices[0].message.tool_calls[0];
assert.match(call.id, /^call_[A-Za-z0-9]{24}$/);
assert.equal(call.type, 'function');
assert.equal(call.function.name, 'get_weather');
assert.deepEqual(JSON.parse(call.function.arguments), { city: 'Paris' });
checks++;

// Streamed, assembled by the SDK's own stream helper.
const stream = openai.chat.completions.stream({ model: 'hermes', messages, tools });
const final = await stream.finalChatCompletion();
assert.equal(final.choices[0].finish_reason, 'tool_calls');
assert.equal(final.choices[0].message.content, 'Let me look.');
assert.equal(final.choices[0].message.tool_calls.length, 1);
assert.equal(final.choices[0].message.tool_calls[0].function.name, 'get_weather');
assert.deepEqual(JSON.parse(final.choices[0].message.tool_calls[0].function.arguments), { city: 'Paris' });
checks++;

// Ollama, not streamed and streamed.
const o = await ollama.chat({ model: 'hermes', messages, tools, stream: false });
assert.deepEqual(o.message.tool_calls, [{ function: { name: 'get_weather', arguments: { city: 'Paris' } } }]);
assert.equal(o.message.content, 'Let me look.');
checks++;
let streamedCalls = [];
let content = '';
for await (const part of await ollama.chat({ model: 'hermes', messages, tools, stream: true })) {
  content += part.message.content;
  if (part.message.tool_calls) streamedCalls = streamedCalls.concat(part.message.tool_calls);
}
assert.equal(content, 'Let me look.');
assert.deepEqual(streamedCalls, [{ function: { name: 'get_weather', arguments: { city: 'Paris' } } }]);
checks++;
console.log(`ok ${checks} checks`);
