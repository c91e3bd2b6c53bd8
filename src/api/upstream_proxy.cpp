// Proxying to upstreams, with OpenAI <-> Ollama chat translation (see upstream_proxy.h).
#include "api/upstream_proxy.h"

#include <set>

namespace lmhost::api {
namespace {

using gateway::ProxyState;
using gateway::Upstream;
using gateway::UpstreamKind;

// Turns the upstream's body into the client's: feed() as bytes arrive, finish() at the end.
class Transform {
 public:
  virtual ~Transform() = default;
  virtual std::string feed(const std::string& chunk) { return chunk; }
  virtual std::string finish() { return ""; }
};

// Line-based streams (NDJSON, SSE): on_line for every complete line.
class LineTransform : public Transform {
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

// Whole-body conversions.
class WholeTransform : public Transform {
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

std::string sse(const json& j) { return "data: " + dump(j) + "\n\n"; }

std::string openai_finish_of(const json& j) {
  const std::string r = j.value("done_reason", std::string("stop"));
  return r == "length" ? "length" : "stop";
}

// Ollama NDJSON chat stream -> OpenAI SSE chunks.
class NdjsonToSse : public LineTransform {
 public:
  NdjsonToSse(std::string id, std::string model) : id_(std::move(id)), model_(std::move(model)) {}

 protected:
  std::string on_line(const std::string& line) override {
    json j = json::parse(line, nullptr, false);
    if (!j.is_object()) return "";
    if (j.contains("error")) {
      const std::string msg = j["error"].is_string() ? j["error"].get<std::string>() : j["error"].dump();
      return sse(json{{"error", {{"message", msg}, {"type", "server_error"}, {"param", nullptr}, {"code", nullptr}}}});
    }
    json c = {{"id", id_}, {"object", "chat.completion.chunk"}, {"created", unix_now()}, {"model", model_},
              {"system_fingerprint", "lmhost"}};
    std::string content;
    if (j.contains("message") && j["message"].is_object() && j["message"].contains("content") &&
        j["message"]["content"].is_string())
      content = j["message"]["content"].get<std::string>();
    const bool done = j.value("done", false);
    json delta = json::object();
    if (first_) delta["role"] = "assistant";
    first_ = false;
    if (!content.empty() || !done) delta["content"] = content;
    c["choices"] = json::array({{{"index", 0}, {"delta", delta}, {"logprobs", nullptr},
                                 {"finish_reason", done ? json(openai_finish_of(j)) : json(nullptr)}}});
    if (done) {
      ended_ = true;
      return sse(c) + "data: [DONE]\n\n";
    }
    return sse(c);
  }
  std::string on_end() override { return ended_ ? "" : "data: [DONE]\n\n"; }

 private:
  std::string id_, model_;
  bool first_ = true, ended_ = false;
};

json ollama_line(const std::string& model, const std::string& content, bool done, const std::string& reason) {
  json j = {{"model", model}, {"created_at", rfc3339_now()},
            {"message", {{"role", "assistant"}, {"content", content}}}, {"done", done}};
  if (done) j["done_reason"] = reason;
  return j;
}

// OpenAI SSE chat stream -> Ollama NDJSON lines.
class SseToNdjson : public LineTransform {
 public:
  explicit SseToNdjson(std::string model) : model_(std::move(model)) {}

 protected:
  std::string on_line(const std::string& line) override {
    if (line.rfind("data:", 0) != 0) return "";
    std::string data = line.substr(5);
    while (!data.empty() && data.front() == ' ') data.erase(data.begin());
    if (data == "[DONE]") return "";
    json j = json::parse(data, nullptr, false);
    if (!j.is_object()) return "";
    if (j.contains("error")) {
      const json& e = j["error"];
      return dump(json{{"error", e.is_object() ? e.value("message", e.dump()) : e.dump()}}) + "\n";
    }
    if (j.contains("usage") && j["usage"].is_object()) {
      prompt_ = j["usage"].value("prompt_tokens", -1);
      completion_ = j["usage"].value("completion_tokens", -1);
    }
    if (!j.contains("choices") || !j["choices"].is_array() || j["choices"].empty()) return "";
    const json& ch = j["choices"][0];
    std::string content;
    if (ch.contains("delta") && ch["delta"].is_object() && ch["delta"].contains("content") &&
        ch["delta"]["content"].is_string())
      content = ch["delta"]["content"].get<std::string>();
    std::string out;
    if (!content.empty()) out += dump(ollama_line(model_, content, false, "")) + "\n";
    if (ch.contains("finish_reason") && ch["finish_reason"].is_string()) reason_ = ch["finish_reason"].get<std::string>();
    return out;
  }
  // The done line once the stream is over (the usage chunk comes after the finish reason).
  std::string on_end() override {
    json j = ollama_line(model_, "", true, reason_);
    if (prompt_ >= 0) j["prompt_eval_count"] = prompt_;
    if (completion_ >= 0) j["eval_count"] = completion_;
    return dump(j) + "\n";
  }

 private:
  std::string model_;
  std::string reason_ = "stop";
  int64_t prompt_ = -1, completion_ = -1;
};

std::string ollama_to_openai_json(const std::string& body, const std::string& id, const std::string& model) {
  json j = json::parse(body, nullptr, false);
  if (!j.is_object()) return dump(json{{"error", {{"message", "malformed upstream response"}, {"type", "server_error"}}}});
  std::string content;
  if (j.contains("message") && j["message"].is_object()) content = j["message"].value("content", std::string());
  const int p = j.value("prompt_eval_count", 0), c = j.value("eval_count", 0);
  json out = {{"id", id}, {"object", "chat.completion"}, {"created", unix_now()}, {"model", model},
              {"system_fingerprint", "lmhost"},
              {"choices", json::array({{{"index", 0}, {"message", {{"role", "assistant"}, {"content", content}}},
                                        {"logprobs", nullptr}, {"finish_reason", openai_finish_of(j)}}})},
              {"usage", {{"prompt_tokens", p}, {"completion_tokens", c}, {"total_tokens", p + c}}}};
  return dump(out);
}

std::string openai_to_ollama_json(const std::string& body, const std::string& model) {
  json j = json::parse(body, nullptr, false);
  if (!j.is_object() || !j.contains("choices") || !j["choices"].is_array() || j["choices"].empty())
    return dump(json{{"error", "malformed upstream response"}});
  const json& ch = j["choices"][0];
  std::string content;
  if (ch.contains("message") && ch["message"].is_object() && ch["message"].contains("content") &&
      ch["message"]["content"].is_string())
    content = ch["message"]["content"].get<std::string>();
  json out = ollama_line(model, content, true, ch.value("finish_reason", std::string("stop")));
  if (j.contains("usage") && j["usage"].is_object()) {
    out["prompt_eval_count"] = j["usage"].value("prompt_tokens", 0);
    out["eval_count"] = j["usage"].value("completion_tokens", 0);
  }
  return dump(out);
}

// Error bodies: the message in the client's shape.
std::string error_message_of(const std::string& body) {
  json j = json::parse(body, nullptr, false);
  if (j.is_object() && j.contains("error")) {
    const json& e = j["error"];
    if (e.is_string()) return e.get<std::string>();
    if (e.is_object() && e.contains("message") && e["message"].is_string()) return e["message"].get<std::string>();
  }
  return body;
}

// Messages with content parts joined into one string (both APIs accept strings).
json plain_messages(const json& msgs) {
  if (!msgs.is_array()) return msgs;
  json out = json::array();
  for (const auto& m : msgs) {
    json x = m;
    if (x.is_object() && x.contains("content") && x["content"].is_array()) {
      std::string s;
      for (const auto& part : x["content"])
        if (part.is_object() && part.value("type", "") == "text") s += part.value("text", "");
      x["content"] = s;
    }
    if (x.is_object()) x.erase("images");
    out.push_back(std::move(x));
  }
  return out;
}

json openai_chat_to_ollama(const json& b, bool stream) {
  json o = {{"model", b.value("model", "")}, {"messages", plain_messages(b.value("messages", json::array()))},
            {"stream", stream}};
  json opt = json::object();
  for (const char* k : {"temperature", "top_p", "top_k", "seed", "presence_penalty", "frequency_penalty", "stop"})
    if (b.contains(k) && !b[k].is_null()) opt[k] = b[k];
  if (b.contains("max_completion_tokens") && b["max_completion_tokens"].is_number())
    opt["num_predict"] = b["max_completion_tokens"];
  else if (b.contains("max_tokens") && b["max_tokens"].is_number())
    opt["num_predict"] = b["max_tokens"];
  if (!opt.empty()) o["options"] = opt;
  if (b.contains("tools")) o["tools"] = b["tools"];
  return o;
}

json ollama_chat_to_openai(const json& b, bool stream) {
  json o = {{"model", b.value("model", "")}, {"messages", plain_messages(b.value("messages", json::array()))},
            {"stream", stream}};
  if (b.contains("options") && b["options"].is_object()) {
    const json& opt = b["options"];
    for (const char* k : {"temperature", "top_p", "top_k", "seed", "presence_penalty", "frequency_penalty", "stop"})
      if (opt.contains(k) && !opt[k].is_null()) o[k] = opt[k];
    if (opt.contains("num_predict") && opt["num_predict"].is_number_integer() && opt["num_predict"].get<int64_t>() > 0)
      o["max_tokens"] = opt["num_predict"];
  }
  if (stream) o["stream_options"] = {{"include_usage", true}};  // counts for the done line
  if (b.contains("tools")) o["tools"] = b["tools"];
  return o;
}

// Token counts of a finished answer in the client's format (OpenAI usage, Ollama
// eval counts; for streams the last line that has them) into the request's info.
void record_usage(const std::string& tail, server::RequestInfo* info) {
  if (!info) return;
  size_t end = tail.size();
  for (int lines = 0; lines < 8 && end > 0; ++lines) {
    size_t start = tail.rfind('\n', end - 1);
    start = start == std::string::npos ? 0 : start + 1;
    std::string line = tail.substr(start, end - start);
    end = start == 0 ? 0 : start - 1;
    if (line.rfind("data:", 0) == 0) line.erase(0, 5);
    json j = json::parse(line, nullptr, false);
    if (!j.is_object()) continue;
    if (j.contains("usage") && j["usage"].is_object()) {
      info->prompt_tokens = j["usage"].value("prompt_tokens", int64_t{-1});
      info->completion_tokens = j["usage"].value("completion_tokens", int64_t{-1});
      return;
    }
    if (j.contains("eval_count")) {
      info->prompt_tokens = j.value("prompt_eval_count", int64_t{-1});
      info->completion_tokens = j.value("eval_count", int64_t{-1});
      return;
    }
  }
}

class ProxyStream : public server::StreamBody {
 public:
  ProxyStream(std::shared_ptr<ProxyState> st, std::unique_ptr<Transform> t,
              std::shared_ptr<server::RequestInfo> info)
      : st_(std::move(st)), t_(std::move(t)), info_(std::move(info)) {}
  void set_notify(std::function<void()> n) override {
    std::lock_guard lk(st_->mu);
    st_->notify = std::move(n);
  }
  void cancel() override { st_->cancelled = true; }
  bool poll(std::string& out) override {
    std::string in;
    bool done;
    {
      std::lock_guard lk(st_->mu);
      in.swap(st_->pending);
      done = st_->done;
    }
    const size_t from = out.size();
    if (!in.empty()) out += t_->feed(in);
    if (done) out += t_->finish();
    tail_.append(out, from);
    if (tail_.size() > (1u << 16)) tail_.erase(0, tail_.size() - (1u << 15));
    if (done) record_usage(tail_, info_.get());
    return !done;
  }

 private:
  std::shared_ptr<ProxyState> st_;
  std::unique_ptr<Transform> t_;
  std::shared_ptr<server::RequestInfo> info_;
  std::string tail_;  // the end of what was sent (token counts are near the end)
};

class ProxyDeferred : public server::DeferredResponse {
 public:
  ProxyDeferred(std::shared_ptr<ProxyState> st, ProxyEndpoint ep, bool stream, std::string id, std::string model,
                std::shared_ptr<server::RequestInfo> info)
      : st_(std::move(st)), ep_(ep), stream_(stream), id_(std::move(id)), model_(std::move(model)),
        info_(std::move(info)) {}
  void set_notify(std::function<void()> n) override {
    std::lock_guard lk(st_->mu);
    st_->notify = std::move(n);
  }
  void cancel() override { st_->cancelled = true; }
  std::optional<HttpResponse> poll() override {
    const bool client_openai = ep_ == ProxyEndpoint::OpenAIChat || ep_ == ProxyEndpoint::OpenAICompletions;
    std::lock_guard lk(st_->mu);
    if (st_->failed)
      return client_openai ? openai_error(502, "model '" + model_ + "': " + st_->error, "server_error")
                           : ollama_error(502, "model '" + model_ + "': " + st_->error);
    if (!st_->committed) return std::nullopt;
    const bool upstream_openai = st_->upstream->spec.kind == UpstreamKind::OpenAI;
    if (info_) info_->backend = st_->upstream->name();
    HttpResponse res;
    res.status = st_->status;
    res.content_type = st_->content_type;
    res.headers.emplace_back("X-Lmhost-Backend", st_->upstream->name());
    std::unique_ptr<Transform> t;
    if (client_openai == upstream_openai) {
      t = std::make_unique<Transform>();
    } else if (st_->status != 200) {
      res.content_type = "application/json";
      t = std::make_unique<WholeTransform>([client_openai, status = st_->status](const std::string& b) {
        const std::string msg = error_message_of(b);
        return client_openai ? openai_error(status, msg).body : ollama_error(status, msg).body;
      });
    } else if (client_openai) {
      if (stream_) {
        res.content_type = "text/event-stream";
        t = std::make_unique<NdjsonToSse>(id_, model_);
      } else {
        res.content_type = "application/json";
        t = std::make_unique<WholeTransform>(
            [id = id_, m = model_](const std::string& b) { return ollama_to_openai_json(b, id, m); });
      }
    } else {
      if (stream_) {
        res.content_type = "application/x-ndjson";
        t = std::make_unique<SseToNdjson>(model_);
      } else {
        res.content_type = "application/json";
        t = std::make_unique<WholeTransform>([m = model_](const std::string& b) { return openai_to_ollama_json(b, m); });
      }
    }
    st_->notify = nullptr;
    res.stream = std::make_shared<ProxyStream>(st_, std::move(t), info_);
    return res;
  }

 private:
  std::shared_ptr<ProxyState> st_;
  ProxyEndpoint ep_;
  bool stream_;
  std::string id_, model_;
  std::shared_ptr<server::RequestInfo> info_;
};

bool served_locally(const Ctx& ctx, const std::string& name) { return ctx.pool->find(name) != nullptr; }

}  // namespace

std::optional<HttpResponse> maybe_proxy(Ctx& ctx, HttpRequest& req, const json& body, ProxyEndpoint ep) {
  auto& ups = ctx.opts.upstreams;
  if (!ups) return std::nullopt;
  auto it = body.find("model");
  if (it == body.end() || !it->is_string()) return std::nullopt;
  const std::string name = it->get<std::string>();
  if (name.empty() || served_locally(ctx, name) || !ups->has(name)) return std::nullopt;
  if (req.info) {
    req.info->model = name;
    if (req.info->authorize_model) req.info->authorize_model(name);  // 403 for a key without this model
  }
  const bool client_openai = ep == ProxyEndpoint::OpenAIChat || ep == ProxyEndpoint::OpenAICompletions;
  const bool stream = opt_bool(body, "stream").value_or(!client_openai);  // Ollama streams by default
  const bool chat = ep == ProxyEndpoint::OpenAIChat || ep == ProxyEndpoint::OllamaChat;
  gateway::ProxyPlan plan;
  plan.stream = stream;
  plan.request_id = req.id;
  const std::string path = req.path;
  const std::string raw = req.body;
  plan.build = [client_openai, chat, stream, path, raw, body](const Upstream& u) -> std::pair<std::string, std::string> {
    const bool up_openai = u.spec.kind == UpstreamKind::OpenAI;
    if (up_openai == client_openai) return {path, raw};
    if (!chat) return {"", ""};  // completions / generate: no translation, only same-flavour upstreams
    if (up_openai) return {"/v1/chat/completions", dump(ollama_chat_to_openai(body, stream))};
    return {"/api/chat", dump(openai_chat_to_ollama(body, stream))};
  };
  auto st = ups->start_proxy(name, client_openai ? UpstreamKind::OpenAI : UpstreamKind::Ollama, std::move(plan));
  HttpResponse res;
  res.deferred = std::make_shared<ProxyDeferred>(st, ep, stream, "chatcmpl-" + req.id, name, req.info);
  return res;
}

void append_upstream_models_openai(const Ctx& ctx, json& data) {
  if (!ctx.opts.upstreams) return;
  for (const auto& name : ctx.opts.upstreams->models()) {
    if (served_locally(ctx, name)) continue;
    data.push_back({{"id", name}, {"object", "model"}, {"created", unix_now()}, {"owned_by", "upstream"},
                    {"status", "ready"}, {"demo", false}});
  }
}

void append_upstream_models_ollama(const Ctx& ctx, json& models) {
  if (!ctx.opts.upstreams) return;
  for (const auto& name : ctx.opts.upstreams->models()) {
    if (served_locally(ctx, name)) continue;
    models.push_back({{"name", name}, {"model", name}, {"modified_at", rfc3339_now()}, {"size", 0},
                      {"digest", ""}, {"details", {{"format", "upstream"}}}});
  }
}

}  // namespace lmhost::api
