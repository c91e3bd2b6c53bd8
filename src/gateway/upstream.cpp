// Upstream pools over libcurl (see upstream.h).
#include "gateway/upstream.h"

#include <curl/curl.h>

#include <algorithm>
#include <random>
#include <set>
#include <tuple>

#include <nlohmann/json.hpp>

#include "observe/log.h"
#include "observe/metrics.h"
#include "util/error.h"

namespace lmhost::gateway {

namespace {

void curl_init_once() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

struct CurlHandle {
  CURL* h = curl_easy_init();
  curl_slist* headers = nullptr;
  ~CurlHandle() {
    if (headers) curl_slist_free_all(headers);
    if (h) curl_easy_cleanup(h);
  }
};

void set_common(CurlHandle& c, const Upstream& u, const std::string& url, std::chrono::milliseconds connect_timeout) {
  curl_easy_setopt(c.h, CURLOPT_URL, url.c_str());
  curl_easy_setopt(c.h, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c.h, CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(connect_timeout.count()));
  curl_easy_setopt(c.h, CURLOPT_TCP_NODELAY, 1L);
  c.headers = curl_slist_append(c.headers, "Content-Type: application/json");
  c.headers = curl_slist_append(c.headers, "Expect:");
  if (!u.spec.key.empty()) c.headers = curl_slist_append(c.headers, ("Authorization: Bearer " + u.spec.key).c_str());
  curl_easy_setopt(c.h, CURLOPT_HTTPHEADER, c.headers);
}

size_t append_cb(char* p, size_t sz, size_t n, void* ud) {
  static_cast<std::string*>(ud)->append(p, sz * n);
  return sz * n;
}

// One attempt of a proxied exchange.
struct Attempt {
  ProxyState* st;
  CURL* h;
  std::shared_ptr<Upstream> up;
  bool stream;
  bool committed = false;  // bytes went to the client: no retry any more
  std::string buf;         // non-streaming: the whole body
};

void commit(Attempt& a, long status) {
  char* ct = nullptr;
  curl_easy_getinfo(a.h, CURLINFO_CONTENT_TYPE, &ct);
  std::lock_guard lk(a.st->mu);
  a.st->committed = true;
  a.st->status = static_cast<int>(status);
  a.st->content_type = ct ? ct : "application/json";
  a.st->upstream = a.up;
  a.committed = true;
}

size_t proxy_write(char* p, size_t sz, size_t n, void* ud) {
  auto& a = *static_cast<Attempt*>(ud);
  if (a.st->cancelled.load()) return 0;
  long status = 0;
  curl_easy_getinfo(a.h, CURLINFO_RESPONSE_CODE, &status);
  if (judge_status(status).verdict != Verdict::Serve) {  // retried elsewhere: nothing passed on
    if (a.buf.size() > (1u << 16)) return 0;  // error bodies are short; keep the start for the message
    a.buf.append(p, sz * n);
    return sz * n;
  }
  if (!a.stream) {
    a.buf.append(p, sz * n);
    return sz * n;
  }
  if (!a.committed) commit(a, status);
  {
    std::lock_guard lk(a.st->mu);
    a.st->pending.append(p, sz * n);
  }
  a.st->wake();
  return sz * n;
}

int proxy_progress(void* ud, curl_off_t, curl_off_t, curl_off_t, curl_off_t) {
  return static_cast<Attempt*>(ud)->st->cancelled.load() ? 1 : 0;
}

}  // namespace

// Ollama's naming: NAME means NAME:latest.
bool same_model(const std::string& listed, const std::string& asked) {
  if (listed == asked) return true;
  static const std::string latest = ":latest";
  auto base = [](const std::string& s) {
    return s.size() > latest.size() && s.compare(s.size() - latest.size(), latest.size(), latest) == 0
               ? s.substr(0, s.size() - latest.size())
               : s;
  };
  return base(listed) == base(asked);
}

StatusPolicy judge_status(long status) {
  if (status <= 0) return {Verdict::RetrySame, true};              // no answer: connection error
  if (status >= 500 || status == 408) return {Verdict::RetrySame, true};
  if (status == 404 || status == 429) return {Verdict::NextUpstream, false};  // model gone / busy: it is up
  if (status == 401 || status == 403) return {Verdict::NextUpstream, true};   // our key to it is refused
  return {Verdict::Serve, false};  // 2xx, 3xx, and the request's own fault (400, 413, 422, ...)
}

std::vector<size_t> balance_order(const std::vector<CandidateInfo>& c, Balance b, UpstreamKind prefer, uint64_t turn) {
  std::vector<size_t> idx(c.size());
  if (c.empty()) return idx;
  // Rotate by the turn (ties go round), then stable-sort by (unhealthy, [in flight,] other kind).
  for (size_t i = 0; i < c.size(); ++i) idx[i] = (i + turn) % c.size();
  const bool least = b == Balance::LeastOutstanding;
  auto key = [&](size_t i) {
    return std::make_tuple(c[i].healthy ? 0 : 1, least ? c[i].in_flight : int64_t{0}, c[i].kind == prefer ? 0 : 1);
  };
  std::stable_sort(idx.begin(), idx.end(), [&](size_t x, size_t y) { return key(x) < key(y); });
  return idx;
}

Balance parse_balance(const std::string& s) {
  if (s == "round_robin" || s.empty()) return Balance::RoundRobin;
  if (s == "least_outstanding") return Balance::LeastOutstanding;
  throw Error("upstream.balance: expected round_robin or least_outstanding, got '" + s + "'", 400);
}

const char* upstream_kind_name(UpstreamKind k) { return k == UpstreamKind::OpenAI ? "openai" : "ollama"; }

UpstreamSpec parse_upstream(const std::string& s) {
  UpstreamSpec u;
  std::string rest = s;
  if (rest.rfind("ollama:", 0) == 0 && rest.rfind("ollama://", 0) != 0) {
    rest = rest.substr(7);
  } else if (rest.rfind("openai:", 0) == 0) {
    u.kind = UpstreamKind::OpenAI;
    rest = rest.substr(7);
  }
  if (const size_t hash = rest.find('#'); hash != std::string::npos) {
    u.key = rest.substr(hash + 1);
    rest.resize(hash);
  }
  if (const size_t q = rest.find('?'); q != std::string::npos) {  // ?prefix=P&models=A+B=C
    const std::string query = rest.substr(q + 1);
    rest.resize(q);
    size_t i = 0;
    while (i <= query.size()) {
      size_t j = query.find('&', i);
      if (j == std::string::npos) j = query.size();
      const std::string kv = query.substr(i, j - i);
      i = j + 1;
      if (kv.empty()) continue;
      const size_t eq = kv.find('=');
      const std::string k = kv.substr(0, eq), v = eq == std::string::npos ? "" : kv.substr(eq + 1);
      if (k == "prefix") {
        u.prefix = v;
      } else if (k == "models") {
        size_t a = 0;
        while (a <= v.size()) {
          size_t b = v.find('+', a);
          if (b == std::string::npos) b = v.size();
          const std::string m = v.substr(a, b - a);
          a = b + 1;
          if (m.empty()) continue;
          const size_t e = m.find('=');
          if (e == std::string::npos) u.models.emplace_back("", m);
          else if (e == 0 || e + 1 == m.size())
            throw Error("upstream '" + s + "': models entry '" + m + "' must be NAME or LOCAL=REMOTE", 400);
          else u.models.emplace_back(m.substr(0, e), m.substr(e + 1));
        }
      } else {
        throw Error("upstream '" + s + "': unknown option '" + k + "' (expected prefix=P or models=A+LOCAL=REMOTE)", 400);
      }
    }
  }
  if (rest.find("://") == std::string::npos) rest = "http://" + rest;
  if (rest.rfind("http://", 0) != 0 && rest.rfind("https://", 0) != 0)
    throw Error("upstream '" + s + "': expected ollama:URL or openai:URL[#KEY] with an http(s) URL", 400);
  while (!rest.empty() && rest.back() == '/') rest.pop_back();
  // An OpenAI base URL may be given with or without its /v1.
  if (u.kind == UpstreamKind::OpenAI && rest.size() > 3 && rest.compare(rest.size() - 3, 3, "/v1") == 0)
    rest.resize(rest.size() - 3);
  if (rest.size() <= 8) throw Error("upstream '" + s + "': the URL has no host", 400);
  u.url = rest;
  return u;
}

std::string Upstream::name() const { return std::string(upstream_kind_name(spec.kind)) + ":" + spec.url; }

bool Upstream::healthy() const {
  std::lock_guard lk(mu_);
  return std::chrono::steady_clock::now() >= open_until_;
}

std::vector<std::string> Upstream::models() const {
  std::lock_guard lk(mu_);
  std::vector<std::string> out;
  for (const auto& m : models_) out.push_back(m.first);
  return out;
}

std::optional<std::string> Upstream::remote_name(const std::string& asked) const {
  std::lock_guard lk(mu_);
  for (const auto& m : models_)
    if (same_model(m.first, asked)) return m.second;
  return std::nullopt;
}

void Upstream::set_listed(const std::vector<std::string>& listed) {
  std::vector<std::pair<std::string, std::string>> offered;
  if (spec.models.empty()) {
    for (const auto& r : listed) offered.emplace_back(spec.prefix + r, r);
  } else {
    for (const auto& [local, remote] : spec.models)
      for (const auto& r : listed)
        if (same_model(r, remote)) {
          offered.emplace_back(local.empty() ? spec.prefix + remote : local, r);
          break;
        }
  }
  std::lock_guard lk(mu_);
  models_ = std::move(offered);
}

void Upstream::success() {
  std::lock_guard lk(mu_);
  consecutive_failures_ = 0;
  open_until_ = {};
  up_ = true;
}

void Upstream::failure(std::chrono::milliseconds cooldown, int threshold) {
  std::lock_guard lk(mu_);
  if (++consecutive_failures_ >= threshold) {
    if (std::chrono::steady_clock::now() >= open_until_)
      observe::log_warn("upstream cooling down", {{"backend", name()},
                                                  {"failures", static_cast<int64_t>(consecutive_failures_)},
                                                  {"cooldown_ms", static_cast<int64_t>(cooldown.count())}});
    open_until_ = std::chrono::steady_clock::now() + cooldown;
    up_ = false;
  }
}

void ProxyState::wake() {
  std::function<void()> n;
  {
    std::lock_guard lk(mu);
    n = notify;
  }
  if (n) n();
}

Upstreams::Upstreams(std::vector<UpstreamSpec> specs, UpstreamOptions options) : opts_(options) {
  curl_init_once();
  for (auto& s : specs) ups_.push_back(std::make_shared<Upstream>(std::move(s)));
}

Upstreams::~Upstreams() { stop(); }

bool Upstreams::refresh(Upstream& u) {
  CurlHandle c;
  if (!c.h) return false;
  const bool oai = u.spec.kind == UpstreamKind::OpenAI;
  set_common(c, u, u.spec.url + (oai ? "/v1/models" : "/api/tags"), opts_.connect_timeout);
  curl_easy_setopt(c.h, CURLOPT_TIMEOUT_MS, static_cast<long>(opts_.connect_timeout.count() * 2));
  std::string body;
  curl_easy_setopt(c.h, CURLOPT_WRITEFUNCTION, append_cb);
  curl_easy_setopt(c.h, CURLOPT_WRITEDATA, &body);
  const CURLcode rc = curl_easy_perform(c.h);
  long status = 0;
  curl_easy_getinfo(c.h, CURLINFO_RESPONSE_CODE, &status);
  std::vector<std::string> names;
  bool ok = rc == CURLE_OK && status == 200;
  if (ok) {
    auto j = nlohmann::json::parse(body, nullptr, false);
    const char* list = oai ? "data" : "models";
    const char* field = oai ? "id" : "name";
    if (j.is_object() && j.contains(list) && j[list].is_array()) {
      for (const auto& m : j[list])
        if (m.is_object() && m.contains(field) && m[field].is_string()) names.push_back(m[field].get<std::string>());
    } else {
      ok = false;
    }
  }
  if (!ok) {
    const bool was_up = u.up();
    u.failure(opts_.cooldown, 1);  // a failed health check opens the circuit at once
    if (was_up)
      observe::log_warn("upstream down", {{"backend", u.name()},
                                          {"error", rc != CURLE_OK ? curl_easy_strerror(rc)
                                                                   : "HTTP " + std::to_string(status)}});
    return false;
  }
  const bool was_up = u.up();
  u.set_listed(names);
  u.success();
  if (!was_up)
    observe::log_info("upstream up", {{"backend", u.name()}, {"models", static_cast<int64_t>(u.models().size())}});
  return true;
}

void Upstreams::start() {
  for (auto& u : ups_) refresh(*u);
  refresher_ = std::thread([this] {
    std::unique_lock lk(stop_mu_);
    while (!stop_cv_.wait_for(lk, opts_.health_interval, [this] { return stopping_; })) {
      lk.unlock();
      for (auto& u : ups_) refresh(*u);
      lk.lock();
    }
  });
}

void Upstreams::stop() {
  {
    std::lock_guard lk(stop_mu_);
    stopping_ = true;
  }
  stop_cv_.notify_all();
  if (refresher_.joinable()) refresher_.join();
}

std::vector<std::string> Upstreams::models() const {
  std::set<std::string> s;
  for (const auto& u : ups_)
    for (auto& m : u->models()) s.insert(m);
  return {s.begin(), s.end()};
}

bool Upstreams::has(const std::string& model) const {
  for (const auto& u : ups_)
    for (const auto& m : u->models())
      if (same_model(m, model)) return true;
  return false;
}

std::vector<std::shared_ptr<Upstream>> Upstreams::candidates(const std::string& model, UpstreamKind prefer) {
  std::vector<std::shared_ptr<Upstream>> offering;
  for (const auto& u : ups_) {
    for (const auto& m : u->models())
      if (same_model(m, model)) {
        offering.push_back(u);
        break;
      }
  }
  if (offering.empty()) return {};
  std::vector<CandidateInfo> info;
  for (const auto& u : offering) info.push_back({u->healthy(), u->in_flight(), u->spec.kind});
  const auto order = balance_order(info, opts_.balance, prefer, rr_.fetch_add(1));
  std::vector<std::shared_ptr<Upstream>> out;
  for (size_t i : order) out.push_back(offering[i]);
  return out;
}

std::shared_ptr<ProxyState> Upstreams::start_proxy(const std::string& model, UpstreamKind prefer, ProxyPlan plan) {
  auto st = std::make_shared<ProxyState>();
  auto cands = candidates(model, prefer);
  std::thread([opts = opts_, st, cands = std::move(cands), plan = std::move(plan)]() mutable {
    run_proxy(st, std::move(cands), std::move(plan), opts);
  }).detach();
  return st;
}

void Upstreams::run_proxy(std::shared_ptr<ProxyState> st, std::vector<std::shared_ptr<Upstream>> cands,
                          ProxyPlan plan, UpstreamOptions opts_) {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  std::string last_error = "no upstream offers this model";
  std::string cannot;      // why an upstream could not take this request (no translation)
  int tries = 0, retries = 0;
  int answered = 0, not_found = 0;  // HTTP answers that were not served, and how many of them were 404
  for (const auto& up : cands) {
    auto [path, body] = plan.build(*up);
    if (path.empty()) {  // this upstream cannot take it; `body` says why
      if (cannot.empty()) cannot = body;
      continue;
    }
    for (int i = 0; i < opts_.attempts_per_upstream; ++i) {
      if (st->cancelled.load()) break;
      if (i > 0) {  // a retry on the same upstream: exponential backoff with jitter
        const int64_t base = opts_.backoff_base.count() << std::min(retries, 6);
        std::uniform_int_distribution<int64_t> jitter(0, base);
        std::this_thread::sleep_for(std::chrono::milliseconds(base + jitter(rng)));
        ++retries;
      }
      ++tries;
      CurlHandle c;
      if (!c.h) break;
      set_common(c, *up, up->spec.url + path, opts_.connect_timeout);
      if (!plan.request_id.empty()) {
        c.headers = curl_slist_append(c.headers, ("X-Request-Id: " + plan.request_id).c_str());
        curl_easy_setopt(c.h, CURLOPT_HTTPHEADER, c.headers);
      }
      curl_easy_setopt(c.h, CURLOPT_POST, 1L);
      curl_easy_setopt(c.h, CURLOPT_POSTFIELDS, body.data());
      curl_easy_setopt(c.h, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body.size()));
      Attempt a{st.get(), c.h, up, plan.stream, false, {}};
      curl_easy_setopt(c.h, CURLOPT_WRITEFUNCTION, proxy_write);
      curl_easy_setopt(c.h, CURLOPT_WRITEDATA, &a);
      curl_easy_setopt(c.h, CURLOPT_NOPROGRESS, 0L);
      curl_easy_setopt(c.h, CURLOPT_XFERINFOFUNCTION, proxy_progress);
      curl_easy_setopt(c.h, CURLOPT_XFERINFODATA, &a);
      ++up->in_flight_;
      const CURLcode rc = curl_easy_perform(c.h);
      --up->in_flight_;
      long status = 0;
      curl_easy_getinfo(c.h, CURLINFO_RESPONSE_CODE, &status);
      if (a.committed) {  // streaming: the client has bytes; whatever happened, this is the answer
        if (rc == CURLE_OK) up->success();
        else if (!st->cancelled.load()) up->failure(opts_.cooldown, opts_.failure_threshold);
        ++up->served_;
        {
          std::lock_guard lk(st->mu);
          st->done = true;
        }
        st->wake();
        return;
      }
      if (st->cancelled.load()) break;
      // The HTTP status when the answer is usable (complete, or an error answer
      // cut short on purpose); 0 when the transfer itself failed.
      const bool http_answer =
          status > 0 && (rc == CURLE_OK || (rc == CURLE_WRITE_ERROR && judge_status(status).verdict != Verdict::Serve));
      const StatusPolicy pol = judge_status(http_answer ? status : 0);
      if (pol.verdict == Verdict::Serve) {
        commit(a, status);
        up->success();
        ++up->served_;
        {
          std::lock_guard lk(st->mu);
          st->pending = std::move(a.buf);
          st->done = true;
        }
        st->wake();
        return;
      }
      if (http_answer) {
        ++answered;
        if (status == 404) ++not_found;
        std::string msg = a.buf.substr(0, 300);
        auto j = nlohmann::json::parse(a.buf, nullptr, false);
        if (j.is_object() && j.contains("error")) {
          const auto& e = j["error"];
          if (e.is_string()) msg = e.get<std::string>();
          else if (e.is_object() && e.contains("message") && e["message"].is_string()) msg = e["message"].get<std::string>();
        }
        last_error = "HTTP " + std::to_string(status) + (msg.empty() ? "" : ": " + msg);
      } else {
        last_error = rc != CURLE_OK ? std::string(curl_easy_strerror(rc)) : "HTTP " + std::to_string(status);
      }
      observe::log_warn("upstream attempt failed",
                        {{"backend", up->name()}, {"error", last_error}, {"attempt", static_cast<int64_t>(tries)},
                         {"next", pol.verdict == Verdict::NextUpstream ? "next upstream" : "retry"}});
      if (pol.health_failure) up->failure(opts_.cooldown, opts_.failure_threshold);
      if (pol.verdict == Verdict::NextUpstream) break;
      if (!up->healthy()) break;  // circuit open: next upstream
    }
    if (st->cancelled.load()) break;
  }
  {
    std::lock_guard lk(st->mu);
    st->failed = true;
    st->done = true;
    if (tries == 0 && !cannot.empty()) {
      st->error_status = 400;
      st->error = "no upstream can take this request: " + cannot;
    } else if (answered > 0 && answered == not_found && answered == tries) {
      st->error_status = 404;
      st->error = "not found on any upstream (last: " + last_error + ")";
    } else {
      st->error = "every upstream failed (last: " + last_error + ")";
    }
  }
  st->wake();
}

void add_upstream_metrics(observe::Registry& reg, std::shared_ptr<Upstreams> ups) {
  auto& in_flight = reg.gauge("lmhost_upstream_in_flight", "Requests being sent to or relayed from an upstream now.",
                              {"backend"});
  auto& up = reg.gauge("lmhost_upstream_up", "1 when an upstream answered its last health check or request.",
                       {"backend"});
  reg.on_collect([&in_flight, &up, ups] {
    for (const auto& u : ups->all()) {
      in_flight.set({u->name()}, static_cast<double>(u->in_flight()));
      up.set({u->name()}, u->up() ? 1 : 0);
    }
  });
}

}  // namespace lmhost::gateway
