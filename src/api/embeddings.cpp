// Embedding endpoints over the EmbedBatcher of an embedding model, with the
// two-tier embedding cache in front:
//   POST /v1/embeddings   (OpenAI: input string | [string] | [int] | [[int]];
//                          encoding_format float|base64; dimensions; usage)
//   POST /api/embed       (Ollama: input string | [string]; truncate; keep_alive; options; dimensions)
//   POST /api/embeddings  (Ollama legacy: prompt -> embedding)
//   DELETE /api/v1/cache  (clears the in-memory and the Redis cache)
//   GET /api/v1/cache     (cache statistics; ?format=prometheus for metrics text)
// Inputs are tokenized (CLS/SEP added), truncated to the model's context when
// allowed, looked up in the cache; only the misses are computed (batched with
// other requests) and then stored.
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstring>

#include "api/common.h"
#include "api/upstream_proxy.h"
#include "engine/embed_batcher.h"
#include "gateway/embed_cache.h"
#include "util/base64.h"

namespace lmhost::api {

namespace {

enum class Flavor { OpenAI, OllamaEmbed, OllamaLegacy };

struct Prepared {
  std::shared_ptr<ServedModel> model;
  std::vector<std::vector<Token>> tokens;
  std::vector<std::string> keys;
  std::vector<std::optional<std::vector<float>>> vecs;  // cached ones filled
  int64_t prompt_tokens = 0;
  int dimensions = 0;  // 0: all
  bool base64 = false;
  SteadyClock::time_point start;
};

std::shared_ptr<gateway::EmbeddingCache> cache_of(Ctx& ctx) { return ctx.opts.embed_cache; }

// The embedding model named by the request (empty: the first embedding model).
std::shared_ptr<ServedModel> resolve_embedding_model(Ctx& ctx, const std::string& name) {
  if (name.empty()) {
    for (const auto& m : ctx.pool->list())
      if (m->state() == ModelState::Ready && m->is_embedding()) return m;
    for (const auto& m : ctx.pool->list())
      if (m->state() == ModelState::Loading) throw Error("model '" + m->name() + "' is still loading; retry shortly", 503);
    throw Error("no embedding model is served here; name one with 'model'", 400);
  }
  auto m = resolve_model(ctx, name);
  if (!m->is_embedding())
    throw Error("model '" + m->name() + "' does not produce embeddings (it is a " + m->architecture() +
                    " text generation model); use an embedding model such as bert or nomic-bert",
                400);
  return m;
}

void append_float(std::string& out, float v) {
  if (!std::isfinite(v)) v = 0.0f;
  char buf[32];
  auto r = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, r.ptr);
}

std::string vec_json(const std::vector<float>& v) {
  std::string s;
  s.reserve(v.size() * 12 + 2);
  s += '[';
  for (size_t i = 0; i < v.size(); ++i) {
    if (i) s += ',';
    append_float(s, v[i]);
  }
  s += ']';
  return s;
}

// Truncate to `dims` dimensions and re-normalise (OpenAI's `dimensions`).
std::vector<float> shape(const std::vector<float>& v, int dims) {
  if (dims <= 0 || dims >= static_cast<int>(v.size())) return v;
  std::vector<float> o(v.begin(), v.begin() + dims);
  double ss = 0;
  for (float x : o) ss += double(x) * x;
  if (ss > 0) {
    const double inv = 1.0 / std::sqrt(ss);
    for (float& x : o) x = static_cast<float>(x * inv);
  }
  return o;
}

// Reads the inputs: strings are tokenized with CLS/SEP; token arrays are taken
// as they are (OpenAI only). Builds the cache keys and looks them up.
Prepared prepare(Ctx& ctx, const json& b, const json& input, Flavor flavor, bool truncate) {
  Prepared p;
  p.start = SteadyClock::now();
  p.model = resolve_embedding_model(ctx, opt_string(b, "model").value_or(""));
  const ServedModel& m = *p.model;
  const EmbeddingModel& em = *m.embedding_model();
  const int n_ctx = em.n_ctx(), n_vocab = em.hparams().n_vocab;
  if (auto d = opt_int(b, "dimensions", 1, em.n_embd())) p.dimensions = static_cast<int>(*d);
  if (flavor == Flavor::OpenAI) {
    const std::string fmt = opt_string(b, "encoding_format").value_or("float");
    if (fmt != "float" && fmt != "base64")
      throw Error("'encoding_format' must be \"float\" or \"base64\", not \"" + fmt + "\"", 400);
    p.base64 = fmt == "base64";
  }

  std::vector<std::string> texts;      // for string inputs
  std::vector<std::string> key_inputs;  // what the cache key is built from
  const char* field = flavor == Flavor::OllamaLegacy ? "prompt" : "input";
  auto bad = [&](const std::string& why) { throw Error("'" + std::string(field) + "' " + why, 400); };
  auto token_list = [&](const json& arr) {
    std::vector<Token> t;
    for (const auto& x : arr) {
      if (!x.is_number_integer()) bad("must be a string, a list of strings, or token arrays of integers");
      const int64_t v = x.get<int64_t>();
      if (v < 0 || v >= n_vocab)
        throw Error("token id " + std::to_string(v) + " is out of range [0, " + std::to_string(n_vocab) + ")", 400);
      t.push_back(static_cast<Token>(v));
    }
    return t;
  };
  auto tokens_key = [](const std::vector<Token>& t) {
    return std::string("tokens\n") + std::string(reinterpret_cast<const char*>(t.data()), t.size() * sizeof(Token));
  };
  if (input.is_null()) bad("is required");
  if (input.is_string()) {
    texts.push_back(input.get<std::string>());
  } else if (input.is_array()) {
    if (input.empty()) bad("must not be an empty list");
    if (input[0].is_number_integer()) {
      if (flavor != Flavor::OpenAI) bad("must be a string or a list of strings");
      p.tokens.push_back(token_list(input));
    } else {
      for (const auto& x : input) {
        if (x.is_string()) {
          if (!p.tokens.empty()) bad("mixes strings and token arrays");
          texts.push_back(x.get<std::string>());
        } else if (x.is_array() && flavor == Flavor::OpenAI) {
          if (!texts.empty()) bad("mixes strings and token arrays");
          if (x.empty()) bad("holds an empty token array");
          p.tokens.push_back(token_list(x));
        } else {
          bad(flavor == Flavor::OpenAI ? "must be a string, a list of strings, or token arrays"
                                       : "must be a string or a list of strings");
        }
      }
    }
  } else {
    bad(flavor == Flavor::OpenAI ? "must be a string, a list of strings, or token arrays"
                                 : "must be a string or a list of strings");
  }
  if (texts.size() + p.tokens.size() > 2048) bad("holds more than 2048 inputs");

  const Tokenizer& tok = m.tokenizer();
  if (!texts.empty()) {
    for (auto& t : texts) {
      key_inputs.push_back("text\n" + t);
      p.tokens.push_back(tok.encode(t, /*add_special=*/true, /*parse_special=*/true));
    }
  } else {
    for (const auto& t : p.tokens) key_inputs.push_back(tokens_key(t));
  }
  // The server's MAX_INPUT_TOKENS (per input) when below the model's context.
  int64_t server_limit = 0;
  if (auto info = current_info(); info && info->max_input_tokens > 0 && info->max_input_tokens < n_ctx)
    server_limit = info->max_input_tokens;
  const int64_t limit = server_limit > 0 ? server_limit : n_ctx;
  for (size_t i = 0; i < p.tokens.size(); ++i) {
    auto& t = p.tokens[i];
    if (static_cast<int64_t>(t.size()) > limit) {
      if (!truncate)
        throw Error("input " + std::to_string(i) + " has " + std::to_string(t.size()) + " tokens, more than " +
                        (server_limit > 0 ? "the " + std::to_string(limit) + " input tokens this server accepts"
                                          : "the model's context length of " + std::to_string(n_ctx)) +
                        " (set truncate to true to cut it)",
                    400);
      const Token last = t.back();
      t.resize(static_cast<size_t>(limit));
      if (!texts.empty() && last == tok.eos()) t.back() = last;  // keep the closing SEP
    }
    if (t.empty()) throw Error("input " + std::to_string(i) + " has no tokens", 400);
    p.prompt_tokens += static_cast<int64_t>(t.size());
  }

  // Cache: the vector depends on the model (name + file digest), the input and
  // whether a long input was cut.
  std::string opts = std::string("pool=") + pooling_name(em.pooling()) + ";truncate=" + (truncate ? "1" : "0");
  if (server_limit > 0) opts += ";max_input=" + std::to_string(server_limit);  // cut shorter than the context
  for (const auto& k : key_inputs) p.keys.push_back(gateway::cache_key(m.name(), em.digest(), opts, k));
  if (auto c = cache_of(ctx)) p.vecs = c->get_many(p.keys);
  else p.vecs.resize(p.keys.size());
  return p;
}

HttpResponse respond(const Prepared& p, Flavor flavor) {
  const std::string& name = p.model->name();
  std::string body;
  if (flavor == Flavor::OpenAI) {
    body = "{\"object\":\"list\",\"data\":[";
    for (size_t i = 0; i < p.vecs.size(); ++i) {
      const auto v = shape(*p.vecs[i], p.dimensions);
      if (i) body += ',';
      body += "{\"object\":\"embedding\",\"index\":" + std::to_string(i) + ",\"embedding\":";
      body += p.base64 ? "\"" + base64_encode(v.data(), v.size() * sizeof(float)) + "\"" : vec_json(v);
      body += '}';
    }
    body += "],\"model\":" + dump(json(name)) + ",\"usage\":{\"prompt_tokens\":" + std::to_string(p.prompt_tokens) +
            ",\"total_tokens\":" + std::to_string(p.prompt_tokens) + "}}";
  } else if (flavor == Flavor::OllamaEmbed) {
    const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(SteadyClock::now() - p.start).count();
    body = "{\"model\":" + dump(json(name)) + ",\"embeddings\":[";
    for (size_t i = 0; i < p.vecs.size(); ++i) {
      if (i) body += ',';
      body += vec_json(shape(*p.vecs[i], p.dimensions));
    }
    body += "],\"total_duration\":" + std::to_string(ns) + ",\"load_duration\":0,\"prompt_eval_count\":" +
            std::to_string(p.prompt_tokens) + "}";
  } else {
    body = "{\"embedding\":" + vec_json(shape(*p.vecs[0], p.dimensions)) + "}";
  }
  return HttpResponse::json(200, std::move(body));
}

HttpResponse error_for(Flavor flavor, int status, const std::string& msg) {
  return flavor == Flavor::OpenAI ? openai_error(status, msg) : ollama_error(status, msg);
}

// Waits for the computed misses, stores them in the cache, then responds.
class EmbedDeferred : public server::DeferredResponse {
 public:
  EmbedDeferred(Prepared p, std::vector<size_t> miss, std::shared_ptr<EmbedJob> job,
                std::shared_ptr<gateway::EmbeddingCache> cache, Flavor flavor)
      : p_(std::move(p)), miss_(std::move(miss)), job_(std::move(job)), cache_(std::move(cache)), flavor_(flavor) {}
  void set_notify(std::function<void()> notify) override { job_->set_notify(std::move(notify)); }
  void cancel() override { job_->cancel(); }
  std::optional<HttpResponse> poll() override {
    if (!job_->done()) return std::nullopt;
    if (!job_->error().empty()) return error_for(flavor_, job_->error_status(), job_->error());
    auto& res = job_->results();
    std::vector<std::string> keys;
    for (size_t j = 0; j < miss_.size(); ++j) keys.push_back(p_.keys[miss_[j]]);
    if (cache_) {
      try {
        cache_->put_many(keys, res);
      } catch (const std::exception& e) {
        std::fprintf(stderr, "lmhost: embedding cache: store failed: %s\n", e.what());  // never fails the request
      }
    }
    for (size_t j = 0; j < miss_.size(); ++j) p_.vecs[miss_[j]] = std::move(res[j]);
    return respond(p_, flavor_);
  }

 private:
  Prepared p_;
  std::vector<size_t> miss_;
  std::shared_ptr<EmbedJob> job_;
  std::shared_ptr<gateway::EmbeddingCache> cache_;
  Flavor flavor_;
};

HttpResponse run(Ctx& ctx, Prepared p, Flavor flavor) {
  std::vector<size_t> miss;
  std::vector<std::vector<Token>> todo;
  for (size_t i = 0; i < p.vecs.size(); ++i)
    if (!p.vecs[i]) miss.push_back(i), todo.push_back(p.tokens[i]);
  if (miss.empty()) return respond(p, flavor);
  auto job = p.model->embedder().submit(std::move(todo));
  HttpResponse res;
  res.deferred = std::make_shared<EmbedDeferred>(std::move(p), std::move(miss), std::move(job), cache_of(ctx), flavor);
  return res;
}

json cache_stats_json(gateway::EmbeddingCache& c, bool redis_size) {
  const auto s = c.stats(redis_size);
  json j = {{"memory", {{"hits", s.memory_hits}, {"misses", s.memory_misses}, {"size", s.memory_size},
                        {"capacity", s.memory_capacity}}}};
  if (s.redis_enabled) {
    j["redis"] = {{"up", s.redis_up}, {"hits", s.redis_hits}, {"misses", s.redis_misses},
                  {"errors", s.redis_errors}, {"outages", s.redis_outages}};
    if (redis_size) j["redis"]["size"] = s.redis_size;
  }
  return j;
}

}  // namespace

json embedding_cache_health(const Ctx& ctx) {
  if (!ctx.opts.embed_cache) return nullptr;
  return cache_stats_json(*ctx.opts.embed_cache, false);
}

void register_embeddings(server::Router& r, std::shared_ptr<Ctx> ctx) {
  if (!ctx->opts.embed_cache) ctx->opts.embed_cache = std::make_shared<gateway::EmbeddingCache>(gateway::CacheOptions::from_env());

  r.add("POST", "/v1/embeddings", [ctx](HttpRequest& req) {
    json b = parse_body(req);
    if (auto up = maybe_proxy(*ctx, req, b, ProxyEndpoint::OpenAIEmbeddings)) return std::move(*up);
    auto it = b.find("input");
    const json input = it == b.end() ? json() : *it;
    return run(*ctx, prepare(*ctx, b, input, Flavor::OpenAI, /*truncate=*/true), Flavor::OpenAI);
  });
  r.add("POST", "/api/embed", [ctx](HttpRequest& req) {
    json b = parse_body(req);
    if (auto up = maybe_proxy(*ctx, req, b, ProxyEndpoint::OllamaEmbed)) return std::move(*up);
    (void)opt_string(b, "keep_alive");  // accepted; models stay loaded
    if (auto o = b.find("options"); o != b.end() && !o->is_null() && !o->is_object())
      throw Error("'options' must be an object", 400);
    const bool truncate = opt_bool(b, "truncate").value_or(true);
    auto it = b.find("input");
    const json input = it == b.end() ? json() : *it;
    return run(*ctx, prepare(*ctx, b, input, Flavor::OllamaEmbed, truncate), Flavor::OllamaEmbed);
  });
  r.add("POST", "/api/embeddings", [ctx](HttpRequest& req) {
    json b = parse_body(req);
    if (auto up = maybe_proxy(*ctx, req, b, ProxyEndpoint::OllamaEmbeddings)) return std::move(*up);
    if (auto o = b.find("options"); o != b.end() && !o->is_null() && !o->is_object())
      throw Error("'options' must be an object", 400);
    auto it = b.find("prompt");
    if (it == b.end() || !it->is_string()) throw Error("'prompt' (the text to embed) must be a string", 400);
    const json input = *it;
    return run(*ctx, prepare(*ctx, b, input, Flavor::OllamaLegacy, true), Flavor::OllamaLegacy);
  });
  r.add("DELETE", "/api/v1/cache", [ctx](HttpRequest&) {
    auto& c = *ctx->opts.embed_cache;
    const auto before = c.stats(false);
    c.clear();
    return HttpResponse::json(200, dump(json{{"cleared", true},
                                             {"memory_entries_removed", before.memory_size},
                                             {"redis", before.redis_enabled ? (c.stats().redis_up ? "cleared" : "unavailable")
                                                                            : "disabled"}}));
  });
  r.add("GET", "/api/v1/cache", [ctx](HttpRequest& req) {
    auto& c = *ctx->opts.embed_cache;
    if (req.query.find("format=prometheus") != std::string::npos) {
      auto res = HttpResponse::text(200, c.metrics_text());
      res.content_type = "text/plain; version=0.0.4; charset=utf-8";
      return res;
    }
    return HttpResponse::json(200, dump(cache_stats_json(c, true)));
  });
}

}  // namespace lmhost::api
