// Private to gateway/transport/: one transfer -- a request, its completion, and the libcurl easy handle
// while it runs -- as the multi loop (outbound_transport.cpp) sees it. Each protocol is a subclass in its
// own file (http_transfer.cpp, smtp_transfer.cpp) with its own checks, easy-handle setup and result
// mapping; the queue, pools, rate limits and worker treat every transfer alike. Keeps libcurl out of
// outbound_transport.hpp.
#pragma once

#include <curl/curl.h>

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "transport/outbound_transport.hpp"

namespace tayori::transport {

struct Transfer {
  Request request;
  Completion done;
  std::string pool;
  Response response;
  CURL* easy = nullptr;
  char errbuf[CURL_ERROR_SIZE] = {0};
  // The list configure() hands libcurl (HTTP: the request headers; SMTP: the envelope recipients). The
  // easy handle points into it, so it is freed after the handle.
  curl_slist* list = nullptr;
  // Carried by the transport's own HTTP/1.1 client rather than libcurl (own_client_target, http1_wire.hpp).
  bool own_client = false;

  virtual ~Transfer();

  // The protocol's checks of the request, for a transfer that another client than libcurl carries
  // (http1_engine.hpp): CURLE_OK, or why it may not start (errbuf says why).
  CURLcode check_request() { return check(); }

  // Sets up `handle` (a fresh or a reset easy handle, which the transfer now owns; null = out of memory).
  // Returns CURLE_OK, or the error that prevents the transfer from starting (errbuf says why).
  CURLcode setup(const TransportOptions& o, CURL* handle);
  // Gives the easy handle back once it has left the multi handle (the loop reuses it), or null.
  CURL* release_easy();
  // Fills `response` from the finished easy handle and libcurl's result.
  virtual void finish(CURLcode code) = 0;
  void fail(int code, std::string text);
  void complete();

 protected:
  // The protocol's checks of the request before anything is set up or sent.
  virtual CURLcode check() = 0;
  // The protocol's easy-handle options, after the ones every transfer shares.
  virtual CURLcode configure(const TransportOptions& o) = 0;

  template <class V>
  void set(CURLoption opt, V value) {
    if (setup_rc == CURLE_OK) setup_rc = curl_easy_setopt(easy, opt, value);
  }
  CURLcode refuse(CURLcode code, const char* why);

  CURLcode setup_rc = CURLE_OK;  // the first curl_easy_setopt failure while setting up
};

// A transfer for each RequestKind (http_transfer.cpp, smtp_transfer.cpp).
std::unique_ptr<Transfer> make_http_transfer();
std::unique_ptr<Transfer> make_smtp_transfer();

// Why a request whose kept connection died before any byte of the answer is not sent again (RFC 9110 §9.2.2;
// http_transfer.cpp on_prereq, http1_engine.cpp).
inline constexpr const char* kNotResentText =
    "connection closed before any response; not re-sent, as the server may have received the request";

// Without leading spaces and tabs, and without trailing spaces, tabs and line ends.
std::string_view trim(std::string_view s);

}  // namespace tayori::transport
