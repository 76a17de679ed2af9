// The simulator's transport-independent request and response values, and the provider interface.
//
// Both listeners (the project's Beast HTTP/1.1 server and the nghttp2 HTTP/2-over-TLS listener in sim_h2.cpp)
// convert what they receive into a SimRequest and hand it to Simulator::dispatch (sim_core.hpp); every provider
// is therefore reachable over either transport, and the provider code never knows which one carried a request.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace tayori::sim {

struct SimRequest {
  std::string method;                                        // "POST", ...
  std::string path;                                          // without the query; not percent-decoded
  std::string query;                                         // after '?', raw
  std::vector<std::pair<std::string, std::string>> headers;  // names lower-cased, in arrival order
  std::string body;                                          // exact bytes received
  std::string http_version;                                  // "1.1" or "2"
  std::string scheme;                                        // "http" or "https"
  std::string authority;                                     // Host header (HTTP/1.1) or :authority (HTTP/2)

  // The first value of a header (lower-case name), or empty.
  std::string_view header(std::string_view lower_name) const;
  // How many times a header occurs (APNs answers DuplicateHeaders when one repeats).
  size_t header_count(std::string_view lower_name) const;
  // The URL this request was sent to, without the query: scheme://authority/path.
  std::string url() const { return scheme + "://" + authority + path; }
};

struct SimResponse {
  int status = 200;
  std::string content_type = "application/json";  // empty: no Content-Type header (APNs 200 has no body)
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
};

// How a listener finishes a request: with a response, or with nullopt meaning "never answer" (the injected
// drop fault: HTTP/1.1 closes the connection, HTTP/2 resets only the stream). Called exactly once, from any thread.
using Completion = std::function<void(std::optional<SimResponse>)>;

class Provider;

// What the core offers a provider while it handles a request.
class ProviderContext {
 public:
  virtual ~ProviderContext() = default;
  // Wall clock, Unix milliseconds.
  virtual int64_t now_ms() const = 0;
  // The provider's answer for a contact (token, user id, phone number) listed in the injected faults
  // ("unregistered" or a provider-specific code), or nullopt when the contact is not listed.
  virtual std::optional<SimResponse> contact_fault(const Provider& provider, std::string_view contact) = 0;
  // The code configured for a contact, without building an answer (Twilio's later failures arrive by status
  // callback, so the send itself succeeds).
  virtual std::optional<std::string> contact_code(const Provider& provider, std::string_view contact) = 0;
  // Runs `task` on a worker thread after `delay_ms` (status callbacks). Never blocks the caller.
  virtual void run_later(int64_t delay_ms, std::function<void()> task) = 0;
};

// One simulated provider. Implementations keep their own state behind their own lock: the core calls them
// from several listener threads at once and holds none of its locks while it does.
class Provider {
 public:
  virtual ~Provider() = default;
  // Stable name used in recordings, fault scopes and /_sim/webhooks/<name>: "fcm", "apns", "line", "twilio"...
  virtual const char* name() const = 0;
  // True when `path` belongs to this provider's API.
  virtual bool owns(std::string_view path) const = 0;
  // APNs exists only over HTTP/2 (RFC 9113); the HTTP/1.1 listener refuses such providers' paths.
  virtual bool http2_only() const { return false; }
  // The real service's answer, once the request got past the injected infrastructure faults.
  virtual SimResponse handle(const SimRequest& request, ProviderContext& ctx) = 0;
  // The provider's own error answer for an injected status (429, 5xx, or any other the control API set).
  virtual SimResponse error_for_status(int status) const = 0;
  // Whether an injected 429/5xx may carry Retry-After: false where the provider documents that it never
  // sends one (LINE), so that no plugin learns to rely on a header the real service does not send.
  virtual bool sends_retry_after() const { return true; }
  // The answer for a contact named in a fault with `code`: "unregistered" (every provider's dead-contact
  // answer) or a provider-specific code. nullopt when the provider does not know the code (the control API
  // then refuses the fault). Providers whose code means "fails later" may answer with a success here.
  virtual std::optional<SimResponse> contact_error(std::string_view code, int64_t now_ms) const = 0;
  // POST /_sim/webhooks/<name>: validates the control request and returns the work that sends the signed
  // webhook (run on a worker thread; its result is the control answer), or an immediate error answer.
  struct WebhookJob {
    std::optional<SimResponse> error;
    std::function<SimResponse()> send;
  };
  virtual std::optional<WebhookJob> webhook(const SimRequest& control_request) { return std::nullopt; }
};

}  // namespace tayori::sim
