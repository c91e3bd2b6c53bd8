#include "web/web.h"

#include <algorithm>
#include <cctype>

#include "util/error.h"

namespace lmhost::web {
namespace {

using server::HttpRequest;
using server::HttpResponse;

std::string asset(const std::string& name) {
  const auto& files = embedded_files();
  auto it = files.find(name);
  if (it == files.end()) throw Error("embedded file " + name + " is missing from this build", 500);
  return std::string(it->second);
}

HttpResponse page(const std::string& name, const std::string& type, const std::string& version) {
  HttpResponse r;
  r.status = 200;
  r.content_type = type;
  r.body = asset(name);
  // The pages show the server's version without a round trip.
  if (const size_t p = r.body.find("@LMHOST_VERSION@"); p != std::string::npos) r.body.replace(p, 16, version);
  r.headers.emplace_back("Cache-Control", "no-cache");
  r.headers.emplace_back("X-Content-Type-Options", "nosniff");
  if (type.rfind("text/html", 0) == 0) {
    // Everything the pages need is inline or from this origin.
    r.headers.emplace_back("Content-Security-Policy",
                           "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
                           "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'");
    r.headers.emplace_back("Referrer-Policy", "no-referrer");
  }
  return r;
}

}  // namespace

bool wants_html(const HttpRequest& req) {
  const std::string* accept = req.header("accept");
  if (!accept) return false;
  std::string a = *accept;
  std::transform(a.begin(), a.end(), a.begin(), [](unsigned char c) { return std::tolower(c); });
  return a.find("text/html") != std::string::npos || a.find("application/xhtml+xml") != std::string::npos;
}

void register_routes(server::Router& router, WebOptions options) {
  const std::string version = options.version;
  router.add("GET", "/", [version](HttpRequest& req) {
    if (wants_html(req)) {
      HttpResponse r = page("playground.html", "text/html; charset=utf-8", version);
      r.headers.emplace_back("Vary", "Accept");
      return r;
    }
    HttpResponse r = HttpResponse::text(200, "Ollama is running");
    r.headers.emplace_back("Vary", "Accept");
    return r;
  });
  router.add("GET", "/playground", [version](HttpRequest&) {
    return page("playground.html", "text/html; charset=utf-8", version);
  });
  router.add("GET", "/docs", [version](HttpRequest&) { return page("docs.html", "text/html; charset=utf-8", version); });
  router.add("GET", "/openapi.json", [version](HttpRequest&) {
    HttpResponse r = page("openapi.json", "application/json", version);
    r.headers.emplace_back("Access-Control-Allow-Origin", "*");
    return r;
  });
}

}  // namespace lmhost::web
