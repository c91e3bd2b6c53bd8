// Proxying to upstreams, with OpenAI <-> Ollama translation (see upstream_proxy.h).
#include "api/upstream_proxy.h"


namespace lmhost::api {
namespace {

using gateway::Endpoint;
using gateway::ProxyState;
using gateway::Upstream;
using gateway::UpstreamKind;

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
  ProxyStream(std::shared_ptr<ProxyState> st, std::unique_ptr<gateway::BodyTransform> t,
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
  std::unique_ptr<gateway::BodyTransform> t_;
  std::shared_ptr<server::RequestInfo> info_;
  std::string tail_;  // the end of what was sent (token counts are near the end)
};

class ProxyDeferred : public server::DeferredResponse {
 public:
  ProxyDeferred(std::shared_ptr<ProxyState> st, Endpoint ep, bool stream, gateway::ResponseMeta meta,
                std::function<Endpoint(const Upstream&)> target, std::shared_ptr<server::RequestInfo> info)
      : st_(std::move(st)), ep_(ep), stream_(stream), meta_(std::move(meta)), target_(std::move(target)),
        info_(std::move(info)) {}
  void set_notify(std::function<void()> n) override {
    std::lock_guard lk(st_->mu);
    st_->notify = std::move(n);
  }
  void cancel() override { st_->cancelled = true; }
  std::optional<HttpResponse> poll() override {
    std::lock_guard lk(st_->mu);
    if (st_->failed) {
      const std::string msg = "model '" + meta_.model + "': " + st_->error;
      return gateway::is_openai(ep_) ? openai_error(st_->error_status, msg) : ollama_error(st_->error_status, msg);
    }
    if (!st_->committed) return std::nullopt;
    const Upstream& up = *st_->upstream;
    if (info_) info_->backend = up.name();
    HttpResponse res;
    res.status = st_->status;
    res.content_type = st_->content_type;
    res.headers.emplace_back("X-Lmhost-Backend", up.name());
    const bool rename = up.remote_name(meta_.model).value_or(meta_.model) != meta_.model;
    auto plan = gateway::response_plan(ep_, target_(up), stream_, st_->status, meta_, rename);
    if (!plan.content_type.empty()) res.content_type = plan.content_type;
    st_->notify = nullptr;
    res.stream = std::make_shared<ProxyStream>(st_, std::move(plan.transform), info_);
    return res;
  }

 private:
  std::shared_ptr<ProxyState> st_;
  Endpoint ep_;
  bool stream_;
  gateway::ResponseMeta meta_;
  std::function<Endpoint(const Upstream&)> target_;
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
  const bool client_openai = gateway::is_openai(ep);
  // Ollama streams chat and generate by default; embeddings never stream.
  const bool stream = !gateway::is_embedding(ep) && opt_bool(body, "stream").value_or(!client_openai);
  gateway::ProxyPlan plan;
  plan.stream = stream;
  plan.request_id = req.id;
  // The request for one upstream: as the client sent it to one of its flavour
  // offering the model under the same name, else renamed and/or translated.
  auto request_for = [ep, stream, name, body](const Upstream& u) {
    return gateway::translate_request(ep, body, u.spec.kind, u.remote_name(name).value_or(name), stream);
  };
  plan.build = [ep, name, request_for, path = req.path, raw = req.body](const Upstream& u) -> std::pair<std::string, std::string> {
    const bool same = (u.spec.kind == UpstreamKind::OpenAI) == gateway::is_openai(ep);
    if (same && u.remote_name(name).value_or(name) == name) return {path, raw};
    auto r = request_for(u);
    if (!r.ok) return {"", u.name() + ": " + r.why};
    return {same ? path : std::string(gateway::endpoint_path(r.target)), dump(r.body)};
  };
  auto target = [request_for, ep](const Upstream& u) {
    auto r = request_for(u);
    return r.ok ? r.target : ep;
  };
  gateway::ResponseMeta meta;
  meta.request_id = req.id;
  meta.model = name;
  if (auto so = body.find("stream_options"); so != body.end() && so->is_object())
    meta.include_usage = so->value("include_usage", false);
  meta.base64 = body.value("encoding_format", json("float")) == json("base64");
  auto st = ups->start_proxy(name, client_openai ? UpstreamKind::OpenAI : UpstreamKind::Ollama, std::move(plan));
  HttpResponse res;
  res.deferred = std::make_shared<ProxyDeferred>(st, ep, stream, std::move(meta), std::move(target), req.info);
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
