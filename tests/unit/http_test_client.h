// A tiny blocking HTTP/1.1 client over POSIX sockets for server tests
// (no Boost in tests: keeps them quick to build). Handles Content-Length and
// chunked bodies; keeps the connection for several requests.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cctype>
#include <chrono>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

namespace lmhost::testing {

struct ClientResponse {
  int status = 0;
  std::map<std::string, std::string> headers;  // lower-case names
  std::string body;                             // de-chunked
  std::vector<std::string> chunks;              // chunk payloads, when chunked
  bool closed = false;                          // server closed the connection after it
  std::string header(const std::string& n) const {
    auto it = headers.find(n);
    return it == headers.end() ? "" : it->second;
  }
};

class HttpClient {
 public:
  explicit HttpClient(int port, int timeout_ms = 30000) : port_(port), timeout_ms_(timeout_ms) { connect(); }
  ~HttpClient() { close(); }
  HttpClient(const HttpClient&) = delete;

  void connect() {
    close();
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<uint16_t>(port_));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) throw std::runtime_error("connect failed");
    int one = 1;
    setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    buf_.clear();
  }
  void close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }
  bool is_open() const { return fd_ >= 0; }

  void send_raw(const std::string& data) {
    size_t off = 0;
    while (off < data.size()) {
      const ssize_t n = ::send(fd_, data.data() + off, data.size() - off, MSG_NOSIGNAL);
      if (n <= 0) throw std::runtime_error("send failed");
      off += static_cast<size_t>(n);
    }
  }

  void send_request(const std::string& method, const std::string& path, const std::string& body = "",
                    const std::map<std::string, std::string>& headers = {}) {
    std::string req = method + " " + path + " HTTP/1.1\r\nHost: localhost\r\n";
    bool has_ct = false;
    for (auto& [k, v] : headers) {
      req += k + ": " + v + "\r\n";
      if (k == "Content-Type") has_ct = true;
    }
    if (!body.empty() || method == "POST") {
      if (!has_ct) req += "Content-Type: application/json\r\n";
      req += "Content-Length: " + std::to_string(body.size()) + "\r\n";
    }
    req += "\r\n";
    req += body;
    send_raw(req);
  }

  ClientResponse request(const std::string& method, const std::string& path, const std::string& body = "",
                         const std::map<std::string, std::string>& headers = {}) {
    send_request(method, path, body, headers);
    return read_response(method == "HEAD");
  }

  // Reads the status line and headers only (for streaming tests).
  ClientResponse read_head() {
    ClientResponse r;
    const std::string status_line = read_line();
    if (status_line.size() < 12) throw std::runtime_error("bad status line: " + status_line);
    r.status = std::stoi(status_line.substr(9, 3));
    for (;;) {
      std::string line = read_line();
      if (line.empty()) break;
      const size_t c = line.find(':');
      if (c == std::string::npos) continue;
      std::string k = line.substr(0, c);
      for (auto& ch : k) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
      size_t v = c + 1;
      while (v < line.size() && line[v] == ' ') ++v;
      r.headers[k] = line.substr(v);
    }
    return r;
  }
  // Next chunk of a chunked body; false at the last chunk.
  bool read_chunk(std::string& out) {
    const std::string size_line = read_line();
    const size_t n = std::stoul(size_line, nullptr, 16);
    if (n == 0) {
      read_line();  // trailer end
      return false;
    }
    out = read_exact(n);
    read_line();
    return true;
  }

  ClientResponse read_response(bool head = false) {
    ClientResponse r = read_head();
    if (head) return r;
    if (r.header("transfer-encoding") == "chunked") {
      std::string c;
      while (read_chunk(c)) {
        r.chunks.push_back(c);
        r.body += c;
      }
    } else if (!r.header("content-length").empty()) {
      r.body = read_exact(std::stoul(r.header("content-length")));
    }
    if (r.header("connection") == "close") {
      r.closed = true;
      close();
    }
    return r;
  }

  // True when the server closed the connection (EOF) within timeout_ms.
  bool wait_closed(int timeout_ms) {
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, timeout_ms) <= 0) return false;
    char c;
    return ::recv(fd_, &c, 1, MSG_PEEK) <= 0;
  }

 private:
  void fill() {
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, timeout_ms_) <= 0) throw std::runtime_error("timed out waiting for the server");
    char tmp[65536];
    const ssize_t n = ::recv(fd_, tmp, sizeof tmp, 0);
    if (n <= 0) throw std::runtime_error("connection closed by the server");
    buf_.append(tmp, static_cast<size_t>(n));
  }
  std::string read_line() {
    for (;;) {
      const size_t p = buf_.find("\r\n");
      if (p != std::string::npos) {
        std::string line = buf_.substr(0, p);
        buf_.erase(0, p + 2);
        return line;
      }
      fill();
    }
  }
  std::string read_exact(size_t n) {
    while (buf_.size() < n) fill();
    std::string out = buf_.substr(0, n);
    buf_.erase(0, n);
    return out;
  }

  int port_;
  int timeout_ms_;
  int fd_ = -1;
  std::string buf_;
};

}  // namespace lmhost::testing
