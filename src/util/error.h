// Errors are values a user can act on: a message and the HTTP status it maps
// to. Lower layers throw lmhost::Error; the server turns it into each API's
// error JSON, the CLI prints the message and exits non-zero.
#pragma once

#include <stdexcept>
#include <string>

namespace lmhost {

class Error : public std::runtime_error {
 public:
  explicit Error(std::string message, int http_status = 400)
      : std::runtime_error(std::move(message)), status_(http_status) {}
  int status() const { return status_; }

 private:
  int status_;
};

}  // namespace lmhost
