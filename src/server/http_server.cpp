// The only file that includes Boost.Beast / Asio (build time).
#include <atomic>
#include <cctype>
#include <condition_variable>
#include <cstdio>
#include <mutex>
#include <random>
#include <thread>

#include <boost/asio.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include "server/http.h"
#include "util/error.h"

namespace lmhost::server {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = boost::beast::http;
using tcp = net::ip::tcp;
using namespace net::experimental::awaitable_operators;
using Clock = std::chrono::steady_clock;

namespace {

constexpr auto use_tuple = net::as_tuple(net::use_awaitable);

std::string percent_decode(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size() && std::isxdigit(static_cast<unsigned char>(s[i + 1])) &&
        std::isxdigit(static_cast<unsigned char>(s[i + 2]))) {
      out.push_back(static_cast<char>(std::stoi(std::string(s.substr(i + 1, 2)), nullptr, 16)));
      i += 2;
    } else {
      out.push_back(s[i]);
    }
  }
  return out;
}

bool sane_request_id(std::string_view s) {
  if (s.empty() || s.size() > 128) return false;
  for (unsigned char c : s)
    if (c < 0x21 || c > 0x7e) return false;
  return true;
}

// Wakes a connection's coroutine from any thread: cancels its wait timer on
// the connection's strand. `pending` avoids lost wake-ups (see wait_ready).
struct Waker : std::enable_shared_from_this<Waker> {
  explicit Waker(net::any_io_executor ex) : timer(ex) {}
  net::steady_timer timer;
  std::atomic<bool> pending{false};
  void notify() {
    if (!pending.exchange(true))
      net::post(timer.get_executor(), [self = shared_from_this()] { self->timer.cancel(); });
  }
};

// Cancels a source unless it finished (client gone, server stopping, error).
struct CancelGuard {
  AsyncSource* src = nullptr;
  ~CancelGuard() {
    if (src) src->cancel();
  }
};

}  // namespace

struct HttpServer::Impl {
  ServerOptions opts;
  std::shared_ptr<const Router> router;
  net::io_context ioc;
  tcp::acceptor acceptor{ioc};
  std::vector<std::thread> threads;
  std::atomic<int> connections{0};
  std::atomic<int> in_flight{0};       // requests parsed whose response is not complete
  std::atomic<bool> draining{false};   // stop() began: finish what runs, keep nothing alive
  std::atomic<uint64_t> next_id{1};
  uint64_t id_salt = 0;
  std::atomic<bool> stopped{false};
  std::mutex stop_mu;
  std::condition_variable stop_cv;
  bool stop_requested = false;

  Impl(ServerOptions o, std::shared_ptr<const Router> r) : opts(std::move(o)), router(std::move(r)) {
    id_salt = std::random_device{}();
    id_salt = (id_salt << 32) ^ std::random_device{}();
  }

  std::string make_id() {
    char buf[40];
    std::snprintf(buf, sizeof buf, "req_%012llx",
                  static_cast<unsigned long long>((id_salt + next_id.fetch_add(1) * 0x9e3779b97f4a7c15ULL) &
                                                  0xffffffffffffULL));
    return buf;
  }

  net::awaitable<void> accept_loop() {
    for (;;) {
      auto [ec, sock] = co_await acceptor.async_accept(net::make_strand(ioc), use_tuple);
      if (ec) {
        if (ec == net::error::operation_aborted || !acceptor.is_open()) co_return;
        continue;  // e.g. too many open files: keep serving the others
      }
      net::co_spawn(sock.get_executor(), session(std::move(sock)), net::detached);
    }
  }

  // Waits until the waker fires, a short poll interval passes or the client
  // closes the connection. Returns false when the client is gone.
  net::awaitable<bool> wait_ready(beast::tcp_stream& stream, Waker& w, bool& watch) {
    if (w.pending.load()) co_return true;
    w.timer.expires_after(std::chrono::milliseconds(250));
    if (!watch) {
      co_await w.timer.async_wait(use_tuple);
      co_return true;
    }
    auto r = co_await (w.timer.async_wait(use_tuple) ||
                       stream.socket().async_wait(tcp::socket::wait_read, use_tuple));
    if (r.index() == 1) {
      // Readable while we have not answered: either EOF (client gone) or a
      // pipelined request (keep it for later, stop watching).
      char c;
      boost::system::error_code ec;
      // Peek without blocking: the wait may report readiness that is gone
      // (or have been cancelled), and a blocking peek would hang this I/O thread.
      stream.socket().non_blocking(true, ec);
      const size_t n = stream.socket().receive(net::buffer(&c, 1), tcp::socket::message_peek, ec);
      boost::system::error_code ignored;
      stream.socket().non_blocking(false, ignored);
      if (ec == net::error::would_block || ec == net::error::try_again) co_return true;
      if (ec || n == 0) co_return false;
      watch = false;
    }
    co_return true;
  }

  template <class Res>
  void common_headers(Res& res, const HttpResponse& r, const std::string& id) {
    res.set(http::field::server, "lmhost");
    res.set(http::field::content_type, r.content_type);
    res.set("X-Request-Id", id);
    for (const auto& [k, v] : r.headers) res.set(k, v);
  }

  // The request's model lease ends before the last bytes go out: a client
  // that has its answer and sends the next request must find the model idle
  // (LRU eviction under MAX_LOADED_MODELS skips models in use; under CPU
  // load the request's own cleanup could otherwise run after that next
  // request had already been answered).
  static void release_model(HttpRequest& req) {
    if (req.info) req.info->model_hold.reset();
  }

  void log(const HttpRequest& req, int status, const char* note = "") {
    if (opts.on_complete) {
      opts.on_complete(req, status, note);
      return;
    }
    if (!opts.log_requests) return;
    const double ms = std::chrono::duration<double, std::milli>(Clock::now() - req.received).count();
    std::fprintf(stderr, "lmhost: %s %s %s -> %d %.1f ms%s\n", req.id.c_str(), req.method.c_str(),
                 req.path.c_str(), status, ms, note);
  }

  // Writes an error for a request that could not be parsed, then closes
  // after draining what the client still sends (so it reads the answer
  // instead of a reset).
  net::awaitable<void> reject(beast::tcp_stream& stream, beast::flat_buffer& buf, int status, const std::string& msg,
                              const std::string& id) {
    HttpRequest dummy;
    dummy.id = id;
    dummy.path = "/";
    HttpResponse r = router->error_formatter()(dummy, status, msg);
    http::response<http::string_body> res{static_cast<http::status>(status), 11};
    common_headers(res, r, id);
    res.keep_alive(false);
    res.body() = r.body;
    res.prepare_payload();
    stream.expires_after(std::chrono::seconds(5));
    co_await http::async_write(stream, res, use_tuple);
    boost::system::error_code ec;
    stream.socket().shutdown(tcp::socket::shutdown_send, ec);
    // Drain for a moment.
    size_t drained = 0;
    stream.expires_after(std::chrono::seconds(2));
    while (drained < (64u << 20)) {
      auto [rec, n] = co_await stream.async_read_some(buf.prepare(65536), use_tuple);
      if (rec) break;
      drained += n;
    }
  }

  net::awaitable<void> session(tcp::socket sock) {
    ++connections;
    struct Dec {
      std::atomic<int>& c;
      ~Dec() { --c; }
    } dec{connections};
    std::string remote;
    {
      boost::system::error_code ec;
      auto ep = sock.remote_endpoint(ec);
      if (!ec) remote = ep.address().to_string() + ":" + std::to_string(ep.port());
    }
    beast::tcp_stream stream(std::move(sock));
    beast::flat_buffer buf;
    auto waker = std::make_shared<Waker>(stream.get_executor());
    if (opts.max_connections > 0 && connections.load() > opts.max_connections) {
      co_await reject(stream, buf, 503,
                      "too many open connections (the limit is " + std::to_string(opts.max_connections) +
                          "); retry shortly",
                      make_id());
      co_return;
    }

    for (;;) {
      http::request_parser<http::string_body> parser;
      parser.body_limit(opts.body_limit);
      parser.header_limit(64 * 1024);
      if (opts.request_read_timeout.count() > 0) {
        // Idle until the first byte, then the whole request within the limit.
        if (buf.size() == 0) {
          stream.expires_after(opts.idle_timeout);
          auto [pec, pn] = co_await stream.async_read_some(buf.prepare(16384), use_tuple);
          if (pec) break;
          buf.commit(pn);
        }
        stream.expires_after(opts.request_read_timeout);
      } else {
        stream.expires_after(opts.idle_timeout);
      }
      auto [ec, nread] = co_await http::async_read(stream, buf, parser, use_tuple);
      if (ec) {
        if (ec == http::error::body_limit) {
          co_await reject(stream, buf, 413,
                          "the request body is larger than the limit of " + std::to_string(opts.body_limit) + " bytes",
                          make_id());
        } else if (ec.category() == http::make_error_code(http::error::bad_target).category() &&
                   ec != http::error::end_of_stream && ec != http::error::partial_message) {
          co_await reject(stream, buf, ec == http::error::header_limit ? 431 : 400,
                          "malformed HTTP request: " + ec.message(), make_id());
        }
        break;
      }
      auto& msg = parser.get();

      HttpRequest req;
      req.received = Clock::now();
      req.method = std::string(msg.method_string());
      req.target = std::string(msg.target());
      const size_t q = req.target.find('?');
      req.path = percent_decode(std::string_view(req.target).substr(0, q));
      if (q != std::string::npos) req.query = req.target.substr(q + 1);
      for (const auto& f : msg) {
        std::string name(f.name_string());
        for (auto& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
        req.headers.emplace_back(std::move(name), std::string(f.value()));
      }
      const std::string* rid = req.header("x-request-id");
      req.id = rid && sane_request_id(*rid) ? *rid : make_id();
      req.remote = remote;
      req.body = std::move(msg.body());
      const bool keep_alive = msg.keep_alive() && !draining.load();
      const bool head = msg.method() == http::verb::head;
      ++in_flight;
      struct InFlight {
        std::atomic<int>& n;
        ~InFlight() { --n; }
      } in_flight_guard{in_flight};

      HttpResponse res = router->dispatch(req);
      bool watch = true;

      // A response that becomes ready later: wait, watching the client.
      if (res.deferred) {
        auto src = res.deferred;
        CancelGuard guard{src.get()};
        src->set_notify([w = std::weak_ptr<Waker>(waker)] {
          if (auto s = w.lock()) s->notify();
        });
        stream.expires_never();
        std::optional<HttpResponse> ready;
        for (;;) {
          waker->pending.store(false);
          ready = src->poll();
          if (ready) break;
          if (!co_await wait_ready(stream, *waker, watch)) break;
        }
        src->set_notify(nullptr);
        if (!ready) {
          log(req, 499, " (client closed the connection)");
          co_return;  // guard cancels the source
        }
        guard.src = nullptr;
        res = std::move(*ready);
        res.deferred.reset();
      }

      if (res.stream) {
        auto src = res.stream;
        CancelGuard guard{src.get()};
        http::response<http::empty_body> hdr{static_cast<http::status>(res.status), 11};
        common_headers(hdr, res, req.id);
        hdr.set(http::field::cache_control, "no-cache");
        hdr.keep_alive(keep_alive);
        hdr.chunked(true);
        http::response_serializer<http::empty_body> sr{hdr};
        stream.expires_after(opts.write_timeout);
        auto [wec, wn] = co_await http::async_write_header(stream, sr, use_tuple);
        if (wec) {
          log(req, 499, " (client closed the connection)");
          co_return;
        }
        src->set_notify([w = std::weak_ptr<Waker>(waker)] {
          if (auto s = w.lock()) s->notify();
        });
        std::string chunk;
        bool more = true, gone = false;
        while (more) {
          waker->pending.store(false);
          chunk.clear();
          more = src->poll(chunk);
          if (!chunk.empty()) {
            stream.expires_after(opts.write_timeout);
            auto [cec, cn] = co_await net::async_write(stream, http::make_chunk(net::buffer(chunk)), use_tuple);
            if (cec) { gone = true; break; }
            continue;
          }
          if (!more) break;
          stream.expires_never();
          if (!co_await wait_ready(stream, *waker, watch)) { gone = true; break; }
        }
        src->set_notify(nullptr);
        if (gone) {
          log(req, 499, " (client closed the connection during the stream)");
          co_return;
        }
        guard.src = nullptr;
        release_model(req);
        stream.expires_after(opts.write_timeout);
        auto [lec, ln] = co_await net::async_write(stream, http::make_chunk_last(), use_tuple);
        log(req, res.status, " (stream)");
        if (lec || !keep_alive || draining.load()) break;
        continue;
      }

      http::response<http::string_body> out{static_cast<http::status>(res.status), 11};
      common_headers(out, res, req.id);
      out.keep_alive(keep_alive);
      if (head) {
        out.content_length(res.body.size());
      } else {
        out.body() = std::move(res.body);
        out.prepare_payload();
      }
      release_model(req);
      stream.expires_after(opts.write_timeout);
      auto [wec, wn] = co_await http::async_write(stream, out, use_tuple);
      log(req, res.status);
      if (wec || !keep_alive || draining.load()) break;
    }
    boost::system::error_code ec;
    stream.socket().shutdown(tcp::socket::shutdown_send, ec);
    stream.socket().close(ec);
  }
};

HttpServer::HttpServer(ServerOptions options, std::shared_ptr<const Router> router)
    : impl_(std::make_unique<Impl>(std::move(options), std::move(router))) {}

HttpServer::~HttpServer() { stop(); }

void HttpServer::start() {
  auto& im = *impl_;
  boost::system::error_code ec;
  auto addr = net::ip::make_address(im.opts.host, ec);
  if (ec) {
    // A host name (e.g. "localhost"): resolve it.
    tcp::resolver res(im.ioc);
    auto results = res.resolve(im.opts.host, std::to_string(im.opts.port), ec);
    if (ec || results.empty()) throw Error("cannot resolve host '" + im.opts.host + "': " + ec.message());
    addr = results.begin()->endpoint().address();
  }
  tcp::endpoint ep(addr, im.opts.port);
  im.acceptor.open(ep.protocol(), ec);
  if (!ec) im.acceptor.set_option(net::socket_base::reuse_address(true), ec);
  if (!ec) im.acceptor.bind(ep, ec);
  if (!ec) im.acceptor.listen(net::socket_base::max_listen_connections, ec);
  if (ec)
    throw Error("cannot listen on " + im.opts.host + ":" + std::to_string(im.opts.port) + ": " + ec.message() +
                " (is another server running there? pick another --port)");
  net::co_spawn(im.ioc, im.accept_loop(), net::detached);
  const int n = std::max(1, im.opts.threads);
  for (int i = 0; i < n; ++i) im.threads.emplace_back([&im] { im.ioc.run(); });
}

uint16_t HttpServer::port() const {
  boost::system::error_code ec;
  auto ep = impl_->acceptor.local_endpoint(ec);
  return ec ? 0 : ep.port();
}

int HttpServer::open_connections() const { return impl_->connections.load(); }
int HttpServer::requests_in_flight() const { return impl_->in_flight.load(); }

void HttpServer::wait_for_signal() {
  auto& im = *impl_;
  net::io_context sig_ioc;
  net::signal_set signals(sig_ioc, SIGINT, SIGTERM);
  std::atomic<int> got{0};
  signals.async_wait([&](const boost::system::error_code& ec, int sig) {
    if (!ec) got = sig;
  });
  // Poll so that stop() from another thread also ends the wait.
  while (!got.load()) {
    sig_ioc.run_for(std::chrono::milliseconds(200));
    std::lock_guard lk(im.stop_mu);
    if (im.stop_requested) break;
  }
  if (got.load())
    std::fprintf(stderr, "lmhost: %s received, shutting down\n", got.load() == SIGINT ? "SIGINT" : "SIGTERM");
}

void HttpServer::stop() {
  auto& im = *impl_;
  {
    std::lock_guard lk(im.stop_mu);
    im.stop_requested = true;
  }
  if (im.stopped.exchange(true)) return;
  net::post(im.ioc, [&im] {
    boost::system::error_code ec;
    im.acceptor.close(ec);
  });
  // Drain: requests in flight (streams included) finish, up to drain_timeout.
  im.draining.store(true);
  const auto drain_until = Clock::now() + im.opts.drain_timeout;
  while (im.in_flight.load() > 0 && Clock::now() < drain_until)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  // Give the last writes a moment, then stop.
  const auto until = Clock::now() + std::chrono::milliseconds(200);
  while (im.connections.load() > 0 && Clock::now() < until) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  im.ioc.stop();
  for (auto& t : im.threads)
    if (t.joinable()) t.join();
  im.threads.clear();
}

}  // namespace lmhost::server
