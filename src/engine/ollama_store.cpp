#include "engine/ollama_store.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "util/error.h"

namespace lmhost {

namespace fs = std::filesystem;

namespace {

bool is_hex64(const std::string& s) {
  return s.size() == 64 && std::all_of(s.begin(), s.end(), [](char c) {
           return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
         });
}

}  // namespace

std::vector<OllamaStoreModel> scan_ollama_store(const std::string& dir) {
  std::error_code ec;
  const fs::path root(dir), manifests = root / "manifests", blobs = root / "blobs";
  if (!fs::is_directory(manifests, ec))
    throw Error("--ollama-models " + dir + ": not an Ollama model store (no manifests/ folder in it)", 400);
  std::vector<OllamaStoreModel> out;
  for (auto it = fs::recursive_directory_iterator(manifests, fs::directory_options::skip_permission_denied, ec);
       !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
    if (!it->is_regular_file()) continue;
    const fs::path rel = fs::relative(it->path(), manifests, ec);
    std::vector<std::string> parts;
    for (const auto& p : rel) parts.push_back(p.string());
    if (parts.size() != 4) continue;  // HOST/NAMESPACE/NAME/TAG
    std::string name = parts[2] + ":" + parts[3];
    if (parts[1] != "library") name = parts[1] + "/" + name;
    if (parts[0] != "registry.ollama.ai") name = parts[0] + "/" + (parts[1] == "library" ? "library/" : "") + name;
    auto skip = [&](const std::string& why) {
      std::fprintf(stderr, "lmhost: Ollama store: skipping %s (%s)\n", it->path().c_str(), why.c_str());
    };
    std::ifstream in(it->path());
    nlohmann::json j = nlohmann::json::parse(in, nullptr, false);
    if (!j.is_object() || !j.contains("layers") || !j["layers"].is_array()) {
      skip("not a manifest: no layers");
      continue;
    }
    std::string digest;
    for (const auto& l : j["layers"])
      if (l.is_object() && l.value("mediaType", "") == "application/vnd.ollama.image.model")
        digest = l.value("digest", "");
    if (digest.empty()) {
      skip("no model layer");
      continue;
    }
    if (digest.rfind("sha256:", 0) != 0 || !is_hex64(digest.substr(7))) {
      skip("model layer digest '" + digest + "' is not sha256:HEX");
      continue;
    }
    const std::string hex = digest.substr(7);
    const fs::path blob = blobs / ("sha256-" + hex);
    if (!fs::is_regular_file(blob, ec)) {
      skip("its blob " + blob.string() + " is missing");
      continue;
    }
    out.push_back({name, blob.string(), hex});
  }
  if (ec) throw Error("cannot read the Ollama store " + dir + ": " + ec.message());
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.name < b.name; });
  return out;
}

std::string default_ollama_store() {
  std::string d;
  if (const char* e = std::getenv("OLLAMA_MODELS"); e && *e) d = e;
  else if (const char* h = std::getenv("HOME"); h && *h) d = std::string(h) + "/.ollama/models";
  std::error_code ec;
  if (d.empty() || !fs::is_directory(fs::path(d) / "manifests", ec)) return "";
  return d;
}

}  // namespace lmhost
