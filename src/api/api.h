// The HTTP APIs over the engine: OpenAI (/v1/...), Ollama (/api/..., GET /)
// and native (/tokenize, /detokenize, /v1/summarize, /health). Adapters
// translate JSON to API-neutral GenerateRequests and token events back.
#pragma once

#include <chrono>
#include <memory>
#include <string>

#include "engine/model_pool.h"
#include "gateway/embed_cache.h"
#include "gateway/upstream.h"
#include "server/http.h"

namespace lmhost::api {

struct ApiOptions {
  std::chrono::seconds request_timeout{600};  // REQUEST_TIMEOUT_SECONDS: a generation ends with "timeout" after this
  std::string version = "0.1.0";
  // Embedding cache; null: built from CACHE_SIZE / REDIS_URL / CACHE_TTL_SECONDS by register_routes.
  std::shared_ptr<gateway::EmbeddingCache> embed_cache;
  // Upstream backends (null: none): requests for their models are proxied (api/upstream_proxy.cpp).
  std::shared_ptr<gateway::Upstreams> upstreams;
};

// Adds every route and the error formatter (OpenAI shape, Ollama's
// {"error": "..."} under /api/).
void register_routes(server::Router& router, std::shared_ptr<ModelPool> pool, ApiOptions options = {});

}  // namespace lmhost::api
