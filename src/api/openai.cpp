// OpenAI-compatible endpoints: /v1/chat/completions, /v1/completions, /v1/models.
#include "api/common.h"
#include "api/upstream_proxy.h"

namespace lmhost::api {
namespace {

struct OpenAIParams {
  GenerateRequest gen;
  int n = 1;
  bool stream = false;
  bool include_usage = false;
  bool logprobs = false;
  int top_logprobs = 0;
};

// Fields shared by chat and completions. `chat` picks the logprobs flavour.
OpenAIParams read_params(const json& b, ServedModel& m, bool chat) {
  OpenAIParams p;
  const int n_ctx = m.scheduler().n_ctx_per_seq();
  auto max_tokens = opt_int(b, "max_completion_tokens", 1, INT64_MAX);
  if (!max_tokens) max_tokens = opt_int(b, "max_tokens", 1, INT64_MAX);
  if (max_tokens && *max_tokens > n_ctx)
    throw Error("max_tokens is " + std::to_string(*max_tokens) + " but the context of this model holds " +
                    std::to_string(n_ctx) + " tokens",
                400);
  p.gen.max_tokens = max_tokens ? static_cast<int>(*max_tokens) : (chat ? -1 : 16);
  SamplingParams& s = p.gen.sampling;
  s.temperature = static_cast<float>(opt_number(b, "temperature", 0, 2).value_or(1.0));
  s.top_p = static_cast<float>(opt_number(b, "top_p", 0, 1).value_or(1.0));
  s.top_k = static_cast<int>(opt_int(b, "top_k", 0, 1 << 20).value_or(0));
  s.min_p = static_cast<float>(opt_number(b, "min_p", 0, 1).value_or(0.0));
  s.presence_penalty = static_cast<float>(opt_number(b, "presence_penalty", -2, 2).value_or(0.0));
  s.frequency_penalty = static_cast<float>(opt_number(b, "frequency_penalty", -2, 2).value_or(0.0));
  s.repeat_penalty = static_cast<float>(opt_number(b, "repeat_penalty", 0, 10).value_or(1.0));
  auto seed = opt_int(b, "seed", INT64_MIN, INT64_MAX);
  s.seed = seed ? static_cast<uint64_t>(*seed) : random_seed();
  p.gen.stop = opt_stop(b, "stop");
  p.gen.ignore_eog = opt_bool(b, "ignore_eos").value_or(false);  // llama.cpp's extension
  if (auto rf = b.find("response_format"); rf != b.end() && !rf->is_null()) {
    if (!rf->is_object() || !rf->contains("type") || !(*rf)["type"].is_string())
      throw Error("'response_format' must be an object with a string 'type'", 400);
    const std::string type = (*rf)["type"].get<std::string>();
    if (type != "text" && type != "json_object" && type != "json_schema")
      throw Error("'response_format.type' must be \"text\", \"json_object\" or \"json_schema\"", 400);
    // json_object and json_schema: output constrained to one valid JSON
    // object; a schema is NOT enforced beyond JSON validity.
    p.gen.json_object = type != "text";
  }
  p.n = static_cast<int>(opt_int(b, "n", 1, 16).value_or(1));
  p.stream = opt_bool(b, "stream").value_or(false);
  if (auto so = b.find("stream_options"); so != b.end() && !so->is_null()) {
    if (!so->is_object()) throw Error("'stream_options' must be an object", 400);
    p.include_usage = opt_bool(*so, "include_usage").value_or(false);
  }
  if (chat) {
    p.logprobs = opt_bool(b, "logprobs").value_or(false);
    p.top_logprobs = static_cast<int>(opt_int(b, "top_logprobs", 0, 20).value_or(0));
    if (p.top_logprobs > 0 && !p.logprobs) throw Error("'top_logprobs' needs 'logprobs': true", 400);
  } else {
    auto lp = opt_int(b, "logprobs", 0, 5);
    p.logprobs = lp.has_value();
    p.top_logprobs = static_cast<int>(lp.value_or(0));
  }
  p.gen.logprobs = p.logprobs;
  p.gen.top_logprobs = p.top_logprobs;
  return p;
}

json bytes_of(const std::string& s) {
  json a = json::array();
  for (unsigned char c : s) a.push_back(static_cast<int>(c));
  return a;
}

json chat_logprob_entry(const TokenEvent& ev) {
  json top = json::array();
  for (const auto& t : ev.top) top.push_back({{"token", t.piece}, {"logprob", t.logprob}, {"bytes", bytes_of(t.piece)}});
  return {{"token", ev.chosen.piece}, {"logprob", ev.chosen.logprob}, {"bytes", bytes_of(ev.chosen.piece)},
          {"top_logprobs", top}};
}

const char* openai_finish(FinishReason r) {
  switch (r) {
    case FinishReason::Stop: return "stop";
    case FinishReason::Length: return "length";
    case FinishReason::Timeout: return "timeout";
    case FinishReason::Cancelled: return "cancelled";
    case FinishReason::Error: return "error";
    default: return "stop";
  }
}

json usage_json(int prompt, int completion, int cached) {
  return {{"prompt_tokens", prompt},
          {"completion_tokens", completion},
          {"total_tokens", prompt + completion},
          {"prompt_tokens_details", {{"cached_tokens", cached}}}};
}

std::string sse(const json& j) { return "data: " + dump(j) + "\n\n"; }

struct Usage {
  int prompt = 0, completion = 0, cached = 0;
};

// An error that ends a stream, as an SSE event in OpenAI's error shape.
std::string sse_error(const std::string& message) {
  return sse(json{{"error", {{"message", message}, {"type", "server_error"}, {"param", nullptr}, {"code", nullptr}}}});
}

// The end of an OpenAI stream: the usage chunk when asked for, then [DONE].
std::function<std::string()> sse_end(json base, std::shared_ptr<Usage> usage, bool include_usage) {
  return [base = std::move(base), usage = std::move(usage), include_usage]() -> std::string {
    std::string out;
    if (include_usage) {
      json c = base;
      c["choices"] = json::array();
      c["usage"] = usage_json(usage->prompt, usage->completion, usage->cached);
      out += sse(c);
    }
    return out + "data: [DONE]\n\n";
  };
}

HttpResponse chat_completions(Ctx& ctx, HttpRequest& req) {
  json b = parse_body(req);
  if (auto up = maybe_proxy(ctx, req, b, ProxyEndpoint::OpenAIChat)) return std::move(*up);
  auto model_name = opt_string(b, "model").value_or("");
  auto m = resolve_model(ctx, model_name);
  if (b.find("messages") == b.end()) throw Error("'messages' is required", 400);
  OpenAIParams p = read_params(b, *m, /*chat=*/true);
  const ojson ob = parse_body_ordered(req);  // messages and tools in the client's key order
  const auto tools = ob.find("tools");
  p.gen.prompt = tokenize_prompt(*m, render_chat(*m, ob.at("messages"), tools == ob.end() ? nullptr : &*tools));
  p.gen.deadline = deadline_from(ctx);
  ToolMode tool_mode = tool_mode_of(*m, tools == ob.end() ? nullptr : &*tools, b);
  if (tool_mode.on) p.gen.keep_special = tool_marker_tokens(tool_mode.format, m->tokenizer());
  auto hs = submit_n(*m, p.gen, p.n);
  OpenAIChatShape shape;
  shape.id = "chatcmpl-" + req.id;
  shape.created = unix_now();
  shape.model = m->name();
  shape.stream = p.stream;
  shape.include_usage = p.include_usage;
  shape.logprobs = p.logprobs;
  shape.tools = std::move(tool_mode);
  return openai_chat_response(std::move(hs), std::move(shape));
}

}  // namespace

namespace {

// OpenAI's tool_calls entries; with_index: the streaming delta form.
json openai_calls(const std::vector<ParsedToolCall>& calls, ToolFormat fmt) {
  json out = json::array();
  for (const auto& c : calls) {
    std::string id = c.id;
    if (id.empty()) id = new_tool_call_id(fmt == ToolFormat::Mistral);
    out.push_back({{"id", id}, {"type", "function"}, {"function", {{"name", c.name}, {"arguments", dump(c.arguments)}}}});
  }
  return out;
}

// The calls of a finished choice (none unless tool mode is on and the text holds some).
ToolParse tool_parse(const ToolMode& t, const std::string& text) {
  if (!t.on) return ToolParse{text, {}};
  ToolParse p = parse_tool_calls(text, t.format, t.names);
  if (!t.parallel && p.calls.size() > 1) p.calls.resize(1);
  return p;
}

}  // namespace

HttpResponse openai_chat_response(std::vector<std::shared_ptr<RequestHandle>> hs, OpenAIChatShape shape) {
  const std::string id = shape.id;
  const int64_t created = shape.created;
  const std::string name = shape.model;
  const int n = static_cast<int>(hs.size());
  const ToolMode tm = shape.tools;
  HttpResponse res;
  if (shape.stream) {
    auto usage = std::make_shared<Usage>();
    json base = {{"id", id}, {"object", "chat.completion.chunk"}, {"created", created}, {"model", name},
                 {"system_fingerprint", "lmhost"}};
    std::string prefix;
    for (int i = 0; i < n; ++i) {
      json c = base;
      c["choices"] = json::array(
          {{{"index", i}, {"delta", {{"role", "assistant"}, {"content", ""}}}, {"logprobs", nullptr},
            {"finish_reason", nullptr}}});
      prefix += sse(c);
    }
    const bool lp = shape.logprobs;
    const bool include_usage = shape.include_usage;
    // Per choice: output that may be a tool call is held back until the end.
    auto streamers = std::make_shared<std::vector<ToolCallStreamer>>();
    if (tm.on)
      for (int i = 0; i < n; ++i) streamers->emplace_back(tm.format, tm.names);
    auto on_event = [base, usage, lp, tm, streamers](int i, const TokenEvent& ev) -> std::string {
      json c = base;
      if (ev.kind == TokenEvent::Kind::Token) {
        const std::string text = tm.on ? (*streamers)[i].feed(ev.text) : ev.text;
        if (text.empty() && !lp) return "";
        json choice = {{"index", i}, {"delta", {{"content", text}}}, {"finish_reason", nullptr}};
        choice["logprobs"] = lp ? json{{"content", json::array({chat_logprob_entry(ev)})}} : json(nullptr);
        c["choices"] = json::array({choice});
        return sse(c);
      }
      if (i == 0) {
        usage->prompt = ev.stats.prompt_tokens;
        usage->cached = ev.stats.cached_tokens;
      }
      usage->completion += ev.stats.completion_tokens;
      std::string out;
      if (ev.finish == FinishReason::Error) out += sse_error(ev.error);
      std::string text = ev.text;
      const char* finish = openai_finish(ev.finish);
      if (tm.on) {
        ToolCallStreamer& st = (*streamers)[i];
        text = st.feed(ev.text);
        ToolParse p = st.finish();
        if (!tm.parallel && p.calls.size() > 1) p.calls.resize(1);
        text += p.content;
        if (!p.calls.empty() && ev.finish != FinishReason::Error) {
          // Content first, then per call its id, type and name, then its arguments.
          auto chunk = [&](json delta) {
            json x = base;
            x["choices"] = json::array(
                {{{"index", i}, {"delta", std::move(delta)}, {"logprobs", nullptr}, {"finish_reason", nullptr}}});
            return sse(x);
          };
          if (!text.empty()) out += chunk({{"content", text}});
          text.clear();
          const json calls = openai_calls(p.calls, tm.format);
          for (size_t k = 0; k < calls.size(); ++k) {
            out += chunk({{"tool_calls", json::array({{{"index", k}, {"id", calls[k]["id"]}, {"type", "function"},
                                                       {"function", {{"name", calls[k]["function"]["name"]},
                                                                     {"arguments", ""}}}}})}});
            out += chunk({{"tool_calls", json::array({{{"index", k},
                                                       {"function", {{"arguments", calls[k]["function"]["arguments"]}}}}})}});
          }
          finish = "tool_calls";
        }
      }
      json delta = json::object();
      if (!text.empty()) delta["content"] = text;
      c["choices"] = json::array(
          {{{"index", i}, {"delta", delta}, {"logprobs", nullptr}, {"finish_reason", finish}}});
      return out + sse(c);
    };
    auto on_end = sse_end(base, usage, include_usage);
    res.content_type = "text/event-stream";
    res.stream = std::make_shared<GenStream>(hs, prefix, on_event, on_end);
    return res;
  }
  const bool lp = shape.logprobs;
  res.deferred = std::make_shared<GenDeferred>(hs, lp, [id, created, name, lp, tm](std::vector<ChoiceResult>& rs) {
    json choices = json::array();
    Usage u;
    for (size_t i = 0; i < rs.size(); ++i) {
      const ChoiceResult& c = rs[i];
      if (c.finish == FinishReason::Error) return openai_error(500, "generation failed: " + c.error);
      json message = {{"role", "assistant"}, {"content", c.text}};
      const char* finish = openai_finish(c.finish);
      if (tm.on) {
        ToolParse p = tool_parse(tm, c.text);
        if (!p.calls.empty()) {
          message["content"] = p.content.empty() ? json(nullptr) : json(p.content);
          message["tool_calls"] = openai_calls(p.calls, tm.format);
          finish = "tool_calls";
        }
      }
      json choice = {{"index", i}, {"message", std::move(message)}, {"finish_reason", finish}};
      if (lp) {
        json content = json::array();
        for (const auto& ev : c.tokens) content.push_back(chat_logprob_entry(ev));
        choice["logprobs"] = {{"content", content}};
      } else {
        choice["logprobs"] = nullptr;
      }
      choices.push_back(std::move(choice));
      if (i == 0) {
        u.prompt = c.stats.prompt_tokens;
        u.cached = c.stats.cached_tokens;
      }
      u.completion += c.stats.completion_tokens;
    }
    json out = {{"id", id}, {"object", "chat.completion"}, {"created", created}, {"model", name},
                {"system_fingerprint", "lmhost"}, {"choices", choices},
                {"usage", usage_json(u.prompt, u.completion, u.cached)}};
    return HttpResponse::json(200, dump(out));
  });
  return res;
}

namespace {

// prompt: string, [string], [int], [[int]]
std::vector<std::vector<Token>> completion_prompts(const json& b, const ServedModel& m) {
  auto it = b.find("prompt");
  if (it == b.end() || it->is_null()) throw Error("'prompt' is required", 400);
  std::vector<std::vector<Token>> out;
  const int n_vocab = m.tokenizer().n_vocab();
  auto ids = [&](const json& arr) {
    std::vector<Token> t;
    for (const auto& x : arr) {
      if (!x.is_number_integer()) throw Error("'prompt' token lists must hold integers", 400);
      const int64_t v = x.get<int64_t>();
      if (v < 0 || v >= n_vocab) throw Error("prompt token id " + std::to_string(v) + " is out of range", 400);
      t.push_back(static_cast<Token>(v));
    }
    return t;
  };
  if (it->is_string()) {
    out.push_back(tokenize_prompt(m, it->get<std::string>()));
  } else if (it->is_array()) {
    if (it->empty()) throw Error("'prompt' must not be empty", 400);
    if ((*it)[0].is_number_integer()) {
      out.push_back(ids(*it));
    } else {
      if (it->size() > 16) throw Error("'prompt' lists at most 16 prompts", 400);
      for (const auto& x : *it) {
        if (x.is_string()) out.push_back(tokenize_prompt(m, x.get<std::string>()));
        else if (x.is_array()) out.push_back(ids(x));
        else throw Error("'prompt' must be a string, a list of strings or token lists", 400);
      }
    }
  } else {
    throw Error("'prompt' must be a string or a list of strings", 400);
  }
  for (const auto& p : out)
    if (p.empty()) throw Error("a prompt is empty after tokenization", 400);
  return out;
}

json completion_logprobs(const std::vector<TokenEvent>& evs) {
  json tokens = json::array(), lps = json::array(), tops = json::array(), offs = json::array();
  size_t off = 0;
  for (const auto& ev : evs) {
    tokens.push_back(ev.chosen.piece);
    lps.push_back(ev.chosen.logprob);
    json t = json::object();
    for (const auto& x : ev.top) t[x.piece] = x.logprob;
    tops.push_back(t);
    offs.push_back(off);
    off += ev.chosen.piece.size();
  }
  return {{"tokens", tokens}, {"token_logprobs", lps}, {"top_logprobs", tops}, {"text_offset", offs}};
}

HttpResponse completions(Ctx& ctx, HttpRequest& req) {
  json b = parse_body(req);
  if (auto up = maybe_proxy(ctx, req, b, ProxyEndpoint::OpenAICompletions)) return std::move(*up);
  auto m = resolve_model(ctx, opt_string(b, "model").value_or(""));
  OpenAIParams p = read_params(b, *m, /*chat=*/false);
  const bool echo = opt_bool(b, "echo").value_or(false);
  // Extension (as llama.cpp's /completion): the generated token ids per choice,
  // so clients can compare ids without re-tokenizing the text.
  const bool return_tokens = opt_bool(b, "return_tokens").value_or(false);
  if (auto sfx = opt_string(b, "suffix"); sfx && !sfx->empty())
    throw Error("'suffix' (fill-in-the-middle) is not supported", 400);
  auto prompts = completion_prompts(b, *m);
  p.gen.deadline = deadline_from(ctx);
  std::vector<std::shared_ptr<RequestHandle>> hs;
  std::vector<std::string> echo_text;
  try {
    for (auto& pr : prompts) {
      GenerateRequest g = p.gen;
      g.prompt = pr;
      if (echo) echo_text.push_back(m->tokenizer().decode(pr));
      for (auto& h : submit_n(*m, g, p.n)) hs.push_back(h);
    }
  } catch (...) {
    for (auto& h : hs) h->cancel();
    throw;
  }
  const int n = p.n;
  const std::string id = "cmpl-" + req.id;
  const int64_t created = unix_now();
  const std::string name = m->name();
  HttpResponse res;
  if (p.stream) {
    auto usage = std::make_shared<Usage>();
    json base = {{"id", id}, {"object", "text_completion"}, {"created", created}, {"model", name},
                 {"system_fingerprint", "lmhost"}};
    std::string prefix;
    for (size_t i = 0; i < echo_text.size(); ++i)
      for (int k = 0; k < n; ++k) {
        json c = base;
        c["choices"] = json::array(
            {{{"index", i * n + k}, {"text", echo_text[i]}, {"logprobs", nullptr}, {"finish_reason", nullptr}}});
        prefix += sse(c);
      }
    const bool lp = p.logprobs;
    const bool include_usage = p.include_usage;
    auto on_event = [base, usage, lp, n, return_tokens](int i, const TokenEvent& ev) -> std::string {
      json c = base;
      if (ev.kind == TokenEvent::Kind::Token) {
        if (ev.text.empty() && !lp && !return_tokens) return "";
        json choice = {{"index", i}, {"text", ev.text},
                       {"logprobs", lp ? completion_logprobs({ev}) : json(nullptr)}, {"finish_reason", nullptr}};
        if (return_tokens) choice["tokens"] = json::array({ev.token});
        c["choices"] = json::array({choice});
        return sse(c);
      }
      if (i % n == 0) {
        usage->prompt += ev.stats.prompt_tokens;
        usage->cached += ev.stats.cached_tokens;
      }
      usage->completion += ev.stats.completion_tokens;
      std::string out;
      if (ev.finish == FinishReason::Error) out += sse_error(ev.error);
      c["choices"] = json::array(
          {{{"index", i}, {"text", ev.text}, {"logprobs", nullptr}, {"finish_reason", openai_finish(ev.finish)}}});
      return out + sse(c);
    };
    auto on_end = sse_end(base, usage, include_usage);
    res.content_type = "text/event-stream";
    res.stream = std::make_shared<GenStream>(hs, prefix, on_event, on_end);
    return res;
  }
  const bool lp = p.logprobs;
  res.deferred = std::make_shared<GenDeferred>(
      hs, lp || return_tokens, [id, created, name, lp, n, echo_text, return_tokens](std::vector<ChoiceResult>& rs) {
        json choices = json::array();
        Usage u;
        for (size_t i = 0; i < rs.size(); ++i) {
          const ChoiceResult& c = rs[i];
          if (c.finish == FinishReason::Error) return openai_error(500, "generation failed: " + c.error);
          const std::string text = (echo_text.empty() ? std::string() : echo_text[i / n]) + c.text;
          json choice = {{"index", i}, {"text", text},
                         {"logprobs", lp ? completion_logprobs(c.tokens) : json(nullptr)},
                         {"finish_reason", openai_finish(c.finish)}};
          if (return_tokens) {
            json ids = json::array();
            for (const auto& ev : c.tokens) ids.push_back(ev.token);
            choice["tokens"] = std::move(ids);
          }
          choices.push_back(std::move(choice));
          if (i % n == 0) {
            u.prompt += c.stats.prompt_tokens;
            u.cached += c.stats.cached_tokens;
          }
          u.completion += c.stats.completion_tokens;
        }
        json out = {{"id", id}, {"object", "text_completion"}, {"created", created}, {"model", name},
                    {"system_fingerprint", "lmhost"}, {"choices", choices},
                    {"usage", usage_json(u.prompt, u.completion, u.cached)}};
        return HttpResponse::json(200, dump(out));
      });
  return res;
}

json model_object(const ServedModel& m) {
  int64_t created = unix_now();
  if (m.state() == ModelState::Ready)
    created = std::chrono::duration_cast<std::chrono::seconds>(m.loaded_at().time_since_epoch()).count();
  return {{"id", m.name()}, {"object", "model"}, {"created", created}, {"owned_by", "lmhost"},
          {"status", model_state_name(m.state())}, {"demo", m.demo()}};
}

// An alias (weighted versions): listed like a model, with its versions and weights.
json alias_object(const ModelAlias& a) {
  json versions = json::object();
  for (const auto& [v, w] : a.versions) versions[v] = w;
  return {{"id", a.name}, {"object", "model"}, {"created", unix_now()}, {"owned_by", "lmhost"},
          {"alias", true}, {"versions", versions}};
}

}  // namespace

void register_openai(server::Router& r, std::shared_ptr<Ctx> ctx) {
  r.add("POST", "/v1/chat/completions", [ctx](HttpRequest& req) { return chat_completions(*ctx, req); });
  r.add("POST", "/v1/completions", [ctx](HttpRequest& req) { return completions(*ctx, req); });
  r.add("GET", "/v1/models", [ctx](HttpRequest&) {
    json data = json::array();
    for (const auto& m : ctx->pool->list()) data.push_back(model_object(*m));
    for (const auto& a : ctx->pool->aliases()) data.push_back(alias_object(a));
    append_upstream_models_openai(*ctx, data);
    return HttpResponse::json(200, dump(json{{"object", "list"}, {"data", data}}));
  });
  r.add("GET", "/v1/models/{*id}", [ctx](HttpRequest& req) {
    for (const auto& a : ctx->pool->aliases())
      if (a.name == req.params["id"]) return HttpResponse::json(200, dump(alias_object(a)));
    auto m = ctx->pool->find(req.params["id"]);
    if (!m) {  // an upstream's model
      json ups = json::array();
      append_upstream_models_openai(*ctx, ups);
      for (auto& u : ups)
        if (u["id"] == req.params["id"]) return HttpResponse::json(200, dump(u));
    }
    if (!m) return openai_error(404, "model '" + req.params["id"] + "' does not exist", "invalid_request_error", "model");
    return HttpResponse::json(200, dump(model_object(*m)));
  });
}

}  // namespace lmhost::api
