// HTTP/1.1 server (Boost.Beast + Asio coroutines, kept inside http_server.cpp)
// with a small router. Handlers see plain structs: they return a full
// response, a chunked stream (SSE / NDJSON) or a response that becomes ready
// later (non-streaming generation). The server watches the client while it
// waits and cancels the body source when the client goes away.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

namespace lmhost::server {

struct HttpRequest {
  std::string method;   // "GET", "POST", ...
  std::string target;   // as sent: path?query
  std::string path;     // percent-decoded path without the query
  std::string query;
  std::vector<std::pair<std::string, std::string>> headers;  // names lower-case
  std::string body;
  std::string id;       // request id (X-Request-Id from the client or generated)
  std::string remote;   // peer address
  std::unordered_map<std::string, std::string> params;  // path parameters from the route
  std::chrono::steady_clock::time_point received;

  const std::string* header(std::string_view lower_name) const;
};

// Something the server waits on without blocking a thread. notify() may be
// called from any thread whenever poll() may have more to give.
class AsyncSource {
 public:
  virtual ~AsyncSource() = default;
  virtual void set_notify(std::function<void()> notify) = 0;
  // The client went away or the server is stopping: stop producing.
  virtual void cancel() = 0;
};

// Body of a chunked response: poll() appends what is ready (maybe nothing)
// and returns false once the body is complete.
class StreamBody : public AsyncSource {
 public:
  virtual bool poll(std::string& out) = 0;
};

struct HttpResponse;
// A whole response that becomes ready later: poll() returns it once ready.
class DeferredResponse : public AsyncSource {
 public:
  virtual std::optional<HttpResponse> poll() = 0;
};

struct HttpResponse {
  int status = 200;
  std::string content_type = "application/json";
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  std::shared_ptr<StreamBody> stream;          // set: status + headers now, body chunked as it comes
  std::shared_ptr<DeferredResponse> deferred;  // set: everything else ignored, the response comes later

  static HttpResponse json(int status, std::string body) {
    HttpResponse r;
    r.status = status;
    r.body = std::move(body);
    return r;
  }
  static HttpResponse text(int status, std::string body) {
    HttpResponse r;
    r.status = status;
    r.content_type = "text/plain; charset=utf-8";
    r.body = std::move(body);
    return r;
  }
};

using Handler = std::function<HttpResponse(HttpRequest&)>;
// Builds an error response in the shape the client expects (by path).
using ErrorFormatter = std::function<HttpResponse(const HttpRequest&, int status, const std::string& message)>;

// JSON string literal with escapes (for code that has no JSON library at hand).
std::string json_quote(std::string_view s);
// {"error":{"message":..,"type":..,"param":null,"code":..}} (OpenAI's shape).
HttpResponse default_error(const HttpRequest& req, int status, const std::string& message);
const char* status_reason(int status);

// Method + path routing. Patterns are '/'-separated; a segment "{name}"
// matches one segment, a last segment "{*name}" matches the rest (may contain '/').
class Router {
 public:
  void add(std::string method, std::string pattern, Handler h);
  void set_error_formatter(ErrorFormatter f) { error_ = std::move(f); }
  const ErrorFormatter& error_formatter() const { return error_; }

  // Runs the matching handler; 404 when no pattern matches, 405 (with an
  // Allow header) when only the method differs. HEAD falls back to GET.
  // lmhost::Error thrown by a handler becomes an error response with its status.
  HttpResponse dispatch(HttpRequest& req) const;

 private:
  struct Route {
    std::string method;
    std::vector<std::string> segments;
    Handler handler;
  };
  static bool match(const Route& r, std::string_view path, std::unordered_map<std::string, std::string>& params);
  std::vector<Route> routes_;
  ErrorFormatter error_ = default_error;
};

struct ServerOptions {
  std::string host = "127.0.0.1";
  uint16_t port = 8080;          // 0: pick a free port (see HttpServer::port())
  int threads = 2;               // I/O threads
  size_t body_limit = 8u << 20;  // bytes; larger bodies get 413
  std::chrono::seconds idle_timeout{60};   // keep-alive connections idle this long are closed
  std::chrono::seconds write_timeout{60};  // a client that does not read for this long is dropped
  bool log_requests = true;      // one line per request on stderr
};

class HttpServer {
 public:
  HttpServer(ServerOptions options, std::shared_ptr<const Router> router);
  ~HttpServer();  // stop()
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Binds, listens and starts the I/O threads; throws lmhost::Error when the
  // address cannot be bound.
  void start();
  uint16_t port() const;
  // Blocks until SIGINT or SIGTERM (or stop() from another thread).
  void wait_for_signal();
  // Stops accepting, cancels in-flight bodies, closes connections, joins threads.
  void stop();
  // Connections open right now (for tests and health).
  int open_connections() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace lmhost::server
