// A small metrics registry: counters, gauges and histograms with labels,
// written in the Prometheus text exposition format (version 0.0.4). Families
// are created once (at start-up); children per label set are created on
// first use and kept (label values must have bounded cardinality: route
// patterns, model names, key names, status codes). Thread-safe; the hot path
// is one mutex-protected map lookup plus atomic adds.
#pragma once

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace lmhost::observe {

using Labels = std::vector<std::string>;  // values, in the family's label-name order

class AtomicDouble {
 public:
  void add(double v) {
    double cur = v_.load(std::memory_order_relaxed);
    while (!v_.compare_exchange_weak(cur, cur + v, std::memory_order_relaxed)) {}
  }
  void set(double v) { v_.store(v, std::memory_order_relaxed); }
  double get() const { return v_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> v_{0};
};

enum class MetricType { Counter, Gauge, Histogram };

class Family {
 public:
  Family(std::string name, std::string help, MetricType type, std::vector<std::string> label_names,
         std::vector<double> buckets = {});
  const std::string& name() const { return name_; }
  MetricType type() const { return type_; }

  // Counters and gauges.
  void inc(const Labels& l = {}, double v = 1);
  void set(const Labels& l, double v);  // gauges
  double value(const Labels& l = {}) const;  // 0 when never touched
  // Histograms.
  void observe(const Labels& l, double v);
  uint64_t count(const Labels& l = {}) const;  // observations so far
  double sum(const Labels& l = {}) const;

  void write(std::string& out) const;

 private:
  struct Child {
    AtomicDouble value;                              // counter / gauge
    std::vector<std::atomic<uint64_t>> buckets;      // histogram: per bucket (not cumulative)
    std::atomic<uint64_t> count{0};
    AtomicDouble sum;
    explicit Child(size_t nb) : buckets(nb) {}
  };
  Child& child(const Labels& l);
  const Child* find(const Labels& l) const;
  std::string label_text(const Labels& l, const std::string& extra = {}) const;

  std::string name_, help_;
  MetricType type_;
  std::vector<std::string> label_names_;
  std::vector<double> buckets_;  // upper bounds, ascending (+Inf implied)
  mutable std::mutex mu_;
  std::map<Labels, std::unique_ptr<Child>> children_;
};

class Registry {
 public:
  // The same name twice returns the first family (the type must match).
  Family& counter(const std::string& name, const std::string& help, std::vector<std::string> labels = {});
  Family& gauge(const std::string& name, const std::string& help, std::vector<std::string> labels = {});
  Family& histogram(const std::string& name, const std::string& help, std::vector<std::string> labels,
                    std::vector<double> buckets);
  // Called at every scrape, before writing (e.g. to refresh gauges from live state).
  void on_collect(std::function<void()> fn);
  // Called at every scrape, appending already formatted families (other
  // components' own exposition text). Must not repeat names of this registry.
  void add_text_source(std::function<std::string()> fn);

  std::string exposition();  // text format

 private:
  Family& get(const std::string& name, const std::string& help, MetricType t, std::vector<std::string> labels,
              std::vector<double> buckets);
  std::mutex mu_;
  std::vector<std::unique_ptr<Family>> families_;
  std::vector<std::function<void()>> collectors_;
  std::vector<std::function<std::string()>> text_sources_;
};

// Escapes a label value (\\, \", \n).
std::string escape_label(const std::string& v);
// Prometheus number formatting (+Inf, -Inf, NaN, shortest round-trip otherwise).
std::string format_number(double v);

// Buckets in seconds for latencies from 1 ms to 10 min.
std::vector<double> latency_buckets();
// Buckets in seconds for per-token times from 1 ms to 5 s.
std::vector<double> token_time_buckets();

// Process facts for metrics and /health.
uint64_t resident_memory_bytes();  // RSS from /proc/self/statm (0 if unknown)
uint64_t virtual_memory_bytes();
double process_start_time_seconds();  // unix time
double uptime_seconds();              // since this process started using this library

}  // namespace lmhost::observe
