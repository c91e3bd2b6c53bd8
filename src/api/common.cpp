// Shared adapter code, the native endpoints and route registration.
#include "api/common.h"

#include <cmath>

#include "observe/log.h"
#include "observe/metrics.h"

#include <cstdio>
#include <ctime>
#include <random>
#include <set>

#include "template/chat_template.h"

namespace lmhost::api {

std::string dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

json parse_body(const HttpRequest& req) {
  if (req.body.empty()) throw Error("the request body is empty; send a JSON object", 400);
  json j = json::parse(req.body, nullptr, false);
  if (j.is_discarded()) {
    // Parse again with exceptions for a message with the position.
    try {
      const json again = json::parse(req.body);  // throws here
      (void)again;
    } catch (const json::parse_error& e) {
      throw Error(std::string("malformed JSON in the request body: ") + e.what(), 400);
    }
    throw Error("malformed JSON in the request body", 400);
  }
  if (!j.is_object()) throw Error("the request body must be a JSON object", 400);
  return j;
}

namespace {
const json* field(const json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return nullptr;
  return &*it;
}
}  // namespace

std::optional<std::string> opt_string(const json& j, const char* key) {
  const json* v = field(j, key);
  if (!v) return std::nullopt;
  if (!v->is_string()) throw Error(std::string("'") + key + "' must be a string", 400);
  return v->get<std::string>();
}

std::optional<bool> opt_bool(const json& j, const char* key) {
  const json* v = field(j, key);
  if (!v) return std::nullopt;
  if (!v->is_boolean()) throw Error(std::string("'") + key + "' must be true or false", 400);
  return v->get<bool>();
}

std::optional<double> opt_number(const json& j, const char* key, double lo, double hi) {
  const json* v = field(j, key);
  if (!v) return std::nullopt;
  if (!v->is_number()) throw Error(std::string("'") + key + "' must be a number", 400);
  const double d = v->get<double>();
  if (!(d >= lo && d <= hi))
    throw Error(std::string("'") + key + "' must be between " + json(lo).dump() + " and " + json(hi).dump(), 400);
  return d;
}

std::optional<int64_t> opt_int(const json& j, const char* key, int64_t lo, int64_t hi) {
  const json* v = field(j, key);
  if (!v) return std::nullopt;
  int64_t x = 0;
  if (v->is_number_integer()) {
    if (v->is_number_unsigned() && v->get<uint64_t>() > static_cast<uint64_t>(INT64_MAX)) x = INT64_MAX;
    else x = v->get<int64_t>();
  } else if (v->is_number_float() && v->get<double>() == static_cast<double>(static_cast<int64_t>(v->get<double>()))) {
    x = static_cast<int64_t>(v->get<double>());
  } else {
    throw Error(std::string("'") + key + "' must be an integer", 400);
  }
  if (x < lo || x > hi)
    throw Error(std::string("'") + key + "' must be between " + std::to_string(lo) + " and " + std::to_string(hi) +
                    " (got " + std::to_string(x) + ")",
                400);
  return x;
}

std::vector<std::string> opt_stop(const json& j, const char* key) {
  const json* v = field(j, key);
  if (!v) return {};
  std::vector<std::string> out;
  if (v->is_string()) {
    out.push_back(v->get<std::string>());
  } else if (v->is_array()) {
    if (v->size() > 16) throw Error(std::string("'") + key + "' has more than 16 entries", 400);
    for (const auto& s : *v) {
      if (!s.is_string()) throw Error(std::string("'") + key + "' must be a string or a list of strings", 400);
      out.push_back(s.get<std::string>());
    }
  } else {
    throw Error(std::string("'") + key + "' must be a string or a list of strings", 400);
  }
  return out;
}

std::shared_ptr<ServedModel> resolve_model(Ctx& ctx, const std::string& name) {
  // An alias picks one of its versions by weight; a model answers as itself.
  ModelPool::Resolved r = ctx.pool->resolve(name);
  auto m = r.model;
  if (!m) {
    std::string names;
    for (const auto& x : ctx.pool->list()) names += (names.empty() ? "" : ", ") + x->name();
    for (const auto& al : ctx.pool->aliases()) names += (names.empty() ? "" : ", ") + al.name;
    throw Error("model '" + name + "' is not served here (available: " + names + ")", 404);
  }
  auto* cur = server::current_request();
  if (cur && cur->info) {
    cur->info->model = r.served;
    // 403 for a key without this model (an alias is authorized by its own name)
    if (cur->info->authorize_model) cur->info->authorize_model(r.served);
  }
  // Loads it when unloaded, 503 while a preload loads or when it failed; the
  // lease keeps it loaded until the request is done (keep_alive starts then).
  // A model swapped out meanwhile is replaced by the new one. On an HTTP I/O
  // thread the wait for an on-demand load happens without the thread: the
  // router runs this handler again once the load has finished.
  ModelLease lease;
  if (cur) {
    uint64_t event = 0;
    std::optional<ModelLease> l = ctx.pool->try_acquire_current(m, &event);
    if (!l)
      throw server::RetryWhenReady([pool = ctx.pool, event](std::function<void()> wake) {
        pool->watch(event, std::move(wake));
      });
    lease = std::move(*l);
  } else {
    lease = ctx.pool->acquire_current(m);
  }
  if (cur && cur->info) {
    cur->info->model_hold = std::move(lease);
    cur->info->model_version = r.alias ? m->name() : m->version();
    cur->info->response_headers.emplace_back("X-Lmhost-Model-Version", cur->info->model_version);
  }
  return m;
}

namespace {

template <class J>
std::string content_text(const J& content) {
  if (content.is_null()) return "";
  if (content.is_string()) return content.template get<std::string>();
  if (content.is_array()) {
    std::string out;
    for (const auto& part : content) {
      if (part.is_string()) { out += part.template get<std::string>(); continue; }
      if (!part.is_object()) throw Error("message content parts must be objects", 400);
      auto t = part.find("type");
      if (t != part.end() && t->is_string() && *t != "text")
        throw Error("message content of type '" + t->template get<std::string>() + "' is not supported (text only)", 400);
      auto txt = part.find("text");
      if (txt == part.end() || !txt->is_string()) throw Error("a text content part needs a 'text' string", 400);
      out += txt->template get<std::string>();
    }
    return out;
  }
  throw Error("message 'content' must be a string or a list of content parts", 400);
}

std::mutex g_fallback_mu;
std::set<std::string> g_fallback_logged;

void log_fallback_once(const ServedModel& m, const std::string& why) {
  std::lock_guard lk(g_fallback_mu);
  if (g_fallback_logged.insert(m.name()).second)
    observe::log_warn("rendering chats as ChatML", {{"model", m.name()}, {"reason", why}});
}

// Render failures that are our interpreter's limitation, not the template's
// verdict on the messages: fall back to ChatML for these.
bool ours(const TemplateError& e) {
  if (e.status() >= 500) return true;
  const std::string_view m = e.what();
  for (std::string_view p : {"no filter named", "no test named", "are not supported in str.format", "step limit",
                             "maximum macro recursion depth", "nested too deeply"})
    if (m.find(p) != std::string_view::npos) return true;
  return false;
}

}  // namespace

namespace {

// OpenAI sends tool-call arguments as a JSON string; chat templates (HF
// style: Qwen, Hermes, Llama 3.1, Mistral) expect an object they `tojson`.
void normalise_tool_calls(ojson& calls) {
  if (!calls.is_array()) throw Error("'tool_calls' must be a list of tool calls", 400);
  for (auto& call : calls) {
    if (!call.is_object()) throw Error("each tool call must be an object", 400);
    auto fn = call.find("function");
    ojson* target = fn != call.end() && fn->is_object() ? &*fn : &call;
    auto args = target->find("arguments");
    if (args != target->end() && args->is_string()) {
      ojson parsed = ojson::parse(args->get<std::string>(), nullptr, false);
      if (!parsed.is_discarded() && parsed.is_object()) *args = std::move(parsed);
    }
  }
}

}  // namespace

std::string render_chat(ServedModel& m, const ojson& messages, const ojson* tools, bool add_generation_prompt) {
  if (!messages.is_array()) throw Error("'messages' must be a list of {role, content} objects", 400);
  if (messages.empty()) throw Error("'messages' must not be empty", 400);
  ojson msgs = ojson::array();
  bool normalised = false;  // tool-call arguments turned from JSON text into objects
  for (const auto& msg : messages) {
    if (!msg.is_object()) throw Error("each message must be an object with 'role' and 'content'", 400);
    auto role = msg.find("role");
    if (role == msg.end() || !role->is_string()) throw Error("each message needs a 'role' string", 400);
    std::string r = role->get<std::string>();
    if (r == "developer") r = "system";
    if (r != "system" && r != "user" && r != "assistant" && r != "tool")
      throw Error("unknown message role '" + r + "' (system, user, assistant, tool)", 400);
    // Every field the client sent (tool_calls, tool_call_id, name, ...) in
    // its order; null fields dropped so `is defined` / `in` tests see them absent.
    ojson out = ojson::object();
    bool has_content = false;
    for (auto it = msg.begin(); it != msg.end(); ++it) {
      if (it.key() == "role") {
        out["role"] = r;
      } else if (it.key() == "content") {
        out["content"] = content_text(it.value());
        has_content = true;
      } else if (it.key() == "tool_calls") {
        if (it.value().is_null() || (it.value().is_array() && it.value().empty())) continue;
        ojson calls = it.value();
        normalise_tool_calls(calls);
        if (calls != it.value()) normalised = true;
        out["tool_calls"] = std::move(calls);
      } else if (!it.value().is_null()) {
        out[it.key()] = it.value();
      }
    }
    if (!has_content) out["content"] = std::string();
    msgs.push_back(std::move(out));
  }
  if (tools && !tools->is_null()) {
    if (!tools->is_array()) throw Error("'tools' must be a list of tool definitions", 400);
    for (const auto& t : *tools)
      if (!t.is_object()) throw Error("each tool must be an object ({type: function, function: {...}})", 400);
  }
  const Tokenizer& tok = m.tokenizer();
  if (m.chat_template()) {
    try {
      ojson ctx = ojson::object();
      ctx["messages"] = msgs;
      if (tools && tools->is_array() && !tools->empty()) ctx["tools"] = *tools;
      ctx["add_generation_prompt"] = add_generation_prompt;
      ctx["bos_token"] = tok.bos() >= 0 ? std::string(tok.token_text(tok.bos())) : std::string();
      ctx["eos_token"] = tok.eos() >= 0 ? std::string(tok.token_text(tok.eos())) : std::string();
      try {
        return m.chat_template()->render(ctx);
      } catch (const TemplateError&) {
        // Templates that paste the arguments as text (DeepSeek, functionary)
        // fail on the object HF-style templates want: try the text as sent.
        if (!normalised) throw;
        ojson& sent = ctx["messages"];  // one per client message, in order
        for (size_t i = 0; i < sent.size(); ++i)
          if (sent[i].contains("tool_calls")) sent[i]["tool_calls"] = messages[i]["tool_calls"];
        return m.chat_template()->render(ctx);
      }
    } catch (const TemplateError& e) {
      // The template itself refused these messages (raise_exception, e.g. a
      // system role it does not support, or a Python-level error jinja2 would
      // raise too): the client gets a 400 with the template's message. Only a
      // limitation of our interpreter falls back to ChatML.
      if (!ours(e)) throw Error(std::string("the model's chat template rejected the messages: ") + e.what(), 400);
      log_fallback_once(m, std::string("its chat template failed to render (") + e.what() + ")");
    } catch (const std::exception& e) {
      log_fallback_once(m, std::string("its chat template failed to render (") + e.what() + ")");
    }
  } else {
    log_fallback_once(m, m.chat_template_source().empty() ? "no chat template in the model file"
                                                          : "its chat template could not be parsed");
  }
  std::string out;
  for (const auto& msg : msgs)
    out += "<|im_start|>" + msg["role"].get<std::string>() + "\n" + msg["content"].get<std::string>() + "<|im_end|>\n";
  if (add_generation_prompt) out += "<|im_start|>assistant\n";
  return out;
}

std::string render_chat(ServedModel& m, const json& messages, bool add_generation_prompt) {
  const ojson msgs = ojson::parse(dump(messages));
  return render_chat(m, msgs, nullptr, add_generation_prompt);
}

ToolMode tool_mode_of(ServedModel& m, const ojson* tools, const json& b) {
  if (!tools || !tools->is_array() || tools->empty()) return {};
  return tool_mode_of(detect_tool_format(m.chat_template_source(), &m.tokenizer()), tools, b);
}

ToolMode tool_mode_of(ToolFormat format, const ojson* tools, const json& b) {
  ToolMode t;
  if (!tools || !tools->is_array() || tools->empty()) return t;
  std::string forced;  // tool_choice naming one function
  if (auto tc = b.find("tool_choice"); tc != b.end() && !tc->is_null()) {
    if (tc->is_string()) {
      const std::string c = tc->get<std::string>();
      if (c == "none") return t;
      if (c != "auto" && c != "required")
        throw Error("'tool_choice' must be \"none\", \"auto\", \"required\" or {\"type\": \"function\", "
                    "\"function\": {\"name\": ...}}",
                    400);
    } else if (tc->is_object() && tc->contains("function") && (*tc)["function"].is_object() &&
               (*tc)["function"].contains("name") && (*tc)["function"]["name"].is_string()) {
      forced = (*tc)["function"]["name"].get<std::string>();
    } else {
      throw Error("'tool_choice' must be \"none\", \"auto\", \"required\" or {\"type\": \"function\", "
                  "\"function\": {\"name\": ...}}",
                  400);
    }
  }
  if (auto pc = opt_bool(b, "parallel_tool_calls")) t.parallel = *pc;
  t.on = true;
  t.format = format;
  t.names = forced.empty() ? tool_names_of(*tools) : std::vector<std::string>{forced};
  return t;
}

ojson parse_body_ordered(const HttpRequest& req) {
  ojson j = ojson::parse(req.body, nullptr, false);
  if (j.is_discarded() || !j.is_object()) (void)parse_body(req);  // throws with the parser's message
  return j;
}

std::vector<Token> tokenize_prompt(const ServedModel& m, const std::string& text, bool add_special) {
  const Tokenizer& tok = m.tokenizer();
  std::vector<Token> t = tok.encode(text, add_special, /*parse_special=*/true);
  // The template may already start with BOS: do not add a second one.
  if (t.size() >= 2 && tok.bos() >= 0 && t[0] == tok.bos() && t[1] == tok.bos()) t.erase(t.begin());
  return t;
}

uint64_t random_seed() {
  static std::mutex mu;
  static std::mt19937_64 rng{std::random_device{}()};
  std::lock_guard lk(mu);
  return rng();
}

SteadyClock::time_point deadline_from(const Ctx& ctx) {
  if (ctx.opts.request_timeout.count() <= 0) return SteadyClock::time_point::max();
  return SteadyClock::now() + ctx.opts.request_timeout;
}

std::shared_ptr<server::RequestInfo> current_info() {
  auto* cur = server::current_request();
  return cur ? cur->info : nullptr;
}

void record_done(server::RequestInfo* info, const GenerateStats& st) {
  if (!info) return;
  info->prompt_tokens = std::max<int64_t>(0, info->prompt_tokens) + st.prompt_tokens;
  info->completion_tokens = std::max<int64_t>(0, info->completion_tokens) + st.completion_tokens;
  if (info->ttft_ms < 0 && st.completion_tokens > 0) {  // first choice that produced a token
    info->ttft_ms = st.queue_ms + st.prompt_ms;
    info->queue_ms = st.queue_ms;
    if (st.completion_tokens > 1) info->per_token_ms = st.generate_ms / (st.completion_tokens - 1);
  }
}

std::vector<std::shared_ptr<RequestHandle>> submit_n(ServedModel& m, const GenerateRequest& req_in, int n) {
  GenerateRequest req = req_in;
  if (auto info = current_info()) {  // the server's request budgets (MAX_INPUT_TOKENS, MAX_TOKENS)
    const int64_t in = static_cast<int64_t>(req.prompt.size());
    if (info->max_input_tokens > 0 && in > info->max_input_tokens)
      throw Error("the prompt has " + std::to_string(in) + " tokens, more than the " +
                      std::to_string(info->max_input_tokens) + " input tokens this server accepts",
                  400);
    if (info->max_tokens_cap > 0) {
      if (req.max_tokens > info->max_tokens_cap)
        throw Error("max_tokens is " + std::to_string(req.max_tokens) + ", more than the " +
                        std::to_string(info->max_tokens_cap) + " output tokens this server allows per request",
                    400);
      if (req.max_tokens < 0) req.max_tokens = static_cast<int>(info->max_tokens_cap);  // "until full": capped
    }
  }
  std::vector<std::shared_ptr<RequestHandle>> hs;
  try {
    for (int i = 0; i < n; ++i) {
      GenerateRequest r = req;
      r.sampling.seed = req.sampling.seed + static_cast<uint64_t>(i);
      hs.push_back(m.scheduler().submit(std::move(r)));
    }
  } catch (...) {
    for (auto& h : hs) h->cancel();
    throw;
  }
  return hs;
}

// ---- GenStream / GenDeferred ----

GenStream::GenStream(std::vector<std::shared_ptr<RequestHandle>> handles, std::string prefix, OnEvent on_event,
                     OnEnd on_end)
    : handles_(std::move(handles)),
      done_(handles_.size(), false),
      prefix_(std::move(prefix)),
      on_event_(std::move(on_event)),
      on_end_(std::move(on_end)) {}

void GenStream::set_notify(std::function<void()> notify) {
  for (auto& h : handles_) h->set_notify(notify);
}

void GenStream::cancel() {
  for (auto& h : handles_) h->cancel();
}

bool GenStream::poll(std::string& out) {
  if (ended_) return false;
  out += prefix_;
  prefix_.clear();
  bool all_done = true;
  for (size_t i = 0; i < handles_.size(); ++i) {
    if (done_[i]) continue;
    scratch_.clear();
    handles_[i]->try_pop(scratch_);
    for (const auto& ev : scratch_) {
      out += on_event_(static_cast<int>(i), ev);
      if (ev.kind == TokenEvent::Kind::Done) {
        done_[i] = true;
        record_done(info_.get(), ev.stats);
      }
    }
    if (!done_[i]) all_done = false;
  }
  if (all_done) {
    out += on_end_();
    ended_ = true;
    return false;
  }
  return true;
}

GenDeferred::GenDeferred(std::vector<std::shared_ptr<RequestHandle>> handles, bool keep_tokens, Finish finish)
    : handles_(std::move(handles)),
      results_(handles_.size()),
      done_(handles_.size(), false),
      keep_tokens_(keep_tokens),
      finish_(std::move(finish)) {}

void GenDeferred::set_notify(std::function<void()> notify) {
  for (auto& h : handles_) h->set_notify(notify);
}

void GenDeferred::cancel() {
  for (auto& h : handles_) h->cancel();
}

std::optional<HttpResponse> GenDeferred::poll() {
  bool all_done = true;
  for (size_t i = 0; i < handles_.size(); ++i) {
    if (done_[i]) continue;
    scratch_.clear();
    handles_[i]->try_pop(scratch_);
    ChoiceResult& r = results_[i];
    for (auto& ev : scratch_) {
      r.text += ev.text;
      if (ev.kind == TokenEvent::Kind::Token) {
        if (keep_tokens_) r.tokens.push_back(std::move(ev));
      } else {
        r.finish = ev.finish;
        r.error = ev.error;
        r.stats = ev.stats;
        done_[i] = true;
        record_done(info_.get(), ev.stats);
      }
    }
    if (!done_[i]) all_done = false;
  }
  if (!all_done) return std::nullopt;
  return finish_(results_);
}

// ---- errors, time ----

HttpResponse openai_error(int status, const std::string& message, const char* type, const char* param) {
  if (!type)
    type = status == 404 ? "not_found_error" : status == 503 ? "server_busy" : status >= 500 ? "server_error"
                                                                                             : "invalid_request_error";
  json e = {{"error",
             {{"message", message}, {"type", type}, {"param", param ? json(param) : json(nullptr)},
              {"code", status == 404 ? json("model_not_found") : json(nullptr)}}}};
  HttpResponse r = HttpResponse::json(status, dump(e));
  if (status == 503) r.headers.emplace_back("Retry-After", "1");
  return r;
}

HttpResponse ollama_error(int status, const std::string& message) {
  HttpResponse r = HttpResponse::json(status, dump(json{{"error", message}}));
  if (status == 503) r.headers.emplace_back("Retry-After", "1");
  return r;
}

int64_t unix_now() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

// ---- native endpoints ----

void register_native(server::Router& r, std::shared_ptr<Ctx> ctx) {
  r.add("GET", "/health", [ctx](HttpRequest&) {
    json models = json::array();
    bool loading = false, any_ready = false;
    for (const auto& m : ctx->pool->list()) {
      json e = {{"name", m->name()}, {"state", model_state_name(m->state())}, {"demo", m->demo()}};
      if (m->state() == ModelState::Failed) e["error"] = m->error();
      // Start-up loads make the server not live yet (startup probe); a load a
      // request asked for later must not (a liveness probe would restart the
      // server in the middle of loading a big model): it serves on its next use.
      if (m->state() == ModelState::Loading && !m->loading_on_demand()) loading = true;
      if (m->state() == ModelState::Unloaded || m->loading_on_demand()) any_ready = true;  // loads / serves on next use
      if (m->state() == ModelState::Ready && m->is_embedding()) {  // embedding model: batcher stats
        any_ready = true;
        const EmbedStats st = m->embedder().stats();
        e["embedding"] = true;
        e["n_ctx"] = m->embedding_model()->n_ctx();
        e["queue"] = {{"waiting", st.queued}, {"max", st.max_queue}, {"rejected_total", st.rejected}};
        e["requests_total"] = st.requests;
        e["sequences_total"] = st.sequences;
        e["batches_total"] = st.passes;
        e["dropped_total"] = st.dropped;
      } else if (m->state() == ModelState::Ready) {
        any_ready = true;
        const SchedulerStats st = m->scheduler().stats();
        e["slots"] = {{"total", st.n_parallel}, {"active", st.active}, {"idle", st.n_parallel - st.active}};
        e["queue"] = {{"waiting", st.queued}, {"max", st.max_queue}, {"rejected_total", st.rejected_total}};
        e["n_ctx"] = st.n_ctx_per_seq;
        e["requests_total"] = st.requests_total;
        e["tokens_generated_total"] = st.tokens_generated;
        e["prompt_tokens_reused_total"] = st.prompt_tokens_reused;
      }
      models.push_back(std::move(e));
    }
    const char* status = loading ? "loading" : any_ready ? "ok" : "error";
    json health{{"status", status}, {"models", models}};
    int64_t queued = 0;
    for (const auto& m : models)
      if (m.contains("queue")) queued += m["queue"].value("waiting", 0);
    health["queue_depth"] = queued;
    health["memory"] = {{"resident_bytes", observe::resident_memory_bytes()},
                        {"virtual_bytes", observe::virtual_memory_bytes()}};
    health["uptime_seconds"] = std::round(observe::uptime_seconds() * 1000) / 1000;
    health["version"] = ctx->opts.version;
    if (json cache = embedding_cache_health(*ctx); !cache.is_null()) health["cache"] = std::move(cache);
    return HttpResponse::json(loading || !any_ready ? 503 : 200, dump(health));
  });

  r.add("POST", "/tokenize", [ctx](HttpRequest& req) {
    json b = parse_body(req);
    auto m = resolve_model(*ctx, opt_string(b, "model").value_or(""));
    auto text = opt_string(b, "content");
    if (!text) text = opt_string(b, "prompt");
    if (!text) throw Error("'content' (the text to tokenize) is required", 400);
    const bool add_special = opt_bool(b, "add_special").value_or(false);
    const bool with_pieces = opt_bool(b, "with_pieces").value_or(false);
    auto toks = m->tokenizer().encode(*text, add_special, /*parse_special=*/true);
    json out = json::array();
    for (Token t : toks) {
      if (with_pieces) out.push_back({{"id", t}, {"piece", m->tokenizer().token_to_piece(t, true)}});
      else out.push_back(t);
    }
    return HttpResponse::json(200, dump(json{{"tokens", out}, {"model", m->name()}}));
  });

  r.add("POST", "/detokenize", [ctx](HttpRequest& req) {
    json b = parse_body(req);
    auto m = resolve_model(*ctx, opt_string(b, "model").value_or(""));
    auto it = b.find("tokens");
    if (it == b.end() || !it->is_array()) throw Error("'tokens' must be a list of token ids", 400);
    std::vector<Token> toks;
    const int n_vocab = m->tokenizer().n_vocab();
    for (const auto& t : *it) {
      if (!t.is_number_integer()) throw Error("'tokens' must be a list of integer token ids", 400);
      const int64_t v = t.get<int64_t>();
      if (v < 0 || v >= n_vocab)
        throw Error("token id " + std::to_string(v) + " is out of range [0, " + std::to_string(n_vocab) + ")", 400);
      toks.push_back(static_cast<Token>(v));
    }
    return HttpResponse::json(200, dump(json{{"content", m->tokenizer().decode(toks)}, {"model", m->name()}}));
  });

  r.add("POST", "/v1/summarize", [ctx](HttpRequest& req) {
    json b = parse_body(req);
    auto m = resolve_model(*ctx, opt_string(b, "model").value_or(""));
    auto text = opt_string(b, "text");
    if (!text || text->empty()) throw Error("'text' (the text to summarize) is required", 400);
    GenerateRequest g;
    const int n_ctx = m->scheduler().n_ctx_per_seq();
    g.max_tokens = static_cast<int>(opt_int(b, "max_tokens", 1, n_ctx).value_or(std::min(256, n_ctx)));
    g.sampling.temperature = static_cast<float>(opt_number(b, "temperature", 0, 2).value_or(0.7));
    g.sampling.top_k = 40;
    g.sampling.top_p = 0.95f;
    g.sampling.min_p = 0.05f;
    g.sampling.seed = opt_int(b, "seed", 0, INT64_MAX).has_value() ? static_cast<uint64_t>(*opt_int(b, "seed", 0, INT64_MAX))
                                                                   : random_seed();
    json messages = json::array(
        {{{"role", "system"},
          {"content", "You are a helpful assistant that writes concise, faithful summaries in the language of the text."}},
         {{"role", "user"}, {"content", "Summarize the following text:\n\n" + *text}}});
    g.prompt = tokenize_prompt(*m, render_chat(*m, messages));
    g.deadline = deadline_from(*ctx);
    auto hs = submit_n(*m, g, 1);
    const std::string name = m->name();
    HttpResponse res;
    res.deferred = std::make_shared<GenDeferred>(hs, false, [name](std::vector<ChoiceResult>& rs) {
      const ChoiceResult& c = rs[0];
      if (c.finish == FinishReason::Error) return openai_error(500, c.error);
      const int in = c.stats.prompt_tokens, out = c.stats.completion_tokens;
      std::string s = c.text;
      while (!s.empty() && (s.back() == ' ' || s.back() == '\n')) s.pop_back();
      size_t i = 0;
      while (i < s.size() && (s[i] == ' ' || s[i] == '\n')) ++i;
      return HttpResponse::json(
          200, dump(json{{"summary", s.substr(i)},
                         {"model", name},
                         {"finish_reason", finish_reason_name(c.finish)},
                         {"usage", {{"input_tokens", in}, {"output_tokens", out}, {"total_tokens", in + out}}}}));
    });
    return res;
  });
}

void register_routes(server::Router& router, std::shared_ptr<ModelPool> pool, ApiOptions options) {
  auto ctx = std::make_shared<Ctx>(Ctx{std::move(pool), std::move(options)});
  router.set_error_formatter([](const HttpRequest& req, int status, const std::string& msg) {
    if (req.path.rfind("/api/", 0) == 0) return ollama_error(status, msg);
    return openai_error(status, msg);
  });
  register_native(router, ctx);
  register_openai(router, ctx);
  register_ollama(router, ctx);
  register_embeddings(router, ctx);
}

}  // namespace lmhost::api
