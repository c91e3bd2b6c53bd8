// API keys. Keys are never stored or compared in plain text: each known key is
// kept as its SHA-256 digest, a presented key is hashed and compared against
// every stored digest in constant time (no early exit, CRYPTO_memcmp).
// Keys come from the configuration (plain or sha256), API_KEYS, and a keys
// file (API_KEYS_FILE) of hashes written by `lmhost keys add NAME`:
//   # name  sha256  [models=a,b] [rpm=N] [burst=N] [tpm=N]
//   alice   9f86d08...  models=qwen2,demo rpm=60
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace lmhost::gateway {

using Digest = std::array<uint8_t, 32>;

Digest sha256(std::string_view data);
std::string to_hex(const Digest& d);
std::optional<Digest> digest_from_hex(std::string_view hex);

// A new random key: "lmh_" + 43 base64url characters (256 bits from the OS RNG).
std::string generate_key();

struct KeyLimits {
  int64_t requests_per_minute = -1;  // -1: the server-wide value
  int64_t burst = -1;
  int64_t tokens_per_minute = -1;
};

struct ApiKey {
  std::string name;
  Digest hash{};
  std::vector<std::string> models;  // empty: every model
  KeyLimits limits;
  bool allows_model(std::string_view model) const;
};

// The key a request presents: "Authorization: Bearer KEY" or "x-api-key: KEY".
// nullopt when neither is there.
std::optional<std::string> presented_key(const std::string* authorization, const std::string* x_api_key);

class KeyStore {
 public:
  // Throws lmhost::Error when the name is already taken.
  void add(ApiKey k);
  void add_plain(const std::string& name, std::string_view key, std::vector<std::string> models = {},
                 KeyLimits limits = {});
  // Reads a keys file; throws lmhost::Error naming the file and line on a bad line.
  void load_file(const std::string& path);
  // The matching key, or nullptr. Time does not depend on which key (if any) matches.
  const ApiKey* find(std::string_view presented) const;
  bool empty() const { return keys_.empty(); }
  size_t size() const { return keys_.size(); }
  const std::vector<ApiKey>& keys() const { return keys_; }

 private:
  std::vector<ApiKey> keys_;
};

// Appends a key's line to a keys file (creating it with mode 0600); throws
// lmhost::Error when the name exists there or the file cannot be written.
void append_key_file(const std::string& path, const std::string& name, const Digest& hash,
                     const std::vector<std::string>& models = {}, KeyLimits limits = {});

}  // namespace lmhost::gateway
