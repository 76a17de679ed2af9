// The host-owned outbound transport (docs/architecture.md §1, §3) for HTTP and SMTP submission: one worker
// thread drives a libcurl multi handle, and beside it on the same epoll set the transport's own HTTP/1.1 client
// for plain http:// requests (http1_engine.hpp; the same Response, errors and limits). Connections are pooled and
// reused per host by libcurl; HTTP/2 requests to one origin multiplex on one connection (CURLPIPE_MULTIPLEX +
// CURLOPT_PIPEWAIT). The transport enforces per-pool concurrency limits and optional per-pool token-bucket rate limits
// by holding requests in a queue until they may start. TLS peer and host verification are always on unless explicitly
// disabled.
//
// SMTP (docs/providers.md "Email") is a kind of Request, not a parallel API, so mail has the same pool
// limits, rate limits, timeouts and TLS options as HTTP. Only the transfers know which protocol they speak
// (http_transfer.cpp, smtp_transfer.cpp); the multi loop (outbound_transport.cpp) treats them alike. By
// default SMTP runs on a second worker of its own (TransportOptions::smtp_on_own_worker), for the reason
// below.
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

enum class RequestKind {
  Http,  // method, url, headers, body
  Smtp,  // url, envelope (mail_from, mail_rcpt), body = the message, optional AUTH
};

// One outbound request. The first seven fields are the original HTTP request (kept in order: callers
// brace-initialise them); the SMTP fields follow.
//
// SMTP submission (kind == Smtp), RFC 5321:
//  - url: `smtp://host:587` sends STARTTLS and refuses to continue without it (RFC 3207, §6 on stripped
//    STARTTLS; libcurl CURLUSESSL_ALL -- never CURLUSESSL_TRY, which silently falls back to plaintext), unless
//    allow_plaintext. `smtps://host:465` is implicit TLS (RFC 8314 §3.3). Any other scheme completes
//    with CURLE_UNSUPPORTED_PROTOCOL and sends nothing. The URL path, if any, is the EHLO domain
//    (`smtp://relay:587/mta.example.jp`); without one libcurl sends this machine's host name.
//    TLS verification and TransportOptions::ca_file apply exactly as for https://.
//  - body: the complete RFC 5322 message, every line ending in CRLF (RFC 5321 §2.3.8). libcurl adds the
//    dot-stuffing (§4.5.2) and the final "<CRLF>.<CRLF>". A bare CR or LF is refused: a lenient receiver
//    may take "<LF>.<CR><LF>" as the end of data, which would let message content smuggle a second
//    message.
//  - mail_from / mail_rcpt: the envelope (MAIL FROM / RCPT TO), with or without <>; "" for mail_from is
//    the null reverse-path of a bounce (§4.5.5). At least one recipient. CR, LF or NUL in any address is
//    refused before anything is sent (command injection). Recipients are all-or-nothing: the first RCPT
//    the server refuses ends the transaction, so send one recipient per request when each needs its own
//    verdict.
//  - username / password: SMTP AUTH (RFC 4954) with a SASL mechanism the server offers; empty username
//    means no AUTH.
//  - allow_plaintext: lets smtp:// go without TLS (CURLUSESSL_NONE), credentials included -- for a relay
//    on loopback or in tests only. Such a connection is never kept for reuse, so a later request that
//    requires TLS cannot be handed a plaintext one. No effect on smtps://.
//  - headers must be empty (headers belong in the message); method and http_version are ignored.
//  Known limitation (libcurl 7.88, lib/smtp.c smtp_done): after the message, libcurl waits for the reply to
//  the end of data in a blocking loop inside the worker, so every other transfer on this transport, HTTP
//  included, stalls until that reply comes or the request's timeout passes (measured: an MTA that takes
//  2 s to answer delays a concurrent HTTP request by ~1.7 s). Hence smtp_on_own_worker: only mail waits
//  for mail.
struct Request {
  std::string method = "GET";
  std::string url;  // Http: http:// or https:// only; Smtp: smtp:// or smtps:// only
  HeaderList headers;
  std::string body;        // HTTP body, or the full RFC 5322 message for SMTP
  int64_t timeout_ms = 0;  // whole transfer including queueing-free transfer time; 0 = options default
  std::string pool_key;    // empty = "scheme://host:port" of the URL (lower-cased)
  HttpVersion http_version = HttpVersion::Default;

  RequestKind kind = RequestKind::Http;
  std::string mail_from;               // SMTP envelope sender; "" = "<>"
  std::vector<std::string> mail_rcpt;  // SMTP envelope recipients (at least one)
  std::string username;                // SMTP AUTH user; empty = no AUTH
  std::string password;                // SMTP AUTH password
  bool allow_plaintext = false;        // SMTP: smtp:// without STARTTLS (loopback relays, tests)
  // Asked on the transport's thread just before the transfer starts, after any wait in its pool's queue:
  // false and it never starts (Response::not_started). A caller whose reason to send may have gone while
  // the request queued (its provider's circuit opened) says so here. Empty: always start.
  std::function<bool()> admit;
};

// What came back. For SMTP, `transport_error` and `status` say who ended the transaction:
//  - delivered: transport_error 0, status 250 (the reply to the end of data), body that reply
//    ("250 2.0.0 Ok: queued as 4F2A..."; the queue id helps match a later bounce).
//  - the server refused (any reply >= 400 that ended it -- to MAIL, RCPT, DATA, the end of data, AUTH or
//    STARTTLS): transport_error 0 -- a response arrived, as for an HTTP 4xx/5xx -- and status is that
//    reply code, so a caller can classify by RFC 5321 §4.2.1: 5xx permanent (550 user unknown, 535 bad
//    credentials), 4xx transient (451, 421, 454 TLS not available now). body is the server's reply text
//    ("550 5.1.1 <x@example.jp>: user unknown") and error_text says which step failed, from libcurl
//    ("RCPT failed: 550 (server: 550 5.1.1 ...)"). libcurl itself reports these as CURLE_SEND_ERROR,
//    CURLE_LOGIN_DENIED, ...; that code is deliberately not kept, so "the server said no" never reads
//    as "the connection failed".
//  - no verdict from the server (refused or dropped connection, timeout, TLS handshake or certificate
//    failure, STARTTLS not offered): transport_error is the CURLcode (CURLE_COULDNT_CONNECT,
//    CURLE_PEER_FAILED_VERIFICATION, CURLE_USE_SSL_FAILED, ...) and status 0, even if earlier commands
//    had been answered 2xx.
// headers and http_version_used stay empty for SMTP.
struct Response {
  int transport_error = 0;  // 0, or a CURLcode (CURLE_OPERATION_TIMEDOUT, CURLE_COULDNT_CONNECT, ...)
  std::string error_text;   // empty when transport_error == 0, except for an SMTP refusal (see above)
  int status = 0;           // HTTP status, or the SMTP reply code (see above); 0 when no response
  HeaderList headers;       // names lower-cased, values trimmed, in arrival order (final response only)
  std::string body;  // HTTP body; SMTP: the server's final reply
  std::string http_version_used;  // "1.0", "1.1", "2", "3", or "" when no response
  int64_t new_connections = 0;    // connections libcurl opened for this transfer (0 = reused one)
  // Request::admit said no: nothing was sent (transport_error CURLE_ABORTED_BY_CALLBACK, error_text says so).
  bool not_started = false;

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
  long max_connections_per_host = 0;    // CURLMOPT_MAX_HOST_CONNECTIONS; 0 = no limit. Set, libcurl carries every
                                        // request (the own HTTP/1.1 client does not share its count)
  int64_t max_response_bytes = 16 * 1024 * 1024;  // larger bodies fail with CURLE_WRITE_ERROR
  std::string user_agent = "tayori";
  // SMTP transfers run on a worker of their own: libcurl (7.88) waits for the reply to the end of DATA
  // inside the transfer (smtp_done), blocking its multi handle, so a slow mail server would otherwise hold
  // up every HTTP request (measured: a 2 s server delayed a concurrent HTTP request by ~1.7 s).
  bool smtp_on_own_worker = true;
};

struct PoolOptions {
  int max_concurrent = 0;                     // 0 = TransportOptions::default_max_concurrent
  std::shared_ptr<TokenBucket> rate_limiter;  // null = no rate limit; driven by steady_clock ms
};

// Sends HTTP and SMTP requests (see RequestKind) for the host: channel plugins' requests and webhooks.
class OutboundTransport {
 public:
  explicit OutboundTransport(TransportOptions options = {});
  // Calls shutdown().
  ~OutboundTransport();
  OutboundTransport(const OutboundTransport&) = delete;
  OutboundTransport& operator=(const OutboundTransport&) = delete;

  // Sets (or replaces) the limits for one pool key; applies to requests started from now on.
  void configure_pool(const std::string& pool_key, PoolOptions pool);

  // Queues a request. `done` is called exactly once on the transport thread -- with the response, a
  // transport error, or, if the transport shuts down first, CURLE_ABORTED_BY_CALLBACK and
  // "transport shut down". After shutdown() has begun, `done` is called at once on the caller's thread
  // with that same error. `done` must not destroy the transport; exceptions from it are swallowed.
  void submit(Request request, Completion done);

  // Stops the worker: every queued or in-flight request completes with the shutdown error. Idempotent.
  void shutdown();

  // Whether the calling thread is one of this transport's own, where completions run: whoever waits there for
  // a request of its own waits forever (plugin/delivery.cpp exchange() answers it an error instead).
  bool on_transport_thread() const;

  // New connections opened so far (libcurl's CURLINFO_NUM_CONNECTS summed over finished transfers, the
  // SMTP lane's included), in total or for one pool key (pool_key_for). Any thread. A number that keeps
  // rising under steady load means kept connections are being closed instead of reused.
  uint64_t connections_opened() const;
  uint64_t connections_opened(const std::string& pool_key) const;

  // The pool key a request will use (its pool_key, or scheme://host:port of its URL; the default ports
  // are 80, 443, 25 and 465 as libcurl uses them).
  static std::string pool_key_for(const Request& request);

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
  std::unique_ptr<OutboundTransport> smtp_lane_;  // see TransportOptions::smtp_on_own_worker
};

}  // namespace tayori::transport
