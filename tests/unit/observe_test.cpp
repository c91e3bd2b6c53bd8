#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <thread>

#include "observe/log.h"
#include "observe/metrics.h"

using namespace lmhost::observe;

TEST(Metrics, CounterGaugeHistogramExposition) {
  Registry r;
  auto& req = r.counter("lmhost_requests_total", "HTTP requests.", {"route", "status"});
  auto& g = r.gauge("lmhost_queue_depth", "Waiting requests.");
  auto& h = r.histogram("lmhost_request_duration_seconds", "Duration.", {"route"}, {0.1, 1});
  req.inc({"/v1/chat/completions", "200"});
  req.inc({"/v1/chat/completions", "200"}, 2);
  req.inc({"/api/\"x\"\n", "429"});
  g.set({}, 3);
  h.observe({"/a"}, 0.05);
  h.observe({"/a"}, 0.5);
  h.observe({"/a"}, 5);
  const std::string t = r.exposition();
  EXPECT_NE(t.find("# TYPE lmhost_requests_total counter\n"), std::string::npos) << t;
  EXPECT_NE(t.find("lmhost_requests_total{route=\"/v1/chat/completions\",status=\"200\"} 3\n"), std::string::npos) << t;
  EXPECT_NE(t.find("lmhost_requests_total{route=\"/api/\\\"x\\\"\\n\",status=\"429\"} 1\n"), std::string::npos) << t;
  EXPECT_NE(t.find("lmhost_queue_depth 3\n"), std::string::npos) << t;
  EXPECT_NE(t.find("lmhost_request_duration_seconds_bucket{route=\"/a\",le=\"0.1\"} 1\n"), std::string::npos) << t;
  EXPECT_NE(t.find("lmhost_request_duration_seconds_bucket{route=\"/a\",le=\"1\"} 2\n"), std::string::npos) << t;
  EXPECT_NE(t.find("lmhost_request_duration_seconds_bucket{route=\"/a\",le=\"+Inf\"} 3\n"), std::string::npos) << t;
  EXPECT_NE(t.find("lmhost_request_duration_seconds_sum{route=\"/a\"} 5.55\n"), std::string::npos) << t;
  EXPECT_NE(t.find("lmhost_request_duration_seconds_count{route=\"/a\"} 3\n"), std::string::npos) << t;
  EXPECT_EQ(req.value({"/v1/chat/completions", "200"}), 3);
  EXPECT_EQ(h.count({"/a"}), 3u);
}

TEST(Metrics, CollectorsAndTextSourcesRunAtScrape) {
  Registry r;
  auto& g = r.gauge("lmhost_x", "x");
  int calls = 0;
  r.on_collect([&] { g.set({}, ++calls); });
  r.add_text_source([] { return std::string("# TYPE other_total counter\nother_total 1"); });
  EXPECT_NE(r.exposition().find("lmhost_x 1\n"), std::string::npos);
  const std::string t = r.exposition();
  EXPECT_NE(t.find("lmhost_x 2\n"), std::string::npos);
  EXPECT_NE(t.find("other_total 1\n"), std::string::npos);
}

TEST(Metrics, ConcurrentIncrementsAreExact) {
  Registry r;
  auto& c = r.counter("lmhost_c_total", "c", {"k"});
  std::vector<std::thread> ts;
  for (int i = 0; i < 4; ++i)
    ts.emplace_back([&] {
      for (int j = 0; j < 10000; ++j) c.inc({j % 2 ? "a" : "b"});
    });
  for (auto& t : ts) t.join();
  EXPECT_EQ(c.value({"a"}) + c.value({"b"}), 40000);
}

TEST(Metrics, ProcessFacts) {
  EXPECT_GT(resident_memory_bytes(), 1u << 20);
  EXPECT_GT(process_start_time_seconds(), 1.6e9);
  EXPECT_GE(uptime_seconds(), 0);
  EXPECT_EQ(format_number(0.25), "0.25");
  EXPECT_EQ(format_number(3), "3");
  EXPECT_EQ(format_number(1.0 / 0.0), "+Inf");
}

TEST(Log, JsonLineWithLevelsAndFields) {
  std::vector<std::string> lines;
  auto& L = Logger::global();
  L.set_sink([&](const std::string& l) { lines.push_back(l); });
  L.set_level(Level::Info);
  log_debug("hidden");
  log_info("request", {{"status", 200}, {"path", "/v1/x"}, {"ms", 1.25}, {"ok", true}, {"model", nullptr},
                       {"bad", std::string("a\"b\n\xff")}});
  L.set_level(Level::Error);
  log_warn("hidden too");
  log_error("boom");
  L.set_sink(nullptr);
  L.set_level(Level::Info);
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_EQ(lines[0].back(), '\n');
  auto j = nlohmann::json::parse(lines[0]);
  EXPECT_EQ(j["level"], "info");
  EXPECT_EQ(j["msg"], "request");
  EXPECT_EQ(j["status"], 200);
  EXPECT_EQ(j["path"], "/v1/x");
  EXPECT_DOUBLE_EQ(j["ms"].get<double>(), 1.25);
  EXPECT_TRUE(j["ok"].get<bool>());
  EXPECT_TRUE(j["model"].is_null());
  EXPECT_EQ(j["bad"], "a\"b\n\xef\xbf\xbd");
  EXPECT_EQ(j["time"].get<std::string>().size(), 24u);  // 2024-01-02T03:04:05.678Z
  EXPECT_EQ(nlohmann::json::parse(lines[1])["level"], "error");
  Level l;
  EXPECT_TRUE(parse_level("WARNING", l));
  EXPECT_EQ(l, Level::Warn);
  EXPECT_FALSE(parse_level("loud", l));
}
