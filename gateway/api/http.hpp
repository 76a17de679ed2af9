// Plain HTTP request/response values. The Beast server (http_server.cpp, the only file that includes
// Beast) converts to and from these, so request handling is a plain function of a request.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace tayori::api {

struct HttpRequest {
  std::string method;  // "GET", "POST", ...
  std::string target;  // as received: path + "?" + query
  std::string path;    // percent-decoding is the router's business
  std::string query;
  std::vector<std::pair<std::string, std::string>> headers;  // names lower-cased
  std::string body;
  std::string remote;
  int64_t received_at_ns = 0;  // steady clock, for latency metrics

  std::string_view header(std::string_view lower_name) const {
    for (const auto& [k, v] : headers)
      if (k == lower_name) return v;
    return {};
  }
};

struct HttpResponse {
  int status = 200;
  std::string content_type = "application/json";
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  bool close = false;  // close the connection after this response
};

using Responder = std::function<void(HttpResponse)>;

// Answers a request, now or later (after a group commit): `respond` must be called exactly once,
// from any thread.
class Handler {
 public:
  virtual ~Handler() = default;
  virtual void handle(HttpRequest request, Responder respond) = 0;
  // Looks at a request when its head has arrived, before its body is read (`head.body` is empty): an answer
  // here (a 401 for a missing key) is sent at once, and the body is never read (the connection is closed
  // when one was announced), so a client without a key cannot make the server take in a body first.
  // nullopt: read the body and handle the request.
  virtual std::optional<HttpResponse> screen(const HttpRequest& head) { return std::nullopt; }
  // A response the server makes itself (413, 400 on unparsable HTTP, 503 while stopping): for metrics.
  virtual void observe_rejected(int status) {}
  // A connection refused because server.max_connections were open.
  virtual void observe_connection_refused() {}
};

}  // namespace tayori::api
