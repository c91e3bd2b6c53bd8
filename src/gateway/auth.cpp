#include "gateway/auth.h"

#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <fstream>
#include <sstream>

#include "util/error.h"

namespace lmhost::gateway {

Digest sha256(std::string_view data) {
  Digest d{};
  unsigned int len = 0;
  if (EVP_Digest(data.data(), data.size(), d.data(), &len, EVP_sha256(), nullptr) != 1 || len != d.size())
    throw Error("SHA-256 failed (OpenSSL)", 500);
  return d;
}

std::string to_hex(const Digest& d) {
  static const char* hex = "0123456789abcdef";
  std::string s;
  s.reserve(64);
  for (uint8_t b : d) {
    s.push_back(hex[b >> 4]);
    s.push_back(hex[b & 15]);
  }
  return s;
}

std::optional<Digest> digest_from_hex(std::string_view hex) {
  if (hex.size() != 64) return std::nullopt;
  Digest d{};
  auto val = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  for (size_t i = 0; i < 32; ++i) {
    const int hi = val(hex[2 * i]), lo = val(hex[2 * i + 1]);
    if (hi < 0 || lo < 0) return std::nullopt;
    d[i] = static_cast<uint8_t>(hi * 16 + lo);
  }
  return d;
}

std::string generate_key() {
  unsigned char raw[32];
  if (RAND_bytes(raw, sizeof raw) != 1) throw Error("cannot get random bytes for a key (OpenSSL RAND_bytes)", 500);
  static const char* b64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  std::string s = "lmh_";
  uint32_t acc = 0;
  int bits = 0;
  for (unsigned char c : raw) {
    acc = (acc << 8) | c;
    bits += 8;
    while (bits >= 6) {
      bits -= 6;
      s.push_back(b64[(acc >> bits) & 63]);
    }
  }
  if (bits > 0) s.push_back(b64[(acc << (6 - bits)) & 63]);
  OPENSSL_cleanse(raw, sizeof raw);
  return s;
}

bool ApiKey::allows_model(std::string_view model) const {
  if (models.empty()) return true;
  for (const auto& m : models) {
    if (m == "*" || m == model) return true;
    // "name" allows "name:latest" and the other way round (Ollama tags).
    auto strip = [](std::string_view s) {
      const size_t c = s.rfind(":latest");
      return c != std::string_view::npos && c + 7 == s.size() ? s.substr(0, c) : s;
    };
    if (strip(m) == strip(model)) return true;
  }
  return false;
}

std::optional<std::string> presented_key(const std::string* authorization, const std::string* x_api_key) {
  auto trim = [](std::string_view s) {
    while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
    while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
    return s;
  };
  if (authorization) {
    std::string_view a = trim(*authorization);
    if (a.size() > 7) {
      std::string scheme(a.substr(0, 7));
      for (auto& c : scheme) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      if (scheme == "bearer ") return std::string(trim(a.substr(7)));
    }
  }
  if (x_api_key) {
    std::string_view k = trim(*x_api_key);
    if (!k.empty()) return std::string(k);
  }
  return std::nullopt;
}

void KeyStore::add(ApiKey k) {
  for (const auto& e : keys_)
    if (e.name == k.name) throw Error("API key name '" + k.name + "' is used twice");
  keys_.push_back(std::move(k));
}

void KeyStore::add_plain(const std::string& name, std::string_view key, std::vector<std::string> models,
                         KeyLimits limits) {
  if (key.empty()) throw Error("API key '" + name + "' is empty");
  ApiKey k;
  k.name = name;
  k.hash = sha256(key);
  k.models = std::move(models);
  k.limits = limits;
  add(std::move(k));
}

namespace {

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::string cur;
  std::istringstream in(s);
  while (std::getline(in, cur, sep))
    if (!cur.empty()) out.push_back(cur);
  return out;
}

// Parses one non-comment line of a keys file.
ApiKey parse_key_line(const std::string& line, const std::string& where) {
  std::istringstream in(line);
  std::string name, hex, opt;
  in >> name >> hex;
  ApiKey k;
  k.name = name;
  auto d = digest_from_hex(hex);
  if (!d) throw Error(where + ": expected 'NAME SHA256HEX [models=a,b] [rpm=N] [burst=N] [tpm=N]'");
  k.hash = *d;
  while (in >> opt) {
    const size_t eq = opt.find('=');
    const std::string key = opt.substr(0, eq), val = eq == std::string::npos ? "" : opt.substr(eq + 1);
    if (key == "models") {
      k.models = split(val, ',');
      continue;
    }
    int64_t n = -1;
    try {
      size_t used = 0;
      n = std::stoll(val, &used);
      if (used != val.size() || n < 0) n = -1;
    } catch (...) {
    }
    if (n < 0 || (key != "rpm" && key != "burst" && key != "tpm"))
      throw Error(where + ": unknown or bad option '" + opt + "' (expected models=a,b rpm=N burst=N tpm=N)");
    (key == "rpm" ? k.limits.requests_per_minute : key == "burst" ? k.limits.burst : k.limits.tokens_per_minute) = n;
  }
  return k;
}

}  // namespace

void KeyStore::load_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw Error("cannot read the API keys file " + path);
  std::string line;
  int no = 0;
  while (std::getline(in, line)) {
    ++no;
    const size_t h = line.find('#');
    if (h != std::string::npos) line.resize(h);
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    ApiKey k = parse_key_line(line, path + ":" + std::to_string(no));
    add(std::move(k));
  }
}

const ApiKey* KeyStore::find(std::string_view presented) const {
  const Digest d = sha256(presented);
  const ApiKey* found = nullptr;
  for (const auto& k : keys_) {
    const bool eq = CRYPTO_memcmp(k.hash.data(), d.data(), d.size()) == 0;
    // No branch on secret data that exits early: every key is compared.
    found = eq ? &k : found;
  }
  return found;
}

void append_key_file(const std::string& path, const std::string& name, const Digest& hash,
                     const std::vector<std::string>& models, KeyLimits limits) {
  if (name.empty() || name.find_first_of(" \t\r\n#") != std::string::npos)
    throw Error("a key name must be non-empty, without spaces or '#': '" + name + "'");
  {
    std::ifstream in(path);
    if (in) {
      KeyStore existing;
      existing.load_file(path);
      for (const auto& k : existing.keys())
        if (k.name == name) throw Error("a key named '" + name + "' is already in " + path);
    }
  }
  std::string line = name + " " + to_hex(hash);
  if (!models.empty()) {
    line += " models=";
    for (size_t i = 0; i < models.size(); ++i) line += (i ? "," : "") + models[i];
  }
  if (limits.requests_per_minute >= 0) line += " rpm=" + std::to_string(limits.requests_per_minute);
  if (limits.burst >= 0) line += " burst=" + std::to_string(limits.burst);
  if (limits.tokens_per_minute >= 0) line += " tpm=" + std::to_string(limits.tokens_per_minute);
  line += "\n";
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  if (fd < 0) throw Error("cannot write the API keys file " + path);
  struct stat st{};
  std::string all;
  if (::fstat(fd, &st) == 0 && st.st_size == 0)
    all = "# lmhost API keys: NAME SHA256 [models=a,b] [rpm=N] [burst=N] [tpm=N] (only hashes are stored)\n";
  all += line;
  const bool ok = ::write(fd, all.data(), all.size()) == static_cast<ssize_t>(all.size());
  ::close(fd);
  if (!ok) throw Error("cannot write the API keys file " + path);
}

}  // namespace lmhost::gateway
