// Private to gateway/transport/: the transport's own HTTP/1.1 client, for the requests own_client_target()
// gives it (http1_wire.hpp). It runs inside the transport's loop (outbound_transport.cpp), on the same epoll set
// and thread as libcurl, and takes over only what libcurl spent most of that thread on: per request, libcurl
// 7.88 made four system calls (two poll() of its own besides the send and the receive), set up and reset an
// easy handle of some kilobytes, and parsed every field with sscanf (perf on the e2e bench: libcurl and what
// it called were three quarters of the transport thread). Here a request on a kept connection is one send()
// and one recv(); a kept connection stays in the epoll set for reading all its life, so its close is seen
// while it idles and no epoll_ctl is made per request.
//
// What it keeps of libcurl's behaviour, so that the loop and the callers cannot tell the two apart:
//  - Response and its CURLcode errors (CURLE_COULDNT_RESOLVE_HOST, CURLE_COULDNT_CONNECT, CURLE_OPERATION_TIMEDOUT,
//    CURLE_GOT_NOTHING, CURLE_SEND_ERROR, CURLE_RECV_ERROR, CURLE_PARTIAL_FILE, CURLE_WEIRD_SERVER_REPLY,
//    CURLE_WRITE_ERROR for max_response_bytes), new_connections, http_version_used;
//  - connect_timeout_ms and the request's whole-transfer timeout; connections kept per origin, closed after
//    118 s idle (libcurl's CURLOPT_MAXAGE_CONN default); names resolved off the loop's thread and kept 60 s
//    (libcurl's DNS cache default), each address tried in turn;
//  - never sending a request again on its own, except a GET or HEAD whose kept connection turned out dead
//    before any byte of the answer (RFC 9110 §9.2.2); anything else fails with CURLE_GOT_NOTHING.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "transport/http1_wire.hpp"
#include "transport/outbound_transport.hpp"

namespace tayori::transport {

struct Transfer;

class Http1Engine {
 public:
  // `epoll_fd`: the loop's epoll set, where the engine's sockets go (their events come back through
  // on_event). `wake`: makes the loop's epoll_wait return; the resolver calls it from its own thread.
  Http1Engine(const TransportOptions& options, int epoll_fd, std::function<void()> wake);
  ~Http1Engine();
  Http1Engine(const Http1Engine&) = delete;
  Http1Engine& operator=(const Http1Engine&) = delete;

  // Starts `transfer` (its request already checked) to `target` (own_client_target) on a kept connection to its
  // origin, or a new one. `max_idle`: how many idle connections to keep for that origin.
  void start(std::unique_ptr<Transfer> transfer, Http1Target target, int max_idle, int64_t now_ms);
  bool owns(int fd) const;
  void on_event(int fd, uint32_t events, int64_t now_ms);
  // Resolver answers, timeouts and idle connections' age; call at every turn of the loop.
  void on_tick(int64_t now_ms);
  // How long the loop may sleep before on_tick has something to do (-1: nothing planned).
  int64_t next_timeout_ms(int64_t now_ms) const;
  // Transfers that ended since the last call (the loop completes them and frees their pool slots).
  std::vector<std::unique_ptr<Transfer>> take_finished();
  // Ends every transfer with `code` and `text` (into take_finished) and closes every connection.
  void abort_all(int code, const std::string& text);

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace tayori::transport
