// The HTTP/2-over-TLS listener (RFC 9113 over TLS with ALPN "h2", RFC 7301), built on libnghttp2 and OpenSSL.
// One blocking accept thread and one thread per connection; each connection multiplexes its streams and
// answers them in completion order, so a delayed answer on one stream does not hold the others.
// Neither nghttp2 nor OpenSSL appears in this header.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "sim_types.hpp"

namespace tayori::sim {

class H2Listener {
 public:
  // Receives each complete request; `done` may be called later and from any thread.
  using Handler = std::function<void(SimRequest request, Completion done)>;

  // Loads the certificate chain and key (PEM). Throws std::runtime_error with OpenSSL's reason on failure.
  H2Listener(Handler handler, const std::string& cert_file, const std::string& key_file);
  ~H2Listener();
  H2Listener(const H2Listener&) = delete;
  H2Listener& operator=(const H2Listener&) = delete;

  // Binds (port 0: any free port) and starts accepting; returns the bound port. Throws on failure.
  uint16_t start(const std::string& host, uint16_t port);
  // Stops accepting, closes every connection and joins the threads.
  void stop();

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace tayori::sim
