// Requests for models served by upstreams (gateway/upstream.h): passed through
// to an upstream of the request's flavour, else translated
// (gateway/upstream_translate.h: chat, completions <-> generate, embeddings;
// JSON and streams: SSE <-> NDJSON). Internal to src/api/.
#pragma once

#include <optional>

#include "api/common.h"
#include "gateway/upstream_translate.h"

namespace lmhost::api {

using ProxyEndpoint = gateway::Endpoint;

// A response when `body`'s model is not served here but by an upstream;
// nullopt otherwise (local models win on name clashes).
std::optional<HttpResponse> maybe_proxy(Ctx& ctx, HttpRequest& req, const json& body, ProxyEndpoint ep);

// Upstream models not served locally, in each API's list shape.
void append_upstream_models_openai(const Ctx& ctx, json& data);
void append_upstream_models_ollama(const Ctx& ctx, json& models);

}  // namespace lmhost::api
