// The HTTP/1.1 server: Boost.Beast on Asio, one io_context run by N threads, a strand per connection,
// explicit timeouts for headers, body and idle keep-alive so a slow client cannot hold a connection.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "api/http.hpp"

namespace tayori::api {

struct ServerLimits {
  int64_t max_body_bytes = 4 * 1024 * 1024;
  int64_t max_header_bytes = 16 * 1024;
  int64_t header_timeout_ms = 10'000;
  int64_t body_timeout_ms = 30'000;
  int64_t idle_timeout_ms = 60'000;
};

class HttpServer {
 public:
  HttpServer(Handler& handler, ServerLimits limits, int threads);
  ~HttpServer();

  // Binds and starts serving; returns the bound port (useful with port 0). Throws on bind failure.
  uint16_t start(const std::string& host, uint16_t port);
  // Stops accepting; lets in-flight responses finish for up to `grace_ms`, then closes everything.
  void stop(int64_t grace_ms = 2000);

  struct Impl;  // public only so the connection sessions in the .cpp can name it

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace tayori::api
