// An Ollama model store (OLLAMA_MODELS, ~/.ollama/models): manifests under
// manifests/HOST/NAMESPACE/NAME/TAG (JSON with layers), blobs under
// blobs/sha256-HEX. Each manifest's model layer
// (application/vnd.ollama.image.model) is a GGUF file served in place.
#pragma once

#include <string>
#include <vector>

namespace lmhost {

struct OllamaStoreModel {
  std::string name;    // "qwen2.5:0.5b" (library), "ns/name:tag", "host/ns/name:tag"
  std::string path;    // blobs/sha256-HEX
  std::string sha256;  // HEX (the blob's name: its expected digest)
};

// Every manifest with a model layer whose blob exists (problems with single
// manifests are reported on stderr and skipped). Throws Error when dir is
// not a readable folder with a manifests/ subfolder.
std::vector<OllamaStoreModel> scan_ollama_store(const std::string& dir);

// The default store: $OLLAMA_MODELS, else ~/.ollama/models; "" when it does not exist.
std::string default_ollama_store();

}  // namespace lmhost
