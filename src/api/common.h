// Shared pieces of the API adapters (internal to src/api/).
#pragma once

#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "api/api.h"
#include "api/tool_calls.h"
#include "engine/request.h"
#include "util/error.h"
#include "util/rfc3339.h"

namespace lmhost::api {

using json = nlohmann::json;
using ojson = nlohmann::ordered_json;  // keeps the client's key order (chat template context)
using server::HttpRequest;
using server::HttpResponse;

struct Ctx {
  std::shared_ptr<ModelPool> pool;
  ApiOptions opts;
};

// JSON text that never throws on invalid UTF-8 (partial tokens are replaced).
std::string dump(const json& j);

// The request body as a JSON object; Error(400) with the parser's message otherwise.
json parse_body(const HttpRequest& req);

// Typed optional fields: nullopt when absent or null, Error(400) naming the
// field when present with the wrong type or out of [lo, hi].
std::optional<std::string> opt_string(const json& j, const char* key);
std::optional<bool> opt_bool(const json& j, const char* key);
std::optional<double> opt_number(const json& j, const char* key, double lo, double hi);
std::optional<int64_t> opt_int(const json& j, const char* key, int64_t lo, int64_t hi);
// "stop": a string or a list of strings.
std::vector<std::string> opt_stop(const json& j, const char* key);

// The model named in the request: Error 404 when unknown, 503 while it loads,
// 503 when it failed to load.
std::shared_ptr<ServedModel> resolve_model(Ctx& ctx, const std::string& name);

// The request body as an ordered JSON object (the client's key order), same
// errors as parse_body.
ojson parse_body_ordered(const HttpRequest& req);

// Renders chat messages ([{role, content}], content may be a list of text
// parts, joined) with the model's chat template, falling back to ChatML
// (logged once per model) when it has none or it fails. Messages keep their
// other fields (tool_calls with string arguments parsed into objects,
// tool_call_id, name) in the client's order; `tools` (OpenAI/Ollama tool
// definitions, may be null) becomes the template's `tools` variable.
std::string render_chat(ServedModel& m, const ojson& messages, const ojson* tools, bool add_generation_prompt = true);
std::string render_chat(ServedModel& m, const json& messages, bool add_generation_prompt = true);
// Tokenizes a prompt: special tokens added as the model says (no double BOS),
// special-token text parsed.
std::vector<Token> tokenize_prompt(const ServedModel& m, const std::string& text, bool add_special = true);

// Result of one choice of a finished generation.
struct ChoiceResult {
  std::string text;
  std::vector<TokenEvent> tokens;  // token events (with logprobs when requested)
  FinishReason finish = FinishReason::None;
  std::string error;
  GenerateStats stats;
};

// Submits n copies (seeds seed, seed+1, ...) of the request; on failure
// cancels what was submitted and rethrows.
std::vector<std::shared_ptr<RequestHandle>> submit_n(ServedModel& m, const GenerateRequest& req, int n);
SteadyClock::time_point deadline_from(const Ctx& ctx);
uint64_t random_seed();

// The running request's info (nullptr outside a handler).
std::shared_ptr<server::RequestInfo> current_info();
// Adds a finished generation's usage and timings to the request's info.
void record_done(server::RequestInfo* info, const GenerateStats& st);

// A chunked body fed by token events of several handles.
class GenStream : public server::StreamBody {
 public:
  // on_event(choice, event) returns the bytes to send for it ("" = nothing);
  // on_end() the bytes after every choice is done.
  using OnEvent = std::function<std::string(int, const TokenEvent&)>;
  using OnEnd = std::function<std::string()>;
  GenStream(std::vector<std::shared_ptr<RequestHandle>> handles, std::string prefix, OnEvent on_event, OnEnd on_end);
  void set_notify(std::function<void()> notify) override;
  void cancel() override;
  bool poll(std::string& out) override;

 private:
  std::vector<std::shared_ptr<RequestHandle>> handles_;
  std::vector<bool> done_;
  std::string prefix_;
  OnEvent on_event_;
  OnEnd on_end_;
  bool ended_ = false;
  std::vector<TokenEvent> scratch_;
  std::shared_ptr<server::RequestInfo> info_ = current_info();  // usage and timings for logs/metrics
};

// A whole response built once every handle is done.
class GenDeferred : public server::DeferredResponse {
 public:
  using Finish = std::function<HttpResponse(std::vector<ChoiceResult>&)>;
  GenDeferred(std::vector<std::shared_ptr<RequestHandle>> handles, bool keep_tokens, Finish finish);
  void set_notify(std::function<void()> notify) override;
  void cancel() override;
  std::optional<HttpResponse> poll() override;

 private:
  std::vector<std::shared_ptr<RequestHandle>> handles_;
  std::vector<ChoiceResult> results_;
  std::vector<bool> done_;
  bool keep_tokens_;
  Finish finish_;
  std::vector<TokenEvent> scratch_;
  std::shared_ptr<server::RequestInfo> info_ = current_info();  // usage and timings for logs/metrics
};

// Tool calls in chat output (api/tool_calls.h): on when the request declared
// tools (and OpenAI tool_choice is not "none").
struct ToolMode {
  bool on = false;
  ToolFormat format = ToolFormat::Json;
  std::vector<std::string> names;  // declared function names
  bool parallel = true;            // OpenAI parallel_tool_calls: false keeps the first call only
};
// The tool mode of a chat request for model m: `tools` (may be null) and
// OpenAI's tool_choice / parallel_tool_calls (Error 400 when malformed).
ToolMode tool_mode_of(ServedModel& m, const ojson* tools, const json& body);
// The same for a known format.
ToolMode tool_mode_of(ToolFormat format, const ojson* tools, const json& body);

// Chat responses over submitted generations (api/openai.cpp, api/ollama.cpp),
// separate from the handlers so tests can shape scripted generations.
struct OpenAIChatShape {
  std::string id;
  int64_t created = 0;
  std::string model;
  bool stream = false;
  bool include_usage = false;
  bool logprobs = false;
  ToolMode tools;
};
HttpResponse openai_chat_response(std::vector<std::shared_ptr<RequestHandle>> hs, OpenAIChatShape shape);
HttpResponse ollama_chat_response(std::shared_ptr<RequestHandle> h, const std::string& model, bool stream,
                                  ToolMode tools);

// Error responses in each API's shape (with Retry-After on 503).
HttpResponse openai_error(int status, const std::string& message, const char* type = nullptr,
                          const char* param = nullptr);
HttpResponse ollama_error(int status, const std::string& message);

// RFC 3339 UTC with nanoseconds, as Ollama writes it.
using lmhost::rfc3339;
using lmhost::rfc3339_now;
int64_t unix_now();

void register_openai(server::Router& r, std::shared_ptr<Ctx> ctx);
void register_ollama(server::Router& r, std::shared_ptr<Ctx> ctx);
void register_native(server::Router& r, std::shared_ptr<Ctx> ctx);
// Embeddings (api/embeddings.cpp): /v1/embeddings, /api/embed, /api/embeddings, /api/v1/cache.
void register_embeddings(server::Router& r, std::shared_ptr<Ctx> ctx);
json embedding_cache_health(const Ctx& ctx);  // null without a cache

}  // namespace lmhost::api
