#include "observe/metrics.h"

#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <stdexcept>

namespace lmhost::observe {

namespace {
const auto g_start_steady = std::chrono::steady_clock::now();
const double g_start_unix =
    std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}  // namespace

std::string escape_label(const std::string& v) {
  std::string out;
  out.reserve(v.size());
  for (char c : v) {
    if (c == '\\') out += "\\\\";
    else if (c == '"') out += "\\\"";
    else if (c == '\n') out += "\\n";
    else out.push_back(c);
  }
  return out;
}

std::string format_number(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  if (v == std::floor(v) && std::fabs(v) < 1e15) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.0f", v);
    return buf;
  }
  char buf[40];
  std::snprintf(buf, sizeof buf, "%.17g", v);
  // Shorten when a shorter form round-trips.
  for (int prec = 6; prec < 17; ++prec) {
    char s[40];
    std::snprintf(s, sizeof s, "%.*g", prec, v);
    if (std::strtod(s, nullptr) == v) return s;
  }
  return buf;
}

std::vector<double> latency_buckets() {
  return {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600};
}
std::vector<double> token_time_buckets() {
  return {0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5};
}

Family::Family(std::string name, std::string help, MetricType type, std::vector<std::string> label_names,
               std::vector<double> buckets)
    : name_(std::move(name)),
      help_(std::move(help)),
      type_(type),
      label_names_(std::move(label_names)),
      buckets_(std::move(buckets)) {}

Family::Child& Family::child(const Labels& l) {
  std::lock_guard lk(mu_);
  auto it = children_.find(l);
  if (it != children_.end()) return *it->second;
  if (l.size() != label_names_.size())
    throw std::logic_error("metric " + name_ + ": expected " + std::to_string(label_names_.size()) + " label values");
  auto c = std::make_unique<Child>(type_ == MetricType::Histogram ? buckets_.size() : 0);
  auto& ref = *c;
  children_.emplace(l, std::move(c));
  return ref;
}

const Family::Child* Family::find(const Labels& l) const {
  std::lock_guard lk(mu_);
  auto it = children_.find(l);
  return it == children_.end() ? nullptr : it->second.get();
}

void Family::inc(const Labels& l, double v) { child(l).value.add(v); }
void Family::set(const Labels& l, double v) { child(l).value.set(v); }
double Family::value(const Labels& l) const {
  const Child* c = find(l);
  return c ? c->value.get() : 0;
}

void Family::observe(const Labels& l, double v) {
  Child& c = child(l);
  size_t i = 0;
  while (i < buckets_.size() && v > buckets_[i]) ++i;
  if (i < buckets_.size()) c.buckets[i].fetch_add(1, std::memory_order_relaxed);
  c.sum.add(v);
  c.count.fetch_add(1, std::memory_order_relaxed);
}

uint64_t Family::count(const Labels& l) const {
  const Child* c = find(l);
  return c ? c->count.load() : 0;
}
double Family::sum(const Labels& l) const {
  const Child* c = find(l);
  return c ? c->sum.get() : 0;
}

std::string Family::label_text(const Labels& l, const std::string& extra) const {
  if (l.empty() && extra.empty()) return "";
  std::string s = "{";
  for (size_t i = 0; i < l.size(); ++i) {
    if (i) s += ",";
    s += label_names_[i] + "=\"" + escape_label(l[i]) + "\"";
  }
  if (!extra.empty()) s += (l.empty() ? "" : ",") + extra;
  return s + "}";
}

void Family::write(std::string& out) const {
  std::lock_guard lk(mu_);
  if (children_.empty() && !label_names_.empty()) return;  // nothing to show yet
  std::string help;
  for (char c : help_) {
    if (c == '\\') help += "\\\\";
    else if (c == '\n') help += "\\n";
    else help.push_back(c);
  }
  out += "# HELP " + name_ + " " + help + "\n";
  out += "# TYPE " + name_ + " " +
         (type_ == MetricType::Counter ? "counter" : type_ == MetricType::Gauge ? "gauge" : "histogram") + "\n";
  if (children_.empty()) {  // no labels: show the zero
    if (type_ != MetricType::Histogram) {
      out += name_ + " 0\n";
    } else {
      for (double b : buckets_) out += name_ + "_bucket{le=\"" + format_number(b) + "\"} 0\n";
      out += name_ + "_bucket{le=\"+Inf\"} 0\n" + name_ + "_sum 0\n" + name_ + "_count 0\n";
    }
    return;
  }
  for (const auto& [labels, c] : children_) {
    if (type_ != MetricType::Histogram) {
      out += name_ + label_text(labels) + " " + format_number(c->value.get()) + "\n";
      continue;
    }
    uint64_t cum = 0;
    for (size_t i = 0; i < buckets_.size(); ++i) {
      cum += c->buckets[i].load(std::memory_order_relaxed);
      out += name_ + "_bucket" + label_text(labels, "le=\"" + format_number(buckets_[i]) + "\"") + " " +
             std::to_string(cum) + "\n";
    }
    // count is read after the buckets: keep +Inf >= every bucket.
    const uint64_t n = std::max(cum, c->count.load(std::memory_order_relaxed));
    out += name_ + "_bucket" + label_text(labels, "le=\"+Inf\"") + " " + std::to_string(n) + "\n";
    out += name_ + "_sum" + label_text(labels) + " " + format_number(c->sum.get()) + "\n";
    out += name_ + "_count" + label_text(labels) + " " + std::to_string(n) + "\n";
  }
}

Family& Registry::get(const std::string& name, const std::string& help, MetricType t, std::vector<std::string> labels,
                      std::vector<double> buckets) {
  std::lock_guard lk(mu_);
  for (auto& f : families_)
    if (f->name() == name) {
      if (f->type() != t) throw std::logic_error("metric " + name + " registered twice with different types");
      return *f;
    }
  families_.push_back(std::make_unique<Family>(name, help, t, std::move(labels), std::move(buckets)));
  return *families_.back();
}

Family& Registry::counter(const std::string& name, const std::string& help, std::vector<std::string> labels) {
  return get(name, help, MetricType::Counter, std::move(labels), {});
}
Family& Registry::gauge(const std::string& name, const std::string& help, std::vector<std::string> labels) {
  return get(name, help, MetricType::Gauge, std::move(labels), {});
}
Family& Registry::histogram(const std::string& name, const std::string& help, std::vector<std::string> labels,
                            std::vector<double> buckets) {
  return get(name, help, MetricType::Histogram, std::move(labels), std::move(buckets));
}

void Registry::on_collect(std::function<void()> fn) {
  std::lock_guard lk(mu_);
  collectors_.push_back(std::move(fn));
}
void Registry::add_text_source(std::function<std::string()> fn) {
  std::lock_guard lk(mu_);
  text_sources_.push_back(std::move(fn));
}

std::string Registry::exposition() {
  std::vector<std::function<void()>> collectors;
  std::vector<std::function<std::string()>> sources;
  {
    std::lock_guard lk(mu_);
    collectors = collectors_;
    sources = text_sources_;
  }
  for (auto& c : collectors) c();
  std::string out;
  std::lock_guard lk(mu_);
  for (const auto& f : families_) f->write(out);
  for (auto& s : sources) {
    std::string t = s();
    if (!t.empty() && t.back() != '\n') t.push_back('\n');
    out += t;
  }
  return out;
}

uint64_t resident_memory_bytes() {
  std::ifstream in("/proc/self/statm");
  uint64_t size = 0, rss = 0;
  if (!(in >> size >> rss)) return 0;
  return rss * static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
}

uint64_t virtual_memory_bytes() {
  std::ifstream in("/proc/self/statm");
  uint64_t size = 0;
  if (!(in >> size)) return 0;
  return size * static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
}

double process_start_time_seconds() { return g_start_unix; }
double uptime_seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - g_start_steady).count();
}

}  // namespace lmhost::observe
