#include <atomic>
#include <cstdio>
#include <exception>
#include <mutex>

#include "server/http.h"
#include "util/error.h"

namespace lmhost::server {

const std::string* HttpRequest::header(std::string_view lower_name) const {
  for (const auto& [k, v] : headers)
    if (k == lower_name) return &v;
  return nullptr;
}

std::string json_quote(std::string_view s) {
  std::string out;
  out.reserve(s.size() + 2);
  out.push_back('"');
  for (unsigned char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (c < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", c);
          out += buf;
        } else {
          out.push_back(static_cast<char>(c));
        }
    }
  }
  out.push_back('"');
  return out;
}

const char* status_reason(int status) {
  switch (status) {
    case 200: return "OK";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 413: return "Payload Too Large";
    case 422: return "Unprocessable Entity";
    case 429: return "Too Many Requests";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    default: return "";
  }
}

HttpResponse default_error(const HttpRequest&, int status, const std::string& message) {
  const char* type = status == 404   ? "not_found_error"
                     : status >= 500 ? "server_error"
                                     : "invalid_request_error";
  std::string body = "{\"error\":{\"message\":" + json_quote(message) + ",\"type\":\"" + type +
                     "\",\"param\":null,\"code\":" + std::to_string(status) + "}}";
  return HttpResponse::json(status, std::move(body));
}

namespace {
std::vector<std::string> split_path(std::string_view p) {
  std::vector<std::string> out;
  size_t i = 0;
  while (i < p.size()) {
    if (p[i] == '/') { ++i; continue; }
    size_t j = p.find('/', i);
    if (j == std::string_view::npos) j = p.size();
    out.emplace_back(p.substr(i, j - i));
    i = j;
  }
  return out;
}
}  // namespace

void Router::add(std::string method, std::string pattern, Handler h) {
  auto segs = split_path(pattern);
  routes_.push_back({std::move(method), std::move(segs), std::move(h), std::move(pattern)});
}

namespace {
thread_local HttpRequest* t_current = nullptr;

struct CurrentScope {
  HttpRequest* prev;
  explicit CurrentScope(HttpRequest* r) : prev(t_current) { t_current = r; }
  ~CurrentScope() { t_current = prev; }
};

// Adds the request's extra headers to a response that becomes ready later.
class HeaderedDeferred : public DeferredResponse {
 public:
  HeaderedDeferred(std::shared_ptr<DeferredResponse> inner, std::vector<std::pair<std::string, std::string>> h)
      : inner_(std::move(inner)), headers_(std::move(h)) {}
  void set_notify(std::function<void()> n) override { inner_->set_notify(std::move(n)); }
  void cancel() override { inner_->cancel(); }
  std::optional<HttpResponse> poll() override {
    auto r = inner_->poll();
    if (r) r->headers.insert(r->headers.end(), headers_.begin(), headers_.end());
    return r;
  }

 private:
  std::shared_ptr<DeferredResponse> inner_;
  std::vector<std::pair<std::string, std::string>> headers_;
};

void add_info_headers(const HttpRequest& req, HttpResponse& res) {
  if (!req.info || req.info->response_headers.empty()) return;
  if (res.deferred) {
    res.deferred = std::make_shared<HeaderedDeferred>(res.deferred, req.info->response_headers);
    return;
  }
  res.headers.insert(res.headers.end(), req.info->response_headers.begin(), req.info->response_headers.end());
}
}  // namespace

HttpRequest* current_request() { return t_current; }

bool Router::match(const Route& r, std::string_view path, std::unordered_map<std::string, std::string>& params) {
  params.clear();
  // Walk the path segment by segment (keeping the raw rest for {*name}).
  size_t i = 0;
  for (size_t k = 0; k < r.segments.size(); ++k) {
    const std::string& seg = r.segments[k];
    while (i < path.size() && path[i] == '/') ++i;
    if (seg.size() > 3 && seg.compare(0, 2, "{*") == 0 && seg.back() == '}') {
      if (i >= path.size()) return false;
      params[seg.substr(2, seg.size() - 3)] = std::string(path.substr(i));
      return true;
    }
    if (i >= path.size()) return false;
    size_t j = path.find('/', i);
    if (j == std::string_view::npos) j = path.size();
    const std::string_view part = path.substr(i, j - i);
    if (seg.size() > 2 && seg.front() == '{' && seg.back() == '}') {
      params[seg.substr(1, seg.size() - 2)] = std::string(part);
    } else if (part != seg) {
      return false;
    }
    i = j;
  }
  while (i < path.size() && path[i] == '/') ++i;
  return i >= path.size();
}

HttpResponse Router::dispatch(HttpRequest& req) const {
  std::unordered_map<std::string, std::string> params;
  const Route* found = nullptr;
  const Route* get_fallback = nullptr;
  std::string allow;
  for (const auto& r : routes_) {
    if (!match(r, req.path, params)) continue;
    if (r.method == req.method) { found = &r; break; }
    if (req.method == "HEAD" && r.method == "GET" && !get_fallback) get_fallback = &r;
    if (allow.find(r.method) == std::string::npos) allow += (allow.empty() ? "" : ", ") + r.method;
  }
  if (!found) found = get_fallback;
  if (!found) {
    if (!allow.empty()) {
      HttpResponse res = error_(req, 405, "method " + req.method + " is not allowed on " + req.path +
                                              " (allowed: " + allow + ")");
      res.headers.emplace_back("Allow", allow);
      return res;
    }
    return error_(req, 404, "no route for " + req.method + " " + req.path);
  }
  match(*found, req.path, params);
  req.params = std::move(params);
  if (!req.info) req.info = std::make_shared<RequestInfo>();
  req.info->route = found->pattern;
  return invoke(*found, req, true);
}

namespace {

// The answer of a handler that threw RetryWhenReady: waits for its wake-up
// without a thread, then runs the handler again (on the I/O thread that
// polls); a deferred or streamed answer of that run is passed on.
class Redispatch : public DeferredResponse, public std::enable_shared_from_this<Redispatch> {
 public:
  Redispatch(const Router& router, const Router::Route& route, HttpRequest& req,
             std::function<void(std::function<void()>)> watch)
      : router_(router), route_(route), req_(req), watch_(std::move(watch)) {}

  void set_notify(std::function<void()> n) override {
    std::shared_ptr<DeferredResponse> inner;
    bool arm = false;
    {
      std::lock_guard lk(mu_);
      notify_ = n;
      inner = inner_;
      if (!inner && n && !armed_) arm = armed_ = true;
    }
    if (inner) inner->set_notify(std::move(n));
    if (arm) {  // outside mu_: watch_ may wake us at once
      std::weak_ptr<Redispatch> self = weak_from_this();
      watch_([self] {
        auto s = self.lock();
        if (!s) return;
        s->woken_.store(true);
        std::function<void()> notify;
        {
          std::lock_guard lk(s->mu_);
          notify = s->notify_;
        }
        if (notify) notify();
      });
    }
  }
  void cancel() override {
    cancelled_.store(true);
    std::shared_ptr<DeferredResponse> inner;
    {
      std::lock_guard lk(mu_);
      inner = inner_;
    }
    if (inner) inner->cancel();
  }
  std::optional<HttpResponse> poll() override {
    std::shared_ptr<DeferredResponse> inner;
    {
      std::lock_guard lk(mu_);
      inner = inner_;
    }
    if (inner) return inner->poll();
    if (cancelled_.load() || !woken_.exchange(false)) return std::nullopt;
    HttpResponse res = router_.invoke(route_, req_, false);
    if (!res.deferred) return res;
    // The handler waits again, or answers later: hand over to that.
    std::function<void()> notify;
    {
      std::lock_guard lk(mu_);
      inner_ = res.deferred;
      notify = notify_;
    }
    res.deferred->set_notify(std::move(notify));
    return res.deferred->poll();
  }

 private:
  const Router& router_;
  const Router::Route& route_;
  HttpRequest& req_;
  std::function<void(std::function<void()>)> watch_;
  std::mutex mu_;
  std::function<void()> notify_;
  std::shared_ptr<DeferredResponse> inner_;
  bool armed_ = false;
  std::atomic<bool> woken_{false}, cancelled_{false};
};

}  // namespace

HttpResponse Router::invoke(const Route& route, HttpRequest& req, bool with_middleware) const {
  CurrentScope scope(&req);
  try {
    if (with_middleware && middleware_) {
      if (auto early = middleware_(req)) return std::move(*early);
    }
    HttpResponse res = route.handler(req);
    add_info_headers(req, res);
    return res;
  } catch (RetryWhenReady& r) {
    HttpResponse res;
    res.deferred = std::make_shared<Redispatch>(*this, route, req, std::move(r.watch()));
    return res;
  } catch (const Error& e) {
    HttpResponse res = error_(req, e.status(), e.what());
    if (e.status() == 503) res.headers.emplace_back("Retry-After", "1");
    add_info_headers(req, res);
    return res;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "lmhost: %s %s: internal error: %s\n", req.method.c_str(), req.path.c_str(), e.what());
    return error_(req, 500, std::string("internal error: ") + e.what());
  }
}

}  // namespace lmhost::server
