// The HTTP/1.1 server: Boost.Beast on Asio, one io_context run by N threads, a strand per connection,
// explicit timeouts for headers, body and idle keep-alive so a slow client cannot hold a connection, and a
// bound on connections open at once.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "api/http.hpp"

namespace tayori::api {

struct ServerLimits {
  int64_t max_body_bytes = 4 * 1024 * 1024;
  int64_t max_header_bytes = 16 * 1024;
  int64_t header_timeout_ms = 10'000;
  int64_t body_timeout_ms = 30'000;
  int64_t idle_timeout_ms = 60'000;
  // Connections open at once; one more is refused at once (a 503, closed) instead of holding a file
  // descriptor and a session.
  int max_connections = 1024;
};

// One request read from `bytes` as a connection reads it: the same parser, limits and conversion to
// HttpRequest, without a socket (the HTTP head's fuzz target, tests/fuzz). Either the request, or the status
// and detail the server would refuse it with (400, 413, 431); neither when `bytes` ends before the request
// does (a connection would wait for more).
struct ParsedRequest {
  std::optional<HttpRequest> request;
  int status = 0;
  std::string detail;
};
ParsedRequest parse_request(std::string_view bytes, const ServerLimits& limits);

// The head the server sends before `response.body` (RFC 9112 §4 and §6): the status line in the request's
// `version` (10 or 11), Server, Content-Type (when not empty), the handler's headers (a later one of the same
// name replaces an earlier one), Connection where `keep_alive` needs saying for that version, and Content-Length,
// which a status that never has content (1xx, 204, 304: RFC 9110 §6.4.1) does not carry; such a response is
// sent without its body (answers_with_content). CR, LF and NUL in a name or value become spaces (RFC 9110 §5.5).
std::string response_head(const HttpResponse& response, unsigned version, bool keep_alive);
bool answers_with_content(int status);

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
