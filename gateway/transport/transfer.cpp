// What every outbound transfer does whatever its protocol: the easy-handle options they share (timeouts,
// TLS verification for https://, smtps:// and STARTTLS alike), refusing a request before it starts, and
// handing the response to its completion exactly once. The multi loop (outbound_transport.cpp) calls
// these between a channel plugin's request and the provider's answer; the protocol subclasses
// (http_transfer.cpp, smtp_transfer.cpp) add what differs.
#include "transport/transfer.hpp"

#include <cctype>
#include <cstdio>

#include "common/thread_guard.hpp"

namespace tayori::transport {

Transfer::~Transfer() {
  if (easy) curl_easy_cleanup(easy);
  if (list) curl_slist_free_all(list);
}

CURLcode Transfer::setup(const TransportOptions& o, CURL* handle) {
  easy = handle;
  if (CURLcode rc = check(); rc != CURLE_OK) return rc;
  if (!easy) return CURLE_OUT_OF_MEMORY;

  set(CURLOPT_PRIVATE, static_cast<void*>(this));
  set(CURLOPT_ERRORBUFFER, errbuf);
  set(CURLOPT_NOSIGNAL, 1L);
  set(CURLOPT_URL, request.url.c_str());
  set(CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(o.connect_timeout_ms));
  set(CURLOPT_TIMEOUT_MS, static_cast<long>(request.timeout_ms > 0 ? request.timeout_ms : o.default_timeout_ms));
  // Applies to https://, smtps:// and the STARTTLS upgrade of smtp:// alike.
  set(CURLOPT_SSL_VERIFYPEER, o.verify_tls ? 1L : 0L);
  set(CURLOPT_SSL_VERIFYHOST, o.verify_tls ? 2L : 0L);
  if (!o.ca_file.empty()) set(CURLOPT_CAINFO, o.ca_file.c_str());
  if (setup_rc == CURLE_OK) setup_rc = configure(o);
  return setup_rc;
}

CURL* Transfer::release_easy() {
  // The handle points into `list` (the request headers): it is reset before the list goes.
  CURL* e = easy;
  easy = nullptr;
  return e;
}

CURLcode Transfer::refuse(CURLcode code, const char* why) {
  std::snprintf(errbuf, sizeof errbuf, "%s", why);
  return code;
}

void Transfer::fail(int code, std::string text) {
  response = Response{};
  response.transport_error = code;
  response.error_text = std::move(text);
}

void Transfer::complete() {
  Completion cb = std::move(done);
  done = nullptr;
  if (!cb) return;
  // A completion must not take the transport thread, and every request in flight on it, down; what it
  // threw is logged and counted like any guarded round (tayori_thread_errors_total{thread="transport"}).
  run_guarded("transport", "completing a request", [&] { cb(std::move(response)); });
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r' || s.back() == '\n'))
    s.remove_suffix(1);
  return s;
}

}  // namespace tayori::transport
