// The web routes on a bare router: content negotiation of GET /, the
// embedded pages and OpenAPI document (version filled in, valid JSON).
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "server/http.h"
#include "web/web.h"

using lmhost::server::HttpRequest;
using lmhost::server::HttpResponse;
using lmhost::server::Router;

namespace {

HttpResponse get(const Router& r, const std::string& path, const char* accept = nullptr) {
  HttpRequest req;
  req.method = "GET";
  req.path = req.target = path;
  if (accept) req.headers.emplace_back("accept", accept);
  return r.dispatch(req);
}

Router make() {
  Router r;
  lmhost::web::register_routes(r, {"9.8.7"});
  return r;
}

const std::string* header(const HttpResponse& res, const std::string& name) {
  for (const auto& [k, v] : res.headers)
    if (k == name) return &v;
  return nullptr;
}

}  // namespace

TEST(Web, RootAnswersOllamaClientsInPlainText) {
  const Router r = make();
  for (const char* accept : {static_cast<const char*>(nullptr), "*/*", "application/json", "text/plain"}) {
    const HttpResponse res = get(r, "/", accept);
    EXPECT_EQ(res.status, 200);
    EXPECT_EQ(res.body, "Ollama is running") << (accept ? accept : "(no Accept)");
  }
}

TEST(Web, RootGivesBrowsersThePlayground) {
  const Router r = make();
  const HttpResponse res = get(r, "/", "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8");
  EXPECT_EQ(res.status, 200);
  EXPECT_EQ(res.content_type.rfind("text/html", 0), 0u);
  EXPECT_NE(res.body.find("<title>lmhost playground</title>"), std::string::npos);
  EXPECT_NE(res.body.find("v9.8.7"), std::string::npos);
  ASSERT_NE(header(res, "Vary"), nullptr);
  ASSERT_NE(header(res, "Content-Security-Policy"), nullptr);
}

TEST(Web, OpenApiDocumentIsJsonWithTheVersion) {
  const Router r = make();
  const HttpResponse res = get(r, "/openapi.json");
  EXPECT_EQ(res.status, 200);
  EXPECT_EQ(res.content_type, "application/json");
  const auto doc = nlohmann::json::parse(res.body);
  EXPECT_EQ(doc["openapi"].get<std::string>().substr(0, 2), "3.");
  EXPECT_EQ(doc["info"]["version"], "9.8.7");
  for (const char* p : {"/v1/chat/completions", "/v1/embeddings", "/api/chat", "/api/embed", "/health", "/ready",
                        "/metrics", "/docs", "/"})
    EXPECT_TRUE(doc["paths"].contains(p)) << p;
}

TEST(Web, DocsAndPlaygroundPages) {
  const Router r = make();
  for (const char* p : {"/docs", "/playground"}) {
    const HttpResponse res = get(r, p);
    EXPECT_EQ(res.status, 200) << p;
    EXPECT_EQ(res.content_type, "text/html; charset=utf-8");
    EXPECT_EQ(res.body.find("http://"), std::string::npos) << p << " must not load from other origins";
    EXPECT_EQ(res.body.find("https://"), std::string::npos) << p << " must not load from other origins";
  }
}

TEST(Web, WantsHtml) {
  HttpRequest req;
  EXPECT_FALSE(lmhost::web::wants_html(req));
  req.headers.emplace_back("accept", "Text/HTML");
  EXPECT_TRUE(lmhost::web::wants_html(req));
}
