// Private to gateway/transport/: HTTP/1.1 on the wire for the transport's own client (http1_engine.cpp) -- which
// requests it carries, the bytes of a request, and an incremental reader of the answer. No I/O here: the
// engine feeds the reader whatever a socket gave, so each rule below is tested (and fuzzed) on bytes alone.
//
// RFC 9112 is the reference: §3 request line, §5 fields, §6.3 message body length (with its order of
// precedence: no body for HEAD, 1xx, 204 and 304; then Transfer-Encoding; then Content-Length; else until
// close), §7.1 chunked coding, §9.3 persistence.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <set>
#include <string>
#include <string_view>

#include "transport/outbound_transport.hpp"

namespace tayori::transport {

// Where an http:// or https:// URL points, as the client needs it.
struct Http1Target {
  bool tls = false;
  std::string host;            // as written, without brackets for an IPv6 literal; lower-cased
  uint16_t port = 0;           // the URL's, or 80 / 443
  std::string host_header;     // host[:port] as the Host field carries it (RFC 9110 §7.2), port only when not default
  std::string target;          // origin-form: path and query, "/" when the URL has no path; no fragment
  std::string origin() const;  // scheme://host:port -- connections are kept per origin
};

// The target of `url`, or nothing when this client does not carry it: another scheme, user information in
// the URL (libcurl turns it into Basic authentication), a byte the request line cannot hold (control
// characters, space), a bad port.
std::optional<Http1Target> parse_http1_target(std::string_view url);

// What decides which client carries a request besides the request itself.
struct Http1Routing {
  // A proxy for the scheme is named in the environment (proxy_in_environment): libcurl knows the proxy
  // variables, the own client does not.
  bool proxy_for_http = false;
  bool proxy_for_https = false;
  // https:// origins (Http1Target::origin) that answered libcurl in HTTP/1.1: their server does not offer
  // HTTP/2 by ALPN, so the protocol libcurl would choose there is known.
  std::set<std::string, std::less<>> origins_answering_http1;
};

// Where the transport's own HTTP/1.1 client takes `request`, or nothing when libcurl carries it. The own
// client carries an HTTP request that HTTP/1.1 serves -- an http:// URL (not h2c prior knowledge), or an
// https:// URL that asks for HTTP/1.1 or whose origin is in `routing.origins_answering_http1` -- with no field
// the client would have to reconcile with its own framing (Content-Length, Transfer-Encoding, Connection,
// Upgrade, TE), and no proxy for its scheme.
std::optional<Http1Target> own_client_target(const Request& request, const Http1Routing& routing);

// Whether the environment names a proxy libcurl would use for http:// (http_proxy, all_proxy, ALL_PROXY) or,
// with `tls`, for https:// (https_proxy, HTTPS_PROXY, all_proxy, ALL_PROXY).
bool proxy_in_environment(bool tls);

// The bytes of `request` to `target`: what libcurl 7.88 sends for the same Request (http_transfer.cpp), so
// that the two clients are interchangeable to a provider -- the caller's fields in the caller's order, Host,
// User-Agent and "Accept: */*" unless the caller gave them, Content-Length when a body goes (and for POST, PUT
// and PATCH even when empty), no implicit Content-Type, no Expect.
std::string write_http1_request(const Request& request, const Http1Target& target, std::string_view user_agent);

// Reads one response from the bytes of a connection, as they come.
class Http1ResponseReader {
 public:
  enum class State { Reading, Done, Failed };

  // `head_request`: the request was HEAD, so the answer has no body whatever it says. `max_body` bytes at most.
  Http1ResponseReader(bool head_request, int64_t max_body);

  // Takes the next bytes; returns how many it used (fewer than given only once Done or Failed: the rest belongs
  // to no response this client asked for).
  size_t feed(std::string_view bytes);
  // The peer closed the connection: a body read until close ends here; anything else unfinished fails.
  void end_of_stream();

  State state() const { return state_; }
  bool received_anything() const { return received_ > 0; }
  // Done: whether the connection may carry another request (RFC 9112 §9.3).
  bool keep_alive() const { return keep_alive_; }
  // Failed: a CURLcode (CURLE_WEIRD_SERVER_REPLY, CURLE_PARTIAL_FILE, CURLE_WRITE_ERROR, CURLE_GOT_NOTHING) and
  // why.
  int error() const { return error_; }
  const std::string& error_text() const { return error_text_; }

  // The final response: status, version ("1.1" or "1.0"), fields (names lower-cased, values trimmed, in
  // arrival order) and body. Its pieces are moved out by take_response().
  Response take_response();
  int status() const { return response_.status; }

 private:
  enum class Part { StatusLine, Fields, Body, ChunkSize, ChunkData, ChunkEnd, Trailer };
  bool line(std::string_view bytes, size_t& used, std::string_view& out);
  bool on_status_line(std::string_view s);
  bool on_field_line(std::string_view s);
  bool on_head_end();
  bool on_chunk_size(std::string_view s);
  void done();
  void fail(int code, std::string text);

  bool head_request_;
  int64_t max_body_;
  State state_ = State::Reading;
  Part part_ = Part::StatusLine;
  Response response_;
  std::string pending_;       // a line split across feeds
  size_t head_bytes_ = 0;     // bytes of the current head so far (limit: kMaxHeadBytes)
  int64_t remaining_ = 0;     // of the body (Body with a length) or of the current chunk
  bool until_close_ = false;  // Body: read until the connection closes
  bool chunked_ = false;
  bool has_length_ = false;
  bool close_field_ = false;       // Connection: close
  bool keep_alive_field_ = false;  // Connection: keep-alive (HTTP/1.0)
  bool keep_alive_ = false;
  int64_t received_ = 0;
  int error_ = 0;
  std::string error_text_;
};

}  // namespace tayori::transport
