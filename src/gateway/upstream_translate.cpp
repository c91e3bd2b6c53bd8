// OpenAI <-> Ollama translation for upstreams (see upstream_translate.h).
#include "gateway/upstream_translate.h"
#include "util/base64.h"
#include "util/rfc3339.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <functional>
#include <vector>

namespace lmhost::gateway {

using json = nlohmann::json;

namespace {

std::string dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

int64_t unix_now() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

int64_t created_of(const ResponseMeta& m) { return m.created ? m.created : unix_now(); }
std::string created_at_of(const ResponseMeta& m) { return m.created_at.empty() ? rfc3339_now() : m.created_at; }

std::string str_at(const json& j, const char* k) {
  auto it = j.find(k);
  return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
}

bool has(const json& j, const char* k) { return j.is_object() && j.contains(k) && !j[k].is_null(); }

// ---- requests --------------------------------------------------------------

// Content parts joined into one string (both APIs accept strings); tool-call
// arguments as the other side wants them (OpenAI: a JSON string, Ollama: an object).
json convert_messages(const json& msgs, bool to_openai) {
  if (!msgs.is_array()) return msgs;
  json out = json::array();
  for (const auto& m : msgs) {
    json x = m;
    if (!x.is_object()) {
      out.push_back(std::move(x));
      continue;
    }
    if (x.contains("content") && x["content"].is_array()) {
      std::string s;
      for (const auto& part : x["content"])
        if (part.is_object() && part.value("type", "") == "text") s += part.value("text", "");
      x["content"] = s;
    }
    if (x.contains("content") && x["content"].is_null()) x["content"] = "";
    x.erase("images");
    if (x.contains("tool_calls") && x["tool_calls"].is_array()) {
      json calls = json::array();
      int i = 0;
      for (const auto& c : x["tool_calls"]) {
        if (!c.is_object() || !c.contains("function") || !c["function"].is_object()) continue;
        json f = c["function"];
        if (to_openai) {
          if (f.contains("arguments") && !f["arguments"].is_string()) f["arguments"] = dump(f["arguments"]);
          calls.push_back({{"id", c.value("id", "call_" + std::to_string(i))}, {"type", "function"}, {"function", f}});
        } else {
          if (f.contains("arguments") && f["arguments"].is_string()) {
            json a = json::parse(f["arguments"].get<std::string>(), nullptr, false);
            f["arguments"] = a.is_discarded() ? json::object() : a;
          }
          calls.push_back({{"function", f}});
        }
        ++i;
      }
      x["tool_calls"] = calls;
    }
    out.push_back(std::move(x));
  }
  return out;
}

// Sampling fields both APIs name alike (OpenAI top level, Ollama in options).
constexpr const char* kSharedOptions[] = {"temperature", "top_p", "seed", "presence_penalty", "frequency_penalty",
                                          "stop"};
// Accepted by Ollama (and lmhost / vLLM as OpenAI extensions) but not by OpenAI itself: only passed to Ollama.
constexpr const char* kOllamaOnlyOptions[] = {"top_k", "min_p", "repeat_penalty"};

json options_from_openai(const json& b, bool completions) {
  json opt = json::object();
  for (const char* k : kSharedOptions)
    if (has(b, k)) opt[k] = b[k];
  for (const char* k : kOllamaOnlyOptions)
    if (has(b, k)) opt[k] = b[k];
  if (has(b, "max_completion_tokens") && b["max_completion_tokens"].is_number())
    opt["num_predict"] = b["max_completion_tokens"];
  else if (has(b, "max_tokens") && b["max_tokens"].is_number())
    opt["num_predict"] = b["max_tokens"];
  else if (completions)
    opt["num_predict"] = 16;  // OpenAI's default for completions (Ollama's is unbounded)
  return opt;
}

void openai_options_from_ollama(const json& b, json& o) {
  if (!has(b, "options") || !b["options"].is_object()) return;
  const json& opt = b["options"];
  for (const char* k : kSharedOptions)
    if (has(opt, k)) o[k] = opt[k];
  if (has(opt, "num_predict") && opt["num_predict"].is_number_integer() && opt["num_predict"].get<int64_t>() > 0)
    o["max_tokens"] = opt["num_predict"];
}

// OpenAI response_format -> Ollama format.
void format_from_openai(const json& b, json& o) {
  if (!has(b, "response_format") || !b["response_format"].is_object()) return;
  const std::string type = str_at(b["response_format"], "type");
  if (type == "json_object") {
    o["format"] = "json";
  } else if (type == "json_schema") {
    const json& js = b["response_format"].value("json_schema", json::object());
    o["format"] = js.is_object() && js.contains("schema") ? js["schema"] : json("json");
  }
}

// Ollama format -> OpenAI response_format.
void format_from_ollama(const json& b, json& o) {
  if (!has(b, "format")) return;
  if (b["format"].is_string() && b["format"].get<std::string>() == "json")
    o["response_format"] = {{"type", "json_object"}};
  else if (b["format"].is_object())
    o["response_format"] = {{"type", "json_schema"}, {"json_schema", {{"name", "response"}, {"schema", b["format"]}}}};
}

UpstreamRequest fail(std::string why) {
  UpstreamRequest r;
  r.why = std::move(why);
  return r;
}

UpstreamRequest done(Endpoint target, json body) {
  UpstreamRequest r;
  r.ok = true;
  r.target = target;
  r.body = std::move(body);
  return r;
}

UpstreamRequest to_ollama(Endpoint client, const json& b, const std::string& model, bool stream) {
  switch (client) {
    case Endpoint::OpenAIChat: {
      if (has(b, "n") && b["n"].is_number() && b["n"].get<double>() > 1)
        return fail("'n' > 1 has no Ollama equivalent");
      json o = {{"model", model}, {"messages", convert_messages(b.value("messages", json::array()), false)},
                {"stream", stream}};
      json opt = options_from_openai(b, false);
      if (!opt.empty()) o["options"] = opt;
      format_from_openai(b, o);
      if (has(b, "tools")) o["tools"] = b["tools"];
      return done(Endpoint::OllamaChat, std::move(o));
    }
    case Endpoint::OpenAICompletions: {
      std::string prompt;
      const json p = b.value("prompt", json());
      if (p.is_string()) prompt = p.get<std::string>();
      else if (p.is_array() && p.size() == 1 && p[0].is_string()) prompt = p[0].get<std::string>();
      else return fail("only a single text prompt can be sent to an Ollama upstream (not token ids or several prompts)");
      if (has(b, "n") && b["n"].is_number() && b["n"].get<double>() > 1)
        return fail("'n' > 1 has no Ollama equivalent");
      if (b.value("echo", false)) return fail("'echo' has no Ollama equivalent");
      if (has(b, "logprobs")) return fail("'logprobs' has no Ollama equivalent");
      // Completions are raw continuations: no chat template.
      json o = {{"model", model}, {"prompt", prompt}, {"raw", true}, {"stream", stream}};
      if (has(b, "suffix")) o["suffix"] = b["suffix"];
      o["options"] = options_from_openai(b, true);
      format_from_openai(b, o);
      return done(Endpoint::OllamaGenerate, std::move(o));
    }
    case Endpoint::OpenAIEmbeddings: {
      const json in = b.value("input", json());
      bool texts = in.is_string();
      if (in.is_array() && !in.empty()) {
        texts = true;
        for (const auto& x : in) texts = texts && x.is_string();
      }
      if (!texts) return fail("only text inputs can be sent to an Ollama upstream (not token ids)");
      json o = {{"model", model}, {"input", in}, {"truncate", true}};
      if (has(b, "dimensions")) o["dimensions"] = b["dimensions"];
      return done(Endpoint::OllamaEmbed, std::move(o));
    }
    default:
      return fail("not an OpenAI request");
  }
}

UpstreamRequest to_openai(Endpoint client, const json& b, const std::string& model, bool stream) {
  switch (client) {
    case Endpoint::OllamaChat: {
      json o = {{"model", model}, {"messages", convert_messages(b.value("messages", json::array()), true)},
                {"stream", stream}};
      openai_options_from_ollama(b, o);
      format_from_ollama(b, o);
      if (stream) o["stream_options"] = {{"include_usage", true}};  // counts for the done line
      if (has(b, "tools")) o["tools"] = b["tools"];
      return done(Endpoint::OpenAIChat, std::move(o));
    }
    case Endpoint::OllamaGenerate: {
      if (has(b, "context") && b["context"].is_array() && !b["context"].empty())
        return fail("'context' holds token ids of one Ollama server; it has no OpenAI equivalent");
      if (has(b, "images") && b["images"].is_array() && !b["images"].empty())
        return fail("'images' cannot be sent to an OpenAI upstream");
      const std::string prompt = str_at(b, "prompt");
      if (prompt.empty()) return fail("an empty prompt (load or unload a model) has no OpenAI equivalent");
      json o = {{"model", model}, {"stream", stream}};
      openai_options_from_ollama(b, o);
      format_from_ollama(b, o);
      if (stream) o["stream_options"] = {{"include_usage", true}};
      if (b.value("raw", false)) {  // a raw prompt: a plain completion
        o["prompt"] = prompt;
        if (has(b, "suffix")) o["suffix"] = b["suffix"];
        return done(Endpoint::OpenAICompletions, std::move(o));
      }
      // Templated: the prompt is a user message (with the system prompt), as Ollama renders it.
      json msgs = json::array();
      if (!str_at(b, "system").empty()) msgs.push_back({{"role", "system"}, {"content", str_at(b, "system")}});
      msgs.push_back({{"role", "user"}, {"content", prompt}});
      o["messages"] = msgs;
      return done(Endpoint::OpenAIChat, std::move(o));
    }
    case Endpoint::OllamaEmbed: {
      json o = {{"model", model}, {"input", b.value("input", json())}, {"encoding_format", "float"}};
      if (has(b, "dimensions")) o["dimensions"] = b["dimensions"];
      return done(Endpoint::OpenAIEmbeddings, std::move(o));
    }
    case Endpoint::OllamaEmbeddings: {
      if (!has(b, "prompt") || !b["prompt"].is_string()) return fail("'prompt' (the text to embed) must be a string");
      return done(Endpoint::OpenAIEmbeddings,
                  json{{"model", model}, {"input", b["prompt"]}, {"encoding_format", "float"}});
    }
    default:
      return fail("not an Ollama request");
  }
}

// ---- responses -------------------------------------------------------------

std::string sse(const json& j) { return "data: " + dump(j) + "\n\n"; }

std::string openai_error_body(int status, const std::string& msg) {
  const char* type = status == 404 ? "not_found_error" : status >= 500 ? "server_error" : "invalid_request_error";
  return dump(json{{"error", {{"message", msg}, {"type", type}, {"param", nullptr}, {"code", nullptr}}}});
}

std::string ollama_error_body(const std::string& msg) { return dump(json{{"error", msg}}); }

// The message of an error body of either shape.
std::string error_message_of(const std::string& body) {
  json j = json::parse(body, nullptr, false);
  if (j.is_object() && j.contains("error")) {
    const json& e = j["error"];
    if (e.is_string()) return e.get<std::string>();
    if (e.is_object() && e.contains("message") && e["message"].is_string()) return e["message"].get<std::string>();
  }
  return body;
}

std::string finish_from_ollama(const json& j, bool tool_calls) {
  if (tool_calls) return "tool_calls";
  return str_at(j, "done_reason") == "length" ? "length" : "stop";
}

std::string done_reason_from_openai(const std::string& finish) { return finish == "length" ? "length" : "stop"; }

json usage(int64_t p, int64_t c) { return {{"prompt_tokens", p}, {"completion_tokens", c}, {"total_tokens", p + c}}; }

// Ollama tool calls (arguments objects) -> OpenAI (JSON strings), with an index for stream deltas.
json openai_tool_calls(const json& calls, bool with_index) {
  json out = json::array();
  int i = 0;
  for (const auto& c : calls) {
    if (!c.is_object() || !c.contains("function") || !c["function"].is_object()) continue;
    const json& f = c["function"];
    const json args = f.value("arguments", json::object());
    json t = {{"id", "call_" + std::to_string(i)}, {"type", "function"},
              {"function", {{"name", f.value("name", "")}, {"arguments", args.is_string() ? args : json(dump(args))}}}};
    if (with_index) t["index"] = i;
    out.push_back(std::move(t));
    ++i;
  }
  return out;
}

// OpenAI tool calls -> Ollama's.
json ollama_tool_calls(const json& calls) {
  json out = json::array();
  for (const auto& c : calls) {
    if (!c.is_object() || !c.contains("function") || !c["function"].is_object()) continue;
    const json& f = c["function"];
    json args = json::object();
    if (f.contains("arguments") && f["arguments"].is_string()) {
      args = json::parse(f["arguments"].get<std::string>(), nullptr, false);
      if (args.is_discarded()) args = json::object();
    } else if (f.contains("arguments")) {
      args = f["arguments"];
    }
    out.push_back({{"function", {{"name", f.value("name", "")}, {"arguments", args}}}});
  }
  return out;
}

// Text of an Ollama answer: message.content (chat) or response (generate).
std::string ollama_text(const json& j) {
  if (j.contains("message") && j["message"].is_object()) return str_at(j["message"], "content");
  return str_at(j, "response");
}

json ollama_tool_calls_of(const json& j) {
  if (j.contains("message") && j["message"].is_object() && j["message"].contains("tool_calls") &&
      j["message"]["tool_calls"].is_array())
    return j["message"]["tool_calls"];
  return json::array();
}

// Text of an OpenAI choice: message.content / delta.content (chat) or text (completions).
std::string openai_text(const json& ch) {
  for (const char* k : {"message", "delta"})
    if (ch.contains(k) && ch[k].is_object()) return str_at(ch[k], "content");
  return str_at(ch, "text");
}

// One Ollama answer line in the client's endpoint shape.
json ollama_line(bool chat, const ResponseMeta& m, const std::string& text, bool is_done) {
  json j = {{"model", m.model}, {"created_at", created_at_of(m)}};
  if (chat) j["message"] = {{"role", "assistant"}, {"content", text}};
  else j["response"] = text;
  j["done"] = is_done;
  return j;
}

class WholeTransform : public BodyTransform {
 public:
  explicit WholeTransform(std::function<std::string(const std::string&)> f) : f_(std::move(f)) {}
  std::string feed(const std::string& chunk) override {
    buf_ += chunk;
    return "";
  }
  std::string finish() override { return f_(buf_); }

 private:
  std::function<std::string(const std::string&)> f_;
  std::string buf_;
};

// Line-based streams (NDJSON, SSE): on_line for every complete non-empty line.
class LineTransform : public BodyTransform {
 public:
  std::string feed(const std::string& chunk) override {
    buf_ += chunk;
    std::string out;
    size_t nl;
    while ((nl = buf_.find('\n')) != std::string::npos) {
      std::string line = buf_.substr(0, nl);
      buf_.erase(0, nl + 1);
      if (!line.empty() && line.back() == '\r') line.pop_back();
      if (!line.empty()) out += on_line(line);
    }
    return out;
  }
  std::string finish() override {
    std::string out;
    if (!buf_.empty()) out += on_line(buf_);
    buf_.clear();
    return out + on_end();
  }

 protected:
  virtual std::string on_line(const std::string& line) = 0;
  virtual std::string on_end() { return ""; }

 private:
  std::string buf_;
};

// Ollama NDJSON (chat or generate) -> OpenAI SSE chunks (chat or completions).
class NdjsonToSse : public LineTransform {
 public:
  NdjsonToSse(bool chat, ResponseMeta m) : chat_(chat), m_(std::move(m)) {
    base_ = {{"id", (chat_ ? "chatcmpl-" : "cmpl-") + m_.request_id},
             {"object", chat_ ? "chat.completion.chunk" : "text_completion"},
             {"created", created_of(m_)},
             {"model", m_.model},
             {"system_fingerprint", "lmhost"}};
  }

 protected:
  std::string on_line(const std::string& line) override {
    if (ended_) return "";
    json j = json::parse(line, nullptr, false);
    if (!j.is_object()) return "";
    if (j.contains("error")) {
      ended_ = true;
      const std::string msg = j["error"].is_string() ? j["error"].get<std::string>() : dump(j["error"]);
      return sse(json{{"error", {{"message", msg}, {"type", "server_error"}, {"param", nullptr}, {"code", nullptr}}}}) +
             "data: [DONE]\n\n";
    }
    const std::string text = ollama_text(j);
    const json calls = ollama_tool_calls_of(j);
    tool_calls_ = tool_calls_ || !calls.empty();
    const bool is_done = j.value("done", false);
    json c = base_;
    json choice = {{"index", 0}};
    if (chat_) {
      json delta = json::object();
      if (first_) delta["role"] = "assistant";
      if (!text.empty() || (!is_done && calls.empty())) delta["content"] = text;
      if (!calls.empty()) delta["tool_calls"] = openai_tool_calls(calls, true);
      choice["delta"] = delta;
    } else {
      if (text.empty() && !is_done) return "";
      choice["text"] = text;
    }
    first_ = false;
    choice["logprobs"] = nullptr;
    choice["finish_reason"] = is_done ? json(finish_from_ollama(j, tool_calls_)) : json(nullptr);
    c["choices"] = json::array({choice});
    if (!is_done) return sse(c);
    ended_ = true;
    std::string out = sse(c);
    if (m_.include_usage) {
      json u = base_;
      u["choices"] = json::array();
      u["usage"] = usage(j.value("prompt_eval_count", int64_t{0}), j.value("eval_count", int64_t{0}));
      out += sse(u);
    }
    return out + "data: [DONE]\n\n";
  }
  std::string on_end() override {
    if (ended_) return "";
    // The upstream's stream stopped without its done line.
    return sse(json{{"error", {{"message", "the upstream's stream ended early"}, {"type", "server_error"},
                               {"param", nullptr}, {"code", nullptr}}}}) +
           "data: [DONE]\n\n";
  }

 private:
  bool chat_;
  ResponseMeta m_;
  json base_;
  bool first_ = true, ended_ = false, tool_calls_ = false;
};

// OpenAI SSE (chat or completions) -> Ollama NDJSON lines (chat or generate).
class SseToNdjson : public LineTransform {
 public:
  SseToNdjson(bool chat, ResponseMeta m) : chat_(chat), m_(std::move(m)) {}

 protected:
  std::string on_line(const std::string& line) override {
    if (failed_ || line.rfind("data:", 0) != 0) return "";
    std::string data = line.substr(5);
    while (!data.empty() && data.front() == ' ') data.erase(data.begin());
    if (data == "[DONE]") {
      finished_ = true;
      return "";
    }
    json j = json::parse(data, nullptr, false);
    if (!j.is_object()) return "";
    if (j.contains("error")) {
      failed_ = true;
      const json& e = j["error"];
      return dump(json{{"error", e.is_object() ? e.value("message", dump(e)) : e.is_string() ? e.get<std::string>()
                                                                                           : dump(e)}}) +
             "\n";
    }
    if (j.contains("usage") && j["usage"].is_object()) {
      prompt_ = j["usage"].value("prompt_tokens", int64_t{-1});
      completion_ = j["usage"].value("completion_tokens", int64_t{-1});
    }
    if (!j.contains("choices") || !j["choices"].is_array() || j["choices"].empty()) return "";
    const json& ch = j["choices"][0];
    if (ch.contains("delta") && ch["delta"].is_object() && ch["delta"].contains("tool_calls") &&
        ch["delta"]["tool_calls"].is_array()) {
      for (const auto& t : ch["delta"]["tool_calls"]) {  // pieces by index: id, name, then argument text
        const size_t i = t.value("index", size_t{0});
        if (calls_.size() <= i) calls_.resize(i + 1, json{{"function", {{"name", ""}, {"arguments", ""}}}});
        if (t.contains("function") && t["function"].is_object()) {
          const json& f = t["function"];
          if (f.contains("name") && f["name"].is_string())
            calls_[i]["function"]["name"] = calls_[i]["function"]["name"].get<std::string>() + f["name"].get<std::string>();
          if (f.contains("arguments") && f["arguments"].is_string())
            calls_[i]["function"]["arguments"] =
                calls_[i]["function"]["arguments"].get<std::string>() + f["arguments"].get<std::string>();
        }
      }
    }
    const std::string text = openai_text(ch);
    std::string out;
    if (!text.empty()) out += dump(ollama_line(chat_, m_, text, false)) + "\n";
    if (ch.contains("finish_reason") && ch["finish_reason"].is_string()) {
      reason_ = ch["finish_reason"].get<std::string>();
      finished_ = true;
    }
    return out;
  }
  // The done line once the stream is over (the usage chunk comes after the finish reason).
  std::string on_end() override {
    if (failed_) return "";
    if (!finished_) return dump(json{{"error", "the upstream's stream ended early"}}) + "\n";
    json j = ollama_line(chat_, m_, "", true);
    if (chat_ && !calls_.empty()) j["message"]["tool_calls"] = ollama_tool_calls(json(calls_));
    j["done_reason"] = done_reason_from_openai(reason_);
    if (prompt_ >= 0) j["prompt_eval_count"] = prompt_;
    if (completion_ >= 0) j["eval_count"] = completion_;
    return dump(j) + "\n";
  }

 private:
  bool chat_;
  ResponseMeta m_;
  std::string reason_ = "stop";
  bool finished_ = false, failed_ = false;
  int64_t prompt_ = -1, completion_ = -1;
  std::vector<json> calls_;
};

// Same flavour, other model name: the "model" field of the body (JSON) or of
// every NDJSON line / SSE event shows the client's name. Framing is kept.
class RenameTransform : public BodyTransform {
 public:
  RenameTransform(bool stream, std::string model) : stream_(stream), model_(std::move(model)) {}
  std::string feed(const std::string& chunk) override {
    buf_ += chunk;
    if (!stream_) return "";
    std::string out;
    size_t nl;
    while ((nl = buf_.find('\n')) != std::string::npos) {
      out += rename_line(buf_.substr(0, nl)) + "\n";
      buf_.erase(0, nl + 1);
    }
    return out;
  }
  std::string finish() override {
    std::string out = buf_.empty() ? "" : rename_line(buf_);
    buf_.clear();
    return out;
  }

 private:
  std::string rename_line(const std::string& line) const {
    const bool sse_data = line.rfind("data:", 0) == 0;
    std::string data = sse_data ? line.substr(5) : line;
    size_t lead = 0;
    while (lead < data.size() && data[lead] == ' ') ++lead;
    json j = json::parse(data.substr(lead), nullptr, false);
    if (!j.is_object() || !j.contains("model")) return line;
    j["model"] = model_;
    return (sse_data ? "data: " : "") + dump(j) + (line.size() && line.back() == '\r' ? "\r" : "");
  }
  bool stream_;
  std::string model_;
  std::string buf_;
};

std::string ollama_to_openai_json(bool chat, const std::string& body, const ResponseMeta& m) {
  json j = json::parse(body, nullptr, false);
  if (!j.is_object()) return openai_error_body(502, "malformed upstream response");
  if (j.contains("error")) return openai_error_body(502, error_message_of(body));
  const int64_t p = j.value("prompt_eval_count", int64_t{0}), c = j.value("eval_count", int64_t{0});
  const json calls = ollama_tool_calls_of(j);
  json choice = {{"index", 0}};
  if (chat) {
    json msg = {{"role", "assistant"}, {"content", ollama_text(j)}};
    if (!calls.empty()) msg["tool_calls"] = openai_tool_calls(calls, false);
    choice["message"] = msg;
  } else {
    choice["text"] = ollama_text(j);
  }
  choice["logprobs"] = nullptr;
  choice["finish_reason"] = finish_from_ollama(j, !calls.empty());
  json out = {{"id", (chat ? "chatcmpl-" : "cmpl-") + m.request_id},
              {"object", chat ? "chat.completion" : "text_completion"},
              {"created", created_of(m)},
              {"model", m.model},
              {"system_fingerprint", "lmhost"},
              {"choices", json::array({choice})},
              {"usage", usage(p, c)}};
  return dump(out);
}

std::string openai_to_ollama_json(bool chat, const std::string& body, const ResponseMeta& m) {
  json j = json::parse(body, nullptr, false);
  if (!j.is_object() || !j.contains("choices") || !j["choices"].is_array() || j["choices"].empty())
    return ollama_error_body("malformed upstream response");
  const json& ch = j["choices"][0];
  json out = ollama_line(chat, m, openai_text(ch), true);
  if (chat && ch.contains("message") && ch["message"].is_object() && ch["message"].contains("tool_calls") &&
      ch["message"]["tool_calls"].is_array() && !ch["message"]["tool_calls"].empty())
    out["message"]["tool_calls"] = ollama_tool_calls(ch["message"]["tool_calls"]);
  out["done_reason"] = done_reason_from_openai(str_at(ch, "finish_reason"));
  if (j.contains("usage") && j["usage"].is_object()) {
    out["prompt_eval_count"] = j["usage"].value("prompt_tokens", int64_t{0});
    out["eval_count"] = j["usage"].value("completion_tokens", int64_t{0});
  }
  return dump(out);
}

std::string base64_floats(const json& v) {
  std::vector<float> f;
  f.reserve(v.size());
  for (const auto& x : v) f.push_back(x.is_number() ? x.get<float>() : 0.0f);
  return base64_encode(f.data(), f.size() * sizeof(float));
}

std::string ollama_embed_to_openai(const std::string& body, const ResponseMeta& m) {
  json j = json::parse(body, nullptr, false);
  if (!j.is_object() || !j.contains("embeddings") || !j["embeddings"].is_array())
    return openai_error_body(502, j.is_object() && j.contains("error") ? error_message_of(body)
                                                                        : "malformed upstream response");
  json data = json::array();
  size_t i = 0;
  for (const auto& v : j["embeddings"])
    data.push_back({{"object", "embedding"}, {"index", i++}, {"embedding", m.base64 ? json(base64_floats(v)) : v}});
  const int64_t p = j.value("prompt_eval_count", int64_t{0});
  return dump(json{{"object", "list"}, {"data", data}, {"model", m.model},
                   {"usage", {{"prompt_tokens", p}, {"total_tokens", p}}}});
}

std::string openai_embed_to_ollama(const std::string& body, const ResponseMeta& m, bool legacy) {
  json j = json::parse(body, nullptr, false);
  if (!j.is_object() || !j.contains("data") || !j["data"].is_array())
    return ollama_error_body(j.is_object() && j.contains("error") ? error_message_of(body) : "malformed upstream response");
  std::vector<std::pair<int64_t, json>> rows;
  for (const auto& d : j["data"])
    if (d.is_object() && d.contains("embedding")) rows.emplace_back(d.value("index", int64_t{0}), d["embedding"]);
  std::stable_sort(rows.begin(), rows.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  if (legacy) return dump(json{{"embedding", rows.empty() ? json::array() : rows[0].second}});
  json embs = json::array();
  for (auto& r : rows) embs.push_back(std::move(r.second));
  json out = {{"model", m.model}, {"embeddings", embs}};
  if (j.contains("usage") && j["usage"].is_object()) out["prompt_eval_count"] = j["usage"].value("prompt_tokens", int64_t{0});
  return dump(out);
}

}  // namespace

bool is_openai(Endpoint e) {
  return e == Endpoint::OpenAIChat || e == Endpoint::OpenAICompletions || e == Endpoint::OpenAIEmbeddings;
}

bool is_embedding(Endpoint e) {
  return e == Endpoint::OpenAIEmbeddings || e == Endpoint::OllamaEmbed || e == Endpoint::OllamaEmbeddings;
}

const char* endpoint_path(Endpoint e) {
  switch (e) {
    case Endpoint::OpenAIChat: return "/v1/chat/completions";
    case Endpoint::OpenAICompletions: return "/v1/completions";
    case Endpoint::OpenAIEmbeddings: return "/v1/embeddings";
    case Endpoint::OllamaChat: return "/api/chat";
    case Endpoint::OllamaGenerate: return "/api/generate";
    case Endpoint::OllamaEmbed: return "/api/embed";
    case Endpoint::OllamaEmbeddings: return "/api/embeddings";
  }
  return "";
}

std::optional<Endpoint> endpoint_of_path(const std::string& path) {
  for (Endpoint e : {Endpoint::OpenAIChat, Endpoint::OpenAICompletions, Endpoint::OpenAIEmbeddings, Endpoint::OllamaChat,
                     Endpoint::OllamaGenerate, Endpoint::OllamaEmbed, Endpoint::OllamaEmbeddings})
    if (path == endpoint_path(e)) return e;
  return std::nullopt;
}

UpstreamRequest translate_request(Endpoint client, const json& body, UpstreamKind kind, const std::string& remote_model,
                                  bool stream) {
  const bool up_openai = kind == UpstreamKind::OpenAI;
  if (up_openai == is_openai(client)) {
    json b = body;
    b["model"] = remote_model;
    return done(client, std::move(b));
  }
  return up_openai ? to_openai(client, body, remote_model, stream) : to_ollama(client, body, remote_model, stream);
}

ResponsePlan response_plan(Endpoint client, Endpoint target, bool stream, int status, const ResponseMeta& meta,
                           bool rename) {
  ResponsePlan p;
  const bool client_openai = is_openai(client);
  if (client_openai == is_openai(target)) {
    if (rename && status < 300) p.transform = std::make_unique<RenameTransform>(stream, meta.model);
    else p.transform = std::make_unique<BodyTransform>();
    return p;
  }
  if (status >= 300) {
    p.content_type = "application/json";
    p.transform = std::make_unique<WholeTransform>([client_openai, status](const std::string& b) {
      const std::string msg = error_message_of(b);
      return client_openai ? openai_error_body(status, msg) : ollama_error_body(msg);
    });
    return p;
  }
  const bool chat = client == Endpoint::OpenAIChat || client == Endpoint::OllamaChat;
  if (is_embedding(client)) {
    p.content_type = "application/json";
    if (client_openai)
      p.transform = std::make_unique<WholeTransform>([meta](const std::string& b) { return ollama_embed_to_openai(b, meta); });
    else
      p.transform = std::make_unique<WholeTransform>([meta, legacy = client == Endpoint::OllamaEmbeddings](
                                                         const std::string& b) { return openai_embed_to_ollama(b, meta, legacy); });
    return p;
  }
  if (client_openai) {
    if (stream) {
      p.content_type = "text/event-stream";
      p.transform = std::make_unique<NdjsonToSse>(chat, meta);
    } else {
      p.content_type = "application/json";
      p.transform = std::make_unique<WholeTransform>([chat, meta](const std::string& b) { return ollama_to_openai_json(chat, b, meta); });
    }
  } else {
    if (stream) {
      p.content_type = "application/x-ndjson";
      p.transform = std::make_unique<SseToNdjson>(chat, meta);
    } else {
      p.content_type = "application/json";
      p.transform = std::make_unique<WholeTransform>([chat, meta](const std::string& b) { return openai_to_ollama_json(chat, b, meta); });
    }
  }
  return p;
}

std::string translate_response(Endpoint client, Endpoint target, bool stream, int status, const ResponseMeta& meta,
                               const std::string& body, bool rename) {
  auto p = response_plan(client, target, stream, status, meta, rename);
  std::string out = p.transform->feed(body);
  return out + p.transform->finish();
}

}  // namespace lmhost::gateway
