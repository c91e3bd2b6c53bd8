// Anonymous memory from the kernel, in transparent huge pages where the
// system allows them (for large, long-lived buffers such as weights repacked
// at load: 2 MiB pages mean 512x fewer page faults to fill them and fewer TLB
// misses to stream them).
#pragma once

#include <sys/mman.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>

#include "util/error.h"

namespace lmhost {

class AnonMemory {
 public:
  AnonMemory() = default;
  explicit AnonMemory(size_t n) : size_((n + kHuge - 1) / kHuge * kHuge) {
    if (n == 0) {
      size_ = 0;
      return;
    }
    // Over-allocate by one huge page to place the buffer on a 2 MiB boundary.
    const size_t map = size_ + kHuge;
    void* p = ::mmap(nullptr, map, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) throw Error("out of memory: cannot map " + std::to_string(n >> 20) + " MiB", 500);
    const uintptr_t b = reinterpret_cast<uintptr_t>(p), a = (b + kHuge - 1) / kHuge * kHuge;
    if (a > b) ::munmap(p, a - b);
    if (const size_t tail = map - (a - b) - size_; tail) ::munmap(reinterpret_cast<void*>(a + size_), tail);
    data_ = reinterpret_cast<uint8_t*>(a);
    ::madvise(data_, size_, MADV_HUGEPAGE);  // advisory: ignored where THP is off
  }
  ~AnonMemory() {
    if (data_) ::munmap(data_, size_);
  }
  AnonMemory(AnonMemory&& o) noexcept : data_(std::exchange(o.data_, nullptr)), size_(std::exchange(o.size_, 0)) {}
  AnonMemory& operator=(AnonMemory&& o) noexcept {
    std::swap(data_, o.data_);
    std::swap(size_, o.size_);
    return *this;
  }
  AnonMemory(const AnonMemory&) = delete;
  AnonMemory& operator=(const AnonMemory&) = delete;

  uint8_t* data() const { return data_; }
  size_t size() const { return size_; }

 private:
  static constexpr size_t kHuge = size_t{2} << 20;
  uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

}  // namespace lmhost
