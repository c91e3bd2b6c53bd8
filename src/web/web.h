// Pages and documents served to browsers and tools: the OpenAPI document
// (GET /openapi.json), the interactive API reference (GET /docs) and the
// playground (GET / for browsers). All compiled into the binary from
// src/web/assets/ (no CDN: air-gapped hosts must get working pages).
#pragma once

#include <map>
#include <string>
#include <string_view>

#include "server/http.h"

namespace lmhost::web {

struct WebOptions {
  std::string version = "0.1.0";
};

// Registers GET /openapi.json, /docs, /playground and GET / with content
// negotiation: a browser (Accept with text/html) gets the playground, anyone
// else Ollama's plain "Ollama is running" (Ollama clients probe GET /).
// Call before the API routes so that this GET / wins.
void register_routes(server::Router& router, WebOptions options = {});

// True when the Accept header prefers HTML (browsers), false for */*, JSON,
// plain text or no header.
bool wants_html(const server::HttpRequest& req);

// The embedded files by name ("openapi.json", "docs.html", ...).
const std::map<std::string, std::string_view>& embedded_files();

}  // namespace lmhost::web
