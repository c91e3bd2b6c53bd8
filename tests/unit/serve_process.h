// The real `lmhost serve` as a child process, for tests that exercise the
// binary end to end (models, upstreams, production settings, swaps). One
// helper instead of a copy per test file: start with arguments and extra
// environment (the variables that configure lmhost are cleared first, so the
// developer's shell cannot leak into a test), find the port in the JSON
// "listening" log line, optionally wait for /ready, and kill on destruction.
#pragma once

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "http_test_client.h"

namespace lmhost::testing {

inline std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// A fresh folder under the temp directory, removed with everything in it.
class TempDir {
 public:
  explicit TempDir(const std::string& prefix = "lmhost-test") {
    static int n = 0;
    path_ = std::filesystem::temp_directory_path() /
            (prefix + "-" + std::to_string(::getpid()) + "-" + std::to_string(n++));
    std::filesystem::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  std::string operator/(const std::string& s) const { return (path_ / s).string(); }
  std::string str() const { return path_.string(); }

 private:
  std::filesystem::path path_;
};

// A demo-shape model written by `lmhost synth` to DIR/NAME.gguf (different
// seeds, different files); throws when the command fails.
inline std::string synth_demo(const TempDir& d, const std::string& name, int seed) {
  const std::string out = d / (name + ".gguf");
  const std::string cmd = std::string(LMHOST_BINARY) + " synth --shape demo --type Q8_0 --seed " +
                          std::to_string(seed) + " -o " + out + " >/dev/null 2>&1";
  if (std::system(cmd.c_str()) != 0) throw std::runtime_error("lmhost synth failed");
  return out;
}

// Waits until pred() holds, polling every 100 ms (default: up to 10 s).
template <class F>
bool eventually(F pred, std::chrono::milliseconds limit = std::chrono::seconds(10)) {
  const auto until = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < until) {
    if (pred()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return pred();
}

struct ServeOptions {
  int port = 0;             // 0: any free port (read back from the log)
  bool wait_ready = true;   // wait for GET /ready == 200 (up to 60 s)
  std::vector<std::string> env;  // extra "NAME=value" entries
};

class ServeProcess {
 public:
  // `lmhost serve --port P --parallel 2 -t 1 ARGS...`; stderr (the JSON log) goes to a file.
  explicit ServeProcess(std::vector<std::string> args, ServeOptions opts = {}) : opts_(std::move(opts)) {
    static int n = 0;
    log_ = (std::filesystem::temp_directory_path() /
            ("lmhost-serve-" + std::to_string(::getpid()) + "-" + std::to_string(n++) + ".log"))
               .string();
    std::vector<std::string> all = {LMHOST_BINARY, "serve", "--port", std::to_string(opts_.port), "--parallel", "2",
                                    "-t", "1"};
    all.insert(all.end(), args.begin(), args.end());
    pid_ = ::fork();
    if (pid_ == 0) exec_child(all);
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    while (std::chrono::steady_clock::now() < until && port_ == 0) {
      for (const auto& line : lines())
        if (line.value("msg", "") == "listening") port_ = line.value("port", 0);
      int st;
      if (port_ == 0 && ::waitpid(pid_, &st, WNOHANG) == pid_) {
        pid_ = -1;
        break;
      }
      if (port_ == 0) std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    if (port_ == 0) throw std::runtime_error("lmhost serve did not start: " + slurp(log_));
    if (opts_.wait_ready) {
      for (int i = 0; i < 600; ++i) {
        HttpClient c(port_);
        if (c.request("GET", "/ready").status == 200) break;
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
      }
    }
  }
  ~ServeProcess() {
    kill();
    std::error_code ec;
    std::filesystem::remove(log_, ec);
  }
  ServeProcess(const ServeProcess&) = delete;
  ServeProcess& operator=(const ServeProcess&) = delete;

  int port() const { return port_; }
  pid_t pid() const { return pid_; }
  bool alive() {
    int st;
    return pid_ > 0 && ::waitpid(pid_, &st, WNOHANG) == 0;
  }
  void signal(int sig) {
    if (pid_ > 0) ::kill(pid_, sig);
  }
  void kill() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      int st;
      ::waitpid(pid_, &st, 0);
      pid_ = -1;
    }
  }

  ClientResponse req(const std::string& method, const std::string& path, const nlohmann::json& body = nullptr,
                     const std::map<std::string, std::string>& headers = {}) {
    HttpClient c(port_, 60000);
    return c.request(method, path, body.is_null() ? "" : body.dump(), headers);
  }
  nlohmann::json get(const std::string& path) { return nlohmann::json::parse(req("GET", path).body); }

  std::string log_text() const { return slurp(log_); }
  // The JSON log lines written so far (other lines skipped).
  std::vector<nlohmann::json> lines() const {
    std::vector<nlohmann::json> out;
    std::istringstream in(slurp(log_));
    for (std::string l; std::getline(in, l);) {
      auto j = nlohmann::json::parse(l, nullptr, false);
      if (j.is_object()) out.push_back(std::move(j));
    }
    return out;
  }

 private:
  [[noreturn]] void exec_child(std::vector<std::string>& all) {
    const int fd = ::open(log_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    ::dup2(fd, 2);
    const int nul = ::open("/dev/null", O_WRONLY);
    ::dup2(nul, 1);
    for (const char* v :
         {"HOST", "PORT", "API_KEYS", "API_KEYS_FILE", "ADMIN_KEY", "REDIS_URL", "LMHOST_CONFIG", "MODEL_PATH",
          "DEFAULT_MODEL", "OLLAMA_MODELS", "OLLAMA_URL", "OPENAI_API_KEY", "UPSTREAMS", "KEEP_ALIVE",
          "OLLAMA_KEEP_ALIVE", "MAX_LOADED_MODELS", "OLLAMA_MAX_LOADED_MODELS", "PRELOAD_MODELS",
          "RATE_LIMIT_REQUESTS_PER_MINUTE", "RATE_LIMIT_BURST", "RATE_LIMIT_TOKENS_PER_MINUTE", "LOG_LEVEL",
          "LOG_PROMPTS", "MAX_INPUT_TOKENS", "MAX_TOKENS", "MAX_CONNECTIONS", "CACHE_SIZE", "ADMIN_KEY_SHA256",
          "MODEL_ALIASES", "MAX_MODEL_MEMORY", "MAX_BATCH_TOKENS", "BATCH_WAIT_US", "EMBED_MAX_QUEUE"})
      ::unsetenv(v);
    for (auto& e : opts_.env) ::putenv(const_cast<char*>(e.c_str()));
    std::vector<char*> argv;
    for (auto& a : all) argv.push_back(a.data());
    argv.push_back(nullptr);
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }

  ServeOptions opts_;
  std::string log_;
  pid_t pid_ = -1;
  int port_ = 0;
};

}  // namespace lmhost::testing
