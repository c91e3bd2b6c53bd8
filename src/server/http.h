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

// What the layers learn about one request while it runs, for the access log,
// metrics and limits. Created by the server for every request; handlers and
// streams fill it (streams while they run); read when the response is done.
struct RequestInfo {
  std::string route;     // matched route pattern ("" when no route matched)
  std::string model;     // model the handler resolved
  std::string key_name;  // name of the API key used (never the key)
  std::string backend;   // upstream that served it ("ollama:URL" / "openai:URL"); "" = this server
  std::string model_version;  // the model version that answered (an alias's pick, else the file's version label)
  // Set by the gateway middleware: throws lmhost::Error(403) when the request
  // may not use this model (the API layer calls it when it resolves a model).
  std::function<void(const std::string& model)> authorize_model;
  // Request budgets (0: none): prompt tokens, and max_tokens asked for.
  int64_t max_input_tokens = 0;
  int64_t max_tokens_cap = 0;
  // Usage and timings of generations (-1: not a generation / unknown).
  int64_t prompt_tokens = -1, completion_tokens = -1;
  double ttft_ms = -1;        // submit -> first token (first choice)
  double queue_ms = -1;       // submit -> slot
  double per_token_ms = -1;   // between output tokens
  // Headers added to whatever response the handler returns (e.g. X-RateLimit-*).
  std::vector<std::pair<std::string, std::string>> response_headers;
  // Released with the request (e.g. an in-flight slot).
  std::shared_ptr<void> hold;
  // The model lease (keeps the resolved model loaded while the request runs).
  std::shared_ptr<void> model_hold;
};

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
  std::shared_ptr<RequestInfo> info = std::make_shared<RequestInfo>();

  const std::string* header(std::string_view lower_name) const;
};

// The request whose handler (or middleware) runs on this thread right now;
// nullptr outside Router::dispatch.
HttpRequest* current_request();

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
// Runs before the handler of a matched route (req.info->route is set): a
// response to send instead of running the handler, or nullopt to go on.
using Middleware = std::function<std::optional<HttpResponse>(HttpRequest&)>;
// Builds an error response in the shape the client expects (by path).
using ErrorFormatter = std::function<HttpResponse(const HttpRequest&, int status, const std::string& message)>;

// JSON string literal with escapes (for code that has no JSON library at hand).
std::string json_quote(std::string_view s);
// {"error":{"message":..,"type":..,"param":null,"code":..}} (OpenAI's shape).
HttpResponse default_error(const HttpRequest& req, int status, const std::string& message);
const char* status_reason(int status);

// Method + path routing. Patterns are '/'-separated; a segment "{name}"
// matches one segment, a last segment "{*name}" matches the rest (may contain '/').
// Thrown by a handler whose answer has to wait for something that is on its
// way (a model loading on demand): the router answers later — it calls
// watch with a wake-up, then runs the handler again (without the middleware)
// on an I/O thread once woken, so no I/O thread sits in the wait.
class RetryWhenReady : public std::exception {
 public:
  explicit RetryWhenReady(std::function<void(std::function<void()> wake)> watch) : watch_(std::move(watch)) {}
  const char* what() const noexcept override { return "the answer waits for something that is not ready yet"; }
  std::function<void(std::function<void()> wake)>& watch() { return watch_; }

 private:
  std::function<void(std::function<void()> wake)> watch_;
};

class Router {
 public:
  void add(std::string method, std::string pattern, Handler h);
  void set_error_formatter(ErrorFormatter f) { error_ = std::move(f); }
  void set_middleware(Middleware m) { middleware_ = std::move(m); }
  const ErrorFormatter& error_formatter() const { return error_; }

  // Runs the matching handler; 404 when no pattern matches, 405 (with an
  // Allow header) when only the method differs. HEAD falls back to GET.
  // lmhost::Error thrown by a handler becomes an error response with its status;
  // RetryWhenReady a deferred response that runs the handler again when woken.
  HttpResponse dispatch(HttpRequest& req) const;

  struct Route {
    std::string method;
    std::vector<std::string> segments;
    Handler handler;
    std::string pattern;
  };
  // The handler of an already matched route (and the middleware first when
  // with_middleware), with dispatch's error handling.
  HttpResponse invoke(const Route& route, HttpRequest& req, bool with_middleware) const;

 private:
  static bool match(const Route& r, std::string_view path, std::unordered_map<std::string, std::string>& params);
  std::vector<Route> routes_;
  ErrorFormatter error_ = default_error;
  Middleware middleware_;
};

struct ServerOptions {
  std::string host = "127.0.0.1";
  uint16_t port = 8080;          // 0: pick a free port (see HttpServer::port())
  int threads = 2;               // I/O threads
  size_t body_limit = 8u << 20;  // bytes; larger bodies get 413
  std::chrono::seconds idle_timeout{60};   // keep-alive connections idle this long are closed
  std::chrono::seconds write_timeout{60};  // a client that does not read for this long is dropped
  bool log_requests = true;      // one line per request on stderr
  int max_connections = 0;       // 0: no bound; beyond it new connections get 503 and are closed
  // Once a request's first byte arrived, the whole request must arrive within
  // this (slow-header / slow-body clients are dropped); 0: only idle_timeout.
  std::chrono::seconds request_read_timeout{0};
  // Called once per request when its response is done (status 499: the client
  // went away), instead of the stderr line. note: "", "stream", "client closed ...".
  std::function<void(const HttpRequest&, int status, const std::string& note)> on_complete;
  // stop(): requests in flight (streams included) get this long to finish
  // after the listener closes; then what remains is cut.
  std::chrono::milliseconds drain_timeout{30000};
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
  // Graceful: closes the listener (new connections are refused), lets the
  // requests in flight finish (up to options.drain_timeout; their connections
  // then close instead of staying alive), then cancels what is left, closes
  // connections and joins the threads.
  void stop();
  // Requests being answered right now (parsed, response not yet complete).
  int requests_in_flight() const;
  // Connections open right now (for tests and health).
  int open_connections() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace lmhost::server
