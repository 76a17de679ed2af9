// The host-owned outbound HTTP transport (ARCHITECTURE.md §1, §3): one worker thread drives a libcurl
// multi handle. Connections are pooled and reused per host by libcurl; HTTP/2 requests to one origin
// multiplex on one connection (CURLPIPE_MULTIPLEX + CURLOPT_PIPEWAIT). The transport enforces per-pool
// concurrency limits and optional per-pool token-bucket rate limits by holding requests in a queue
// until they may start. TLS peer and host verification are always on unless explicitly disabled.
//
// Extension point (planned, not implemented): SMTP. An SmtpRequest {url smtp(s)://host:port, mail_from,
// rcpt_to[], RFC 5322 message, credentials} will be submitted through a `submit_smtp(SmtpRequest,
// std::function<void(SmtpResponse)>)` that reuses the same queue, pool limits, rate limits and worker;
// only the easy-handle setup (CURLOPT_MAIL_FROM / CURLOPT_MAIL_RCPT / CURLOPT_READFUNCTION /
// CURLOPT_UPLOAD) and the result mapping differ. See `Transfer` in http_transport.cpp: it is the one
// place that knows a transfer is HTTP.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "transport/rate_limiter.hpp"

namespace tayori::transport {

enum class HttpVersion {
  Default,              // libcurl's default: HTTP/2 over TLS when the server offers it (ALPN), else 1.1
  Http1_1,              // HTTP/1.1 only
  Http2Tls,             // HTTP/2 over TLS via ALPN; cleartext URLs use HTTP/1.1 (CURL_HTTP_VERSION_2TLS)
  Http2PriorKnowledge,  // HTTP/2 required, without upgrade, also over cleartext (h2c; for tests)
};

using HeaderList = std::vector<std::pair<std::string, std::string>>;

struct Request {
  std::string method = "GET";
  std::string url;  // http:// or https:// only
  HeaderList headers;
  std::string body;
  int64_t timeout_ms = 0;  // whole transfer including queueing-free transfer time; 0 = options default
  std::string pool_key;    // empty = "scheme://host:port" of the URL (lower-cased)
  HttpVersion http_version = HttpVersion::Default;
};

struct Response {
  int transport_error = 0;  // 0, or a CURLcode (CURLE_OPERATION_TIMEDOUT, CURLE_COULDNT_CONNECT, ...)
  std::string error_text;   // empty when transport_error == 0
  int status = 0;           // HTTP status; 0 when no response was received
  HeaderList headers;       // names lower-cased, values trimmed, in arrival order (final response only)
  std::string body;
  std::string http_version_used;  // "1.0", "1.1", "2", "3", or "" when no response
  int64_t new_connections = 0;    // connections libcurl opened for this transfer (0 = reused one)

  bool ok() const { return transport_error == 0 && status >= 200 && status < 300; }
  std::string_view header(std::string_view lower_name) const {
    for (const auto& [k, v] : headers)
      if (k == lower_name) return v;
    return {};
  }
};

using Completion = std::function<void(Response)>;

struct TransportOptions {
  int64_t connect_timeout_ms = 10'000;
  int64_t default_timeout_ms = 30'000;  // for requests with timeout_ms == 0
  bool verify_tls = true;               // peer certificate + host name
  std::string ca_file;                  // extra/alternative CA bundle (PEM); empty = system store
  int default_max_concurrent = 32;      // per pool key, unless configure_pool says otherwise
  long max_connections_per_host = 0;    // CURLMOPT_MAX_HOST_CONNECTIONS; 0 = no limit
  int64_t max_response_bytes = 16 * 1024 * 1024;  // larger bodies fail with CURLE_WRITE_ERROR
  std::string user_agent = "tayori";
};

struct PoolOptions {
  int max_concurrent = 0;                     // 0 = TransportOptions::default_max_concurrent
  std::shared_ptr<TokenBucket> rate_limiter;  // null = no rate limit; driven by steady_clock ms
};

class HttpTransport {
 public:
  explicit HttpTransport(TransportOptions options = {});
  // Calls shutdown().
  ~HttpTransport();
  HttpTransport(const HttpTransport&) = delete;
  HttpTransport& operator=(const HttpTransport&) = delete;

  // Sets (or replaces) the limits for one pool key; applies to requests started from now on.
  void configure_pool(const std::string& pool_key, PoolOptions pool);

  // Queues a request. `done` is called exactly once on the transport thread -- with the response, a
  // transport error, or, if the transport shuts down first, CURLE_ABORTED_BY_CALLBACK and
  // "transport shut down". After shutdown() has begun, `done` is called at once on the caller's thread
  // with that same error. `done` must not destroy the transport; exceptions from it are swallowed.
  void submit(Request request, Completion done);

  // Stops the worker: every queued or in-flight request completes with the shutdown error. Idempotent.
  void shutdown();

  // The pool key a request will use (its pool_key, or scheme://host:port of its URL).
  static std::string pool_key_for(const Request& request);

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace tayori::transport
