// Tool use through the chat endpoints: `tools` and the messages' tool fields
// (tool_calls, tool_call_id, name) reach the model's chat template in the
// client's key order, content parts are joined, and the prompt the model sees
// is exactly what the template renders (Qwen 2.5's tool-use template on a
// copy of the demo model).
#include <gtest/gtest.h>

#include <filesystem>
#include <nlohmann/json.hpp>
#include <unistd.h>

#include "api/api.h"
#include "api/common.h"
#include "gguf/gguf.h"
#include "model/synth.h"
#include "unit/http_test_client.h"

using namespace lmhost;
using namespace lmhost::testing;
using json = nlohmann::json;
using ojson = nlohmann::ordered_json;

namespace {

// Qwen/Qwen2.5-7B-Instruct's tokenizer.chat_template (as in ../shared/golden/templates).
const char* kQwen25 = R"TPL({%- if tools %}
    {{- '<|im_start|>system\n' }}
    {%- if messages[0]['role'] == 'system' %}
        {{- messages[0]['content'] }}
    {%- else %}
        {{- 'You are Qwen, created by Alibaba Cloud. You are a helpful assistant.' }}
    {%- endif %}
    {{- "\n\n# Tools\n\nYou may call one or more functions to assist with the user query.\n\nYou are provided with function signatures within <tools></tools> XML tags:\n<tools>" }}
    {%- for tool in tools %}
        {{- "\n" }}
        {{- tool | tojson }}
    {%- endfor %}
    {{- "\n</tools>\n\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": <function-name>, \"arguments\": <args-json-object>}\n</tool_call><|im_end|>\n" }}
{%- else %}
    {%- if messages[0]['role'] == 'system' %}
        {{- '<|im_start|>system\n' + messages[0]['content'] + '<|im_end|>\n' }}
    {%- else %}
        {{- '<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n' }}
    {%- endif %}
{%- endif %}
{%- for message in messages %}
    {%- if (message.role == "user") or (message.role == "system" and not loop.first) or (message.role == "assistant" and not message.tool_calls) %}
        {{- '<|im_start|>' + message.role + '\n' + message.content + '<|im_end|>' + '\n' }}
    {%- elif message.role == "assistant" %}
        {{- '<|im_start|>' + message.role }}
        {%- if message.content %}
            {{- '\n' + message.content }}
        {%- endif %}
        {%- for tool_call in message.tool_calls %}
            {%- if tool_call.function is defined %}
                {%- set tool_call = tool_call.function %}
            {%- endif %}
            {{- '\n<tool_call>\n{"name": "' }}
            {{- tool_call.name }}
            {{- '", "arguments": ' }}
            {{- tool_call.arguments | tojson }}
            {{- '}\n</tool_call>' }}
        {%- endfor %}
        {{- '<|im_end|>\n' }}
    {%- elif message.role == "tool" %}
        {%- if (loop.index0 == 0) or (messages[loop.index0 - 1].role != "tool") %}
            {{- '<|im_start|>user' }}
        {%- endif %}
        {{- '\n<tool_response>\n' }}
        {{- message.content }}
        {{- '\n</tool_response>' }}
        {%- if loop.last or (messages[loop.index0 + 1].role != "tool") %}
            {{- '<|im_end|>\n' }}
        {%- endif %}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\n' }}
{%- endif %}
)TPL";

// Prints every message's keys in order, then every tool's function keys.
const char* kKeys =
    "{% for m in messages %}{% for k in m %}{{ k }} {% endfor %}|{% endfor %}"
    "{% for t in tools %}{% for k in t.function %}{{ k }} {% endfor %}{% endfor %}";

std::string model_with_template(const std::string& name, const std::string& tpl) {
  const std::string base = (std::filesystem::temp_directory_path() /
                            ("lmhost-tools-test-" + std::to_string(getpid()) + ".gguf")).string();
  if (!std::filesystem::exists(base)) {
    auto spec = model::synth_shape("demo");
    spec->type = "Q8_0";
    model::synth_model(*spec, base, 1);
  }
  const std::string path = (std::filesystem::temp_directory_path() /
                            ("lmhost-tools-test-" + std::to_string(getpid()) + "-" + name + ".gguf")).string();
  auto f = gguf::File::open(base);
  gguf::Writer w;
  for (const auto& v : f->metadata()) {
    if (v.key == "tokenizer.chat_template") continue;
    const size_t hdr = v.is_string() ? 8 : v.is_array() ? 12 : 0;  // length / element type + count
    w.set_raw(v.key, v.type(), std::vector<uint8_t>(v.data_ - hdr, v.data_ + v.size_));
  }
  w.set_string("tokenizer.chat_template", tpl);
  for (const auto& t : f->tensors()) w.add_tensor(t.name, t.type, t.dims, std::vector<uint8_t>(t.data, t.data + t.nbytes));
  w.write(path);
  return path;
}

const char* kTools = R"([{"type": "function", "function": {"name": "get_weather", "description": "Current weather",
  "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}])";

// What python3-jinja2 renders for this conversation with Qwen 2.5's template.
const char* kExpected =
    "<|im_start|>system\nYou are a weather bot.\n\n# Tools\n\nYou may call one or more functions to assist with the user "
    "query.\n\nYou are provided with function signatures within <tools></tools> XML tags:\n<tools>\n{\"function\": "
    "{\"description\": \"Current weather\", \"name\": \"get_weather\", \"parameters\": {\"properties\": {\"city\": "
    "{\"type\": \"string\"}}, \"required\": [\"city\"], \"type\": \"object\"}}, \"type\": \"function\"}\n</tools>\n\nFor "
    "each function call, return a json object with function name and arguments within <tool_call></tool_call> XML "
    "tags:\n<tool_call>\n{\"name\": <function-name>, \"arguments\": <args-json-object>}\n</tool_call><|im_end|>\n"
    "<|im_start|>user\nWeather in Paris?<|im_end|>\n<|im_start|>assistant\n<tool_call>\n{\"name\": \"get_weather\", "
    "\"arguments\": {\"city\": \"Paris\"}}\n</tool_call><|im_end|>\n<|im_start|>user\n<tool_response>\n{\"temp_c\": "
    "21}\n</tool_response><|im_end|>\n<|im_start|>assistant\n";

// OpenAI shape: content parts, null content beside tool_calls, arguments as a JSON string.
const char* kOpenAIMessages = R"([
  {"role": "system", "content": "You are a weather bot."},
  {"role": "user", "content": [{"type": "text", "text": "Weather in "}, {"type": "text", "text": "Paris?"}]},
  {"role": "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function",
    "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}}]},
  {"role": "tool", "tool_call_id": "call_1", "content": "{\"temp_c\": 21}"}])";

// Ollama shape: arguments as an object, no ids.
const char* kOllamaMessages = R"([
  {"role": "system", "content": "You are a weather bot."},
  {"role": "user", "content": "Weather in Paris?"},
  {"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]},
  {"role": "tool", "content": "{\"temp_c\": 21}"}])";

struct ToolServer {
  std::string qwen = model_with_template("qwen25", kQwen25);
  std::string keys = model_with_template("keys", kKeys);
  std::shared_ptr<ModelPool> pool;
  std::shared_ptr<server::Router> router = std::make_shared<server::Router>();
  std::unique_ptr<server::HttpServer> http;
  ToolServer() {
    EngineOptions eo;
    eo.n_parallel = 1;
    eo.n_ctx = 1024;
    eo.n_threads = 1;
    pool = std::make_shared<ModelPool>(eo);
    for (const auto& [name, path] : {std::pair{"qwen", qwen}, std::pair{"keys", keys}}) {
      ModelConfig c;
      c.name = name;
      c.path = path;
      pool->add(std::move(c));
    }
    api::register_routes(*router, pool);
    server::ServerOptions so;
    so.port = 0;
    so.log_requests = false;
    http = std::make_unique<server::HttpServer>(so, router);
    http->start();
    pool->load_async();
    pool->wait_loaded();
  }
  ~ToolServer() {
    http->stop();
    pool->stop();
    std::filesystem::remove(qwen);
    std::filesystem::remove(keys);
    std::filesystem::remove(std::filesystem::temp_directory_path() / ("lmhost-tools-test-" + std::to_string(getpid()) + ".gguf"));
  }
  ClientResponse post(const std::string& path, const std::string& body) { return HttpClient(http->port()).request("POST", path, body); }
};

}  // namespace

TEST(ApiTools, QwenToolConversationRendersAsJinja2Does) {
  ToolServer s;
  auto& m = *s.pool->find("qwen");
  const ojson tools = ojson::parse(kTools);
  EXPECT_EQ(api::render_chat(m, ojson::parse(kOpenAIMessages), &tools), kExpected);
  EXPECT_EQ(api::render_chat(m, ojson::parse(kOllamaMessages), &tools), kExpected);
  const int n_expected = static_cast<int>(api::tokenize_prompt(m, kExpected).size());
  // Without the tools the system turn is the plain one: a different prompt.
  EXPECT_NE(api::render_chat(m, ojson::parse(kOpenAIMessages), nullptr), kExpected);

  // Over HTTP: the prompt the model saw has exactly the rendered prompt's tokens.
  const std::string chat = std::string(R"({"model": "qwen", "max_tokens": 2, "temperature": 0, "tools": )") + kTools +
                           R"(, "messages": )" + kOpenAIMessages + "}";
  auto r = s.post("/v1/chat/completions", chat);
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(json::parse(r.body)["usage"]["prompt_tokens"], n_expected) << r.body;
  const std::string stream = std::string(R"({"model": "qwen", "max_tokens": 2, "stream": true, "stream_options": {"include_usage": true}, "tools": )") +
                             kTools + R"(, "messages": )" + kOpenAIMessages + "}";
  auto rs = s.post("/v1/chat/completions", stream);
  ASSERT_EQ(rs.status, 200) << rs.body;
  const size_t u = rs.body.find("\"prompt_tokens\":");
  ASSERT_NE(u, std::string::npos) << rs.body;
  EXPECT_EQ(std::stoi(rs.body.substr(u + 16)), n_expected) << rs.body;

  const std::string ochat = std::string(R"({"model": "qwen", "stream": false, "options": {"num_predict": 2}, "tools": )") +
                            kTools + R"(, "messages": )" + kOllamaMessages + "}";
  auto o = s.post("/api/chat", ochat);
  ASSERT_EQ(o.status, 200) << o.body;
  EXPECT_EQ(json::parse(o.body)["prompt_eval_count"], n_expected) << o.body;

  // Its template renders tools: /api/show says so (Ollama clients check before sending tools).
  auto show = s.post("/api/show", R"({"model": "qwen"})");
  ASSERT_EQ(show.status, 200) << show.body;
  EXPECT_EQ(json::parse(show.body)["capabilities"], json::parse(R"(["completion", "tools"])"));

  // A bad tools value is the client's 400.
  auto bad = s.post("/v1/chat/completions", R"({"model": "qwen", "tools": "get_weather", "messages": [{"role": "user", "content": "x"}]})");
  EXPECT_EQ(bad.status, 400) << bad.body;
  auto badcall = s.post("/v1/chat/completions",
                        R"({"model": "qwen", "messages": [{"role": "assistant", "content": null, "tool_calls": "x"}]})");
  EXPECT_EQ(badcall.status, 400) << badcall.body;
}

TEST(ApiTools, MessageKeysKeepTheClientsOrder) {
  ToolServer s;
  auto& m = *s.pool->find("keys");
  const ojson msgs = ojson::parse(R"([{"content": "hi", "role": "user", "name": "ann"},
    {"role": "assistant", "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}], "content": null},
    {"tool_call_id": "c", "role": "tool", "content": "1"}])");
  const ojson tools = ojson::parse(R"([{"type": "function", "function": {"parameters": {}, "name": "f", "description": "d"}}])");
  EXPECT_EQ(api::render_chat(m, msgs, &tools),
            "content role name |role tool_calls content |tool_call_id role content |parameters name description ");
}
