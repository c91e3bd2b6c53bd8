// Ollama-compatible endpoints: /api/generate, /api/chat, /api/tags,
// /api/show, /api/ps, /api/version, GET|HEAD /.
#include <cstdio>
#include <filesystem>

#include "api/common.h"
#include "api/upstream_proxy.h"
#include "gguf/gguf.h"

namespace lmhost::api {
namespace {

struct OllamaParams {
  GenerateRequest gen;
  bool stream = true;
};

OllamaParams read_params(const json& b, ServedModel& m) {
  OllamaParams p;
  p.stream = opt_bool(b, "stream").value_or(true);
  json opts = json::object();
  if (auto it = b.find("options"); it != b.end() && !it->is_null()) {
    if (!it->is_object()) throw Error("'options' must be an object", 400);
    opts = *it;
  }
  SamplingParams& s = p.gen.sampling;
  s.temperature = static_cast<float>(opt_number(opts, "temperature", 0, 100).value_or(0.8));
  s.top_k = static_cast<int>(opt_int(opts, "top_k", 0, 1 << 20).value_or(40));
  s.top_p = static_cast<float>(opt_number(opts, "top_p", 0, 1).value_or(0.9));
  s.min_p = static_cast<float>(opt_number(opts, "min_p", 0, 1).value_or(0.0));
  s.repeat_penalty = static_cast<float>(opt_number(opts, "repeat_penalty", 0, 100).value_or(1.1));
  s.repeat_last_n = static_cast<int>(opt_int(opts, "repeat_last_n", -1, 1 << 20).value_or(64));
  s.presence_penalty = static_cast<float>(opt_number(opts, "presence_penalty", -100, 100).value_or(0.0));
  s.frequency_penalty = static_cast<float>(opt_number(opts, "frequency_penalty", -100, 100).value_or(0.0));
  auto seed = opt_int(opts, "seed", INT64_MIN, INT64_MAX);
  s.seed = seed && *seed >= 0 ? static_cast<uint64_t>(*seed) : random_seed();
  // num_predict: -1 (default) until the context is full, -2 likewise.
  const int64_t np = opt_int(opts, "num_predict", -2, 100'000'000).value_or(-1);
  const int n_ctx = m.scheduler().n_ctx_per_seq();
  p.gen.max_tokens = np < 0 ? -1 : static_cast<int>(std::min<int64_t>(np, n_ctx));
  p.gen.stop = opt_stop(opts, "stop");
  (void)opt_int(opts, "num_ctx", 1, 10'000'000);  // accepted; the context is set at start-up (--ctx)
  if (auto f = b.find("format"); f != b.end() && !f->is_null()) {
    if (!(f->is_string() || f->is_object())) throw Error("'format' must be \"json\" or a JSON schema", 400);
    if (f->is_string() && !f->get<std::string>().empty() && f->get<std::string>() != "json")
      throw Error("invalid 'format': expected \"json\" or a JSON schema object", 400);
    // "json" or a schema: the output is constrained to one valid JSON object.
    // A schema is NOT enforced beyond that (keys, types, required fields are
    // up to the model and the prompt).
    p.gen.json_object = f->is_object() || f->get<std::string>() == "json";
  }
  return p;
}

json final_fields(const GenerateStats& st, const char* reason) {
  auto ns = [](double ms) { return static_cast<int64_t>(ms * 1e6); };
  return {{"done", true},
          {"done_reason", reason},
          {"total_duration", ns(st.total_ms)},
          {"load_duration", ns(st.queue_ms)},
          {"prompt_eval_count", st.prompt_tokens},
          {"prompt_eval_duration", ns(st.prompt_ms)},
          {"prompt_cached_count", st.cached_tokens},
          {"eval_count", st.completion_tokens},
          {"eval_duration", ns(st.generate_ms)}};
}

const char* ollama_reason(FinishReason r) {
  switch (r) {
    case FinishReason::Length: return "length";
    case FinishReason::Timeout: return "timeout";
    case FinishReason::Cancelled: return "cancelled";
    case FinishReason::Error: return "error";
    default: return "stop";
  }
}

// Ollama's tool_calls entries: [{function: {name, arguments: {...}}}].
json ollama_calls(const std::vector<ParsedToolCall>& calls) {
  json out = json::array();
  for (const auto& c : calls) out.push_back({{"function", {{"name", c.name}, {"arguments", c.arguments}}}});
  return out;
}

// The response over a submitted generation, shared by generate (chat=false)
// and chat; tools: chat output recognised as tool calls.
HttpResponse respond(std::shared_ptr<RequestHandle> h, const std::string& name, bool stream, bool chat,
                     std::vector<Token> prompt, ToolMode tools) {
  std::vector<std::shared_ptr<RequestHandle>> hs{std::move(h)};
  auto prompt_tokens = std::make_shared<std::vector<Token>>(std::move(prompt));
  HttpResponse res;
  if (stream) {
    auto generated = std::make_shared<std::vector<Token>>();
    auto streamer = tools.on ? std::make_shared<ToolCallStreamer>(tools.format, tools.names) : nullptr;
    auto on_event = [name, chat, generated, prompt_tokens, streamer](int, const TokenEvent& ev) -> std::string {
      json j = {{"model", name}, {"created_at", rfc3339_now()}};
      if (ev.kind == TokenEvent::Kind::Token) {
        generated->push_back(ev.token);
        const std::string text = streamer ? streamer->feed(ev.text) : ev.text;
        if (text.empty()) return "";
        if (chat) j["message"] = {{"role", "assistant"}, {"content", text}};
        else j["response"] = text;
        j["done"] = false;
        return dump(j) + "\n";
      }
      if (ev.finish == FinishReason::Error) return dump(json{{"error", ev.error}}) + "\n";
      std::string text = ev.text;
      std::string out;
      if (streamer) {
        text = streamer->feed(ev.text);
        ToolParse p = streamer->finish();
        text += p.content;
        if (!p.calls.empty()) {  // the calls (and content not sent yet) in one chunk before the final one
          json t = j;
          t["message"] = {{"role", "assistant"}, {"content", text}, {"tool_calls", ollama_calls(p.calls)}};
          t["done"] = false;
          out += dump(t) + "\n";
          text.clear();
        }
      }
      if (chat) j["message"] = {{"role", "assistant"}, {"content", text}};
      else j["response"] = text;
      j.update(final_fields(ev.stats, ollama_reason(ev.finish)));
      if (!chat) {
        std::vector<Token> c = *prompt_tokens;
        c.insert(c.end(), generated->begin(), generated->end());
        j["context"] = c;
      }
      return out + dump(j) + "\n";
    };
    res.content_type = "application/x-ndjson";
    res.stream = std::make_shared<GenStream>(hs, "", on_event, [] { return std::string(); });
    return res;
  }
  res.deferred = std::make_shared<GenDeferred>(hs, !chat, [name, chat, prompt_tokens, tools](std::vector<ChoiceResult>& rs) {
    const ChoiceResult& c = rs[0];
    if (c.finish == FinishReason::Error) return ollama_error(500, "generation failed: " + c.error);
    json j = {{"model", name}, {"created_at", rfc3339_now()}};
    if (chat) {
      j["message"] = {{"role", "assistant"}, {"content", c.text}};
      if (tools.on) {
        ToolParse p = parse_tool_calls(c.text, tools.format, tools.names);
        if (!p.calls.empty()) {
          j["message"]["content"] = p.content;
          j["message"]["tool_calls"] = ollama_calls(p.calls);
        }
      }
    } else {
      j["response"] = c.text;
    }
    j.update(final_fields(c.stats, ollama_reason(c.finish)));
    if (!chat) {
      std::vector<Token> ctxt = *prompt_tokens;
      for (const auto& ev : c.tokens) ctxt.push_back(ev.token);
      j["context"] = ctxt;
    }
    return HttpResponse::json(200, dump(j));
  });
  return res;
}

HttpResponse run(Ctx& ctx, ServedModel& m, OllamaParams p, bool chat, ToolMode tools = {}) {
  p.gen.deadline = deadline_from(ctx);
  auto hs = submit_n(m, p.gen, 1);
  std::vector<Token> prompt;
  if (!chat) prompt = p.gen.prompt;
  return respond(hs[0], m.name(), p.stream, chat, std::move(prompt), std::move(tools));
}

std::string model_name_of(const json& b) {
  auto n = opt_string(b, "model");
  if (!n) n = opt_string(b, "name");
  if (!n || n->empty()) throw Error("'model' is required", 400);
  return *n;
}

// keep_alive as Ollama reads it (number of seconds or duration string); nullopt when absent.
std::optional<std::chrono::milliseconds> keep_alive_of(const json& b) {
  auto it = b.find("keep_alive");
  if (it == b.end() || it->is_null()) return std::nullopt;
  if (it->is_number()) {
    const double s = it->get<double>();
    if (s < 0) return kKeepForever;
    return std::chrono::milliseconds(static_cast<int64_t>(std::min(s, 1e12) * 1000));
  }
  if (it->is_string()) return parse_keep_alive(it->get<std::string>());
  throw Error("'keep_alive' must be a duration string such as \"5m\" or a number of seconds", 400);
}

// Applies the request's keep_alive to the model it resolved.
void apply_keep_alive(ServedModel& m, const std::optional<std::chrono::milliseconds>& ka) {
  if (ka) m.set_keep_alive(*ka);
}

// An empty prompt: the model is loaded (done_reason "load"), or unloaded with keep_alive 0 ("unload").
HttpResponse loaded_reply(Ctx& ctx, const std::shared_ptr<ServedModel>& m,
                          const std::optional<std::chrono::milliseconds>& ka, bool chat) {
  const bool unload = ka && ka->count() == 0;
  if (unload) {
    if (auto info = current_info()) info->model_hold.reset();  // this request no longer holds it
    ctx.pool->unload(m);
  }
  json j = {{"model", m->name()}, {"created_at", rfc3339_now()}, {"done", true}, {"done_reason", unload ? "unload" : "load"}};
  if (chat) j["message"] = {{"role", "assistant"}, {"content", ""}};
  else j["response"] = "";
  return HttpResponse::json(200, dump(j));
}

HttpResponse generate(Ctx& ctx, HttpRequest& req) {
  json b = parse_body(req);
  if (auto up = maybe_proxy(ctx, req, b, ProxyEndpoint::OllamaGenerate)) return std::move(*up);
  const auto ka = keep_alive_of(b);
  auto m = resolve_model(ctx, model_name_of(b));
  apply_keep_alive(*m, ka);
  OllamaParams p = read_params(b, *m);
  const std::string prompt = opt_string(b, "prompt").value_or("");
  const std::string system = opt_string(b, "system").value_or("");
  const bool raw = opt_bool(b, "raw").value_or(false);
  std::vector<Token> ctx_tokens;
  if (auto c = b.find("context"); c != b.end() && !c->is_null()) {
    if (!c->is_array()) throw Error("'context' must be a list of token ids", 400);
    for (const auto& t : *c) {
      if (!t.is_number_integer() || t.get<int64_t>() < 0 || t.get<int64_t>() >= m->tokenizer().n_vocab())
        throw Error("'context' holds an invalid token id", 400);
      ctx_tokens.push_back(static_cast<Token>(t.get<int64_t>()));
    }
  }
  if (prompt.empty() && ctx_tokens.empty()) return loaded_reply(ctx, m, ka, false);
  std::vector<Token> toks;
  if (raw) {
    toks = tokenize_prompt(*m, prompt, ctx_tokens.empty());
  } else {
    json msgs = json::array();
    if (!system.empty()) msgs.push_back({{"role", "system"}, {"content", system}});
    msgs.push_back({{"role", "user"}, {"content", prompt}});
    toks = tokenize_prompt(*m, render_chat(*m, msgs), ctx_tokens.empty());
  }
  p.gen.prompt = ctx_tokens;
  p.gen.prompt.insert(p.gen.prompt.end(), toks.begin(), toks.end());
  // `run` records the prompt for the returned context.
  return run(ctx, *m, std::move(p), false);
}

HttpResponse chat(Ctx& ctx, HttpRequest& req) {
  json b = parse_body(req);
  if (auto up = maybe_proxy(ctx, req, b, ProxyEndpoint::OllamaChat)) return std::move(*up);
  const auto ka = keep_alive_of(b);
  auto m = resolve_model(ctx, model_name_of(b));
  apply_keep_alive(*m, ka);
  OllamaParams p = read_params(b, *m);
  auto msgs = b.find("messages");
  if (msgs == b.end() || msgs->is_null() || (msgs->is_array() && msgs->empty())) return loaded_reply(ctx, m, ka, true);
  const ojson ob = parse_body_ordered(req);  // messages and tools in the client's key order
  const auto tools = ob.find("tools");
  p.gen.prompt = tokenize_prompt(*m, render_chat(*m, ob.at("messages"), tools == ob.end() ? nullptr : &*tools));
  ToolMode tool_mode = tool_mode_of(*m, tools == ob.end() ? nullptr : &*tools, json::object());
  if (tool_mode.on) p.gen.keep_special = tool_marker_tokens(tool_mode.format, m->tokenizer());
  return run(ctx, *m, std::move(p), true, std::move(tool_mode));
}

std::string param_size(uint64_t n) {
  char buf[32];
  if (n >= 1'000'000'000ULL) std::snprintf(buf, sizeof buf, "%.1fB", n / 1e9);
  else std::snprintf(buf, sizeof buf, "%.1fM", n / 1e6);
  return buf;
}

json details(const ServedModel& m) {
  if (m.state() != ModelState::Ready)
    return {{"parent_model", ""}, {"format", "gguf"}, {"family", ""}, {"families", nullptr}, {"parameter_size", ""},
            {"quantization_level", ""}};
  return {{"parent_model", ""},
          {"format", "gguf"},
          {"family", m.architecture()},
          {"families", json::array({m.architecture()})},
          {"parameter_size", param_size(m.parameters())},
          {"quantization_level", m.quantization()}};
}

// Size on disk of a model not loaded (store models before first use).
uint64_t file_size_or_0(const std::string& path) {
  std::error_code ec;
  const auto n = std::filesystem::file_size(path, ec);
  return ec ? 0 : static_cast<uint64_t>(n);
}

std::string digest_of(const ServedModel& m) {
  if (!m.sha256().empty()) return m.sha256();  // Ollama blobs, or a checksum from the configuration
  // Not a content hash (that would read the whole file): a stable id from name, path and size.
  uint64_t h = 1469598103934665603ULL;
  for (char c : m.name() + "|" + m.path() + "|" + std::to_string(m.state() == ModelState::Ready ? m.file_bytes() : 0))
    h = (h ^ static_cast<unsigned char>(c)) * 1099511628211ULL;
  char buf[80];
  std::snprintf(buf, sizeof buf, "%016llx%016llx%016llx%016llx", (unsigned long long)h, (unsigned long long)(h * 31),
                (unsigned long long)(h * 131), (unsigned long long)(h * 1031));
  return buf;
}

json gguf_value(const gguf::Value& v) {
  using gguf::ValueType;
  if (v.is_array()) {
    if (v.array_size() > 64) return nullptr;  // vocabularies, merges: as Ollama, left out unless verbose
    json a = json::array();
    for (const auto& e : v.elements()) a.push_back(gguf_value(e));
    return a;
  }
  switch (v.type()) {
    case ValueType::STRING: return std::string(v.as_string());
    case ValueType::BOOL: return v.as_bool();
    case ValueType::FLOAT32:
    case ValueType::FLOAT64: return v.as_float();
    default: return v.as_int();
  }
}

}  // namespace

HttpResponse ollama_chat_response(std::shared_ptr<RequestHandle> h, const std::string& model, bool stream,
                                  ToolMode tools) {
  return respond(std::move(h), model, stream, true, {}, std::move(tools));
}

void register_ollama(server::Router& r, std::shared_ptr<Ctx> ctx) {
  r.add("GET", "/", [](HttpRequest&) { return HttpResponse::text(200, "Ollama is running"); });
  r.add("POST", "/api/generate", [ctx](HttpRequest& req) { return generate(*ctx, req); });
  r.add("POST", "/api/chat", [ctx](HttpRequest& req) { return chat(*ctx, req); });
  r.add("GET", "/api/version", [ctx](HttpRequest&) {
    return HttpResponse::json(200, dump(json{{"version", ctx->opts.version}}));
  });
  r.add("GET", "/api/tags", [ctx](HttpRequest&) {
    json models = json::array();
    for (const auto& m : ctx->pool->list()) {
      const bool ready = m->state() == ModelState::Ready;
      models.push_back({{"name", m->name()},
                        {"model", m->name()},
                        {"modified_at", rfc3339(ready ? m->modified_at() : std::chrono::system_clock::now())},
                        {"size", ready ? m->file_bytes() : file_size_or_0(m->path())},
                        {"digest", digest_of(*m)},
                        {"details", details(*m)}});
    }
    for (const auto& a : ctx->pool->aliases()) {  // aliases: listed with their heaviest version's details
      auto m = ctx->pool->find(a.name);
      json versions = json::object();
      for (const auto& [v, w] : a.versions) versions[v] = w;
      json e = {{"name", a.name}, {"model", a.name}, {"modified_at", rfc3339_now()}, {"versions", versions}};
      if (m) {
        e["size"] = m->state() == ModelState::Ready ? m->file_bytes() : file_size_or_0(m->path());
        e["digest"] = digest_of(*m);
        e["details"] = details(*m);
      }
      models.push_back(std::move(e));
    }
    append_upstream_models_ollama(*ctx, models);
    return HttpResponse::json(200, dump(json{{"models", models}}));
  });
  r.add("GET", "/api/ps", [ctx](HttpRequest&) {
    // Loaded models only, with when they unload if left idle (keep_alive).
    json models = json::array();
    for (const auto& m : ctx->pool->list()) {
      if (m->state() != ModelState::Ready) continue;
      auto exp = m->expires_at();
      const auto far = std::chrono::system_clock::now() + std::chrono::hours(24 * 365 * 200);
      if (exp > far) exp = far;  // kept forever (keep_alive -1, or preloaded): a far date, as Ollama shows it
      models.push_back({{"name", m->name()},
                        {"model", m->name()},
                        {"size", m->memory_bytes()},  // as Ollama: what it holds in memory (file + KV cache)
                        {"digest", digest_of(*m)},
                        {"details", details(*m)},
                        {"expires_at", rfc3339(exp)},
                        {"size_vram", 0},
                        {"in_flight", m->in_flight()}});
    }
    return HttpResponse::json(200, dump(json{{"models", models}}));
  });
  r.add("POST", "/api/show", [ctx](HttpRequest& req) {
    json b = parse_body(req);
    auto m = resolve_model(*ctx, model_name_of(b));
    json info = json::object();
    for (const auto& v : m->file().metadata()) {
      json x = gguf_value(v);
      if (!x.is_null()) info[v.key] = std::move(x);
    }
    info["general.parameter_count"] = m->parameters();
    const SchedulerStats st = m->scheduler().stats();
    json out = {{"license", ""},
                {"modelfile", "# served by lmhost\nFROM " + m->path() + "\n"},
                {"parameters", "num_ctx " + std::to_string(st.n_ctx_per_seq)},
                {"template", m->chat_template_source()},
                {"details", details(*m)},
                {"model_info", info},
                {"capabilities", m->chat_template_source().find("tools") != std::string::npos
                                     ? json::array({"completion", "tools"})  // its template renders tool definitions
                                     : json::array({"completion"})},
                {"modified_at", rfc3339(m->modified_at())}};
    return HttpResponse::json(200, dump(out));
  });
}

}  // namespace lmhost::api
