// The transport's own HTTP/1.1 client (see http1_engine.hpp): connections, their sockets in the loop's epoll
// set, name resolution on a thread of its own, timeouts. The bytes are http1_wire.cpp's.
#include "transport/http1_engine.hpp"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <thread>
#include <unordered_map>

#include "common/thread_name.hpp"
#include "transport/http1_wire.hpp"
#include "transport/transfer.hpp"

namespace tayori::transport {

namespace {

// libcurl's defaults (7.88): CURLOPT_MAXAGE_CONN 118 s, CURLOPT_DNS_CACHE_TIMEOUT 60 s.
constexpr int64_t kMaxIdleAgeMs = 118'000;
constexpr int64_t kDnsCacheMs = 60'000;
constexpr size_t kReadChunk = 16 * 1024;

struct Address {
  sockaddr_storage addr{};
  socklen_t len = 0;
};

// Numeric hosts need no resolver.
std::optional<Address> numeric_address(const std::string& host, uint16_t port) {
  Address a;
  auto* v4 = reinterpret_cast<sockaddr_in*>(&a.addr);
  auto* v6 = reinterpret_cast<sockaddr_in6*>(&a.addr);
  if (::inet_pton(AF_INET, host.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(port);
    a.len = sizeof(sockaddr_in);
    return a;
  }
  if (::inet_pton(AF_INET6, host.c_str(), &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(port);
    a.len = sizeof(sockaddr_in6);
    return a;
  }
  return std::nullopt;
}

void set_port(Address& a, uint16_t port) {
  if (a.addr.ss_family == AF_INET)
    reinterpret_cast<sockaddr_in*>(&a.addr)->sin_port = htons(port);
  else
    reinterpret_cast<sockaddr_in6*>(&a.addr)->sin6_port = htons(port);
}

std::string errno_text(int e) { return std::strerror(e); }

// Resolves names with getaddrinfo on a thread of its own, so a slow DNS server never holds up the loop. The
// state is shared with the thread, which may outlive the engine while a lookup hangs (getaddrinfo cannot be
// cancelled): it is detached then, and finds `stopping` when the lookup returns.
struct Resolver {
  struct Answer {
    std::string host;
    std::vector<Address> addresses;  // empty: failed
    std::string error;
  };
  std::mutex mu;
  std::condition_variable cv;
  std::deque<std::string> asked;
  std::vector<Answer> answers;
  bool stopping = false;
  std::function<void()> wake;

  void run() {
    std::unique_lock lock(mu);
    for (;;) {
      cv.wait(lock, [&] { return stopping || !asked.empty(); });
      if (stopping) return;
      std::string host = std::move(asked.front());
      asked.pop_front();
      lock.unlock();
      Answer answer = lookup(host);
      lock.lock();
      if (stopping) return;
      answers.push_back(std::move(answer));
      wake();
    }
  }

  static Answer lookup(const std::string& host) {
    Answer a{host, {}, {}};
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* found = nullptr;
    if (int rc = ::getaddrinfo(host.c_str(), nullptr, &hints, &found); rc != 0) {
      a.error = ::gai_strerror(rc);
      return a;
    }
    for (addrinfo* i = found; i; i = i->ai_next) {
      if (i->ai_family != AF_INET && i->ai_family != AF_INET6) continue;
      Address addr;
      std::memcpy(&addr.addr, i->ai_addr, i->ai_addrlen);
      addr.len = static_cast<socklen_t>(i->ai_addrlen);
      a.addresses.push_back(addr);
    }
    ::freeaddrinfo(found);
    if (a.addresses.empty()) a.error = "no IPv4 or IPv6 address";
    return a;
  }
};

}  // namespace

struct Http1Engine::Impl {
  enum class Phase { Resolving, Connecting, Handshaking, Sending, Receiving, Idle };

  struct Connection {
    int fd = -1;
    SSL* tls = nullptr;  // https://: the TLS session over fd
    Http1Target target;
    std::string origin;
    Phase phase = Phase::Resolving;
    uint32_t interest = 0;  // the events the epoll set holds for fd
    std::vector<Address> addresses;
    size_t next_address = 0;
    std::string connect_error;  // the last address's failure
    int64_t connect_deadline_ms = 0;
    // The transfer it carries, and its state.
    std::unique_ptr<Transfer> transfer;
    int64_t started_ms = 0;
    int64_t deadline_ms = 0;
    bool reused = false;   // the transfer went out on a connection kept from an earlier one
    bool retried = false;  // a GET or HEAD sent again after its kept connection died (see stale())
    int opened = 0;        // connections opened for the transfer (Response::new_connections)
    std::string out;
    size_t sent = 0;
    std::optional<Http1ResponseReader> reader;
    int64_t idle_since_ms = 0;
  };

  TransportOptions options;
  int epoll_fd;
  std::unordered_map<int, Connection*> by_fd;
  std::vector<std::unique_ptr<Connection>> connections;                       // every connection, busy or idle
  std::map<std::string, std::vector<Connection*>> idle;                       // per origin, the most recently used last
  std::map<std::string, int> max_idle;                                        // per origin
  std::map<std::string, std::pair<std::vector<Address>, int64_t>> dns_cache;  // host: addresses, until
  std::vector<std::unique_ptr<Transfer>> finished;
  std::shared_ptr<Resolver> resolver;
  std::thread resolver_thread;
  SSL_CTX* tls_context = nullptr;  // made at the first https:// connection
  std::string tls_context_error;

  Impl(const TransportOptions& o, int epoll, std::function<void()> wake) : options(o), epoll_fd(epoll) {
    resolver = std::make_shared<Resolver>();
    resolver->wake = std::move(wake);
  }

  ~Impl() {
    for (auto& c : connections) {
      if (c->tls) SSL_free(c->tls);
      if (c->fd >= 0) ::close(c->fd);
    }
    if (tls_context) SSL_CTX_free(tls_context);
    if (resolver_thread.joinable()) {
      {
        std::lock_guard lock(resolver->mu);
        resolver->stopping = true;
      }
      resolver->cv.notify_all();
      resolver_thread.detach();  // a hanging getaddrinfo must not hold up shutdown; see Resolver
    }
  }

  // ---- starting ----

  void start(std::unique_ptr<Transfer> t, Http1Target target, int keep, int64_t now) {
    std::string origin = target.origin();
    max_idle[origin] = std::max(1, keep);
    const int64_t timeout = t->request.timeout_ms > 0 ? t->request.timeout_ms : options.default_timeout_ms;
    if (Connection* c = take_idle(origin, now)) {
      c->target = std::move(target);  // the same origin; this request's path
      c->reused = true;
      c->retried = false;
      c->opened = 0;
      c->started_ms = now;
      c->deadline_ms = now + timeout;
      send_request(*c, std::move(t), now);
      return;
    }
    auto c = std::make_unique<Connection>();
    c->target = std::move(target);
    c->origin = std::move(origin);
    c->started_ms = now;
    c->deadline_ms = now + timeout;
    c->transfer = std::move(t);
    Connection* raw = c.get();
    connections.push_back(std::move(c));
    open(*raw, now);
  }

  Connection* take_idle(const std::string& origin, int64_t now) {
    auto it = idle.find(origin);
    if (it == idle.end()) return nullptr;
    while (!it->second.empty()) {
      Connection* c = it->second.back();
      it->second.pop_back();
      if (now - c->idle_since_ms < kMaxIdleAgeMs) return c;
      destroy(c);
    }
    return nullptr;
  }

  // Resolves (or finds) the addresses of c's host, then connects.
  void open(Connection& c, int64_t now) {
    c.reused = false;
    c.phase = Phase::Resolving;
    c.connect_deadline_ms = std::min(c.deadline_ms, now + options.connect_timeout_ms);
    if (std::optional<Address> a = numeric_address(c.target.host, c.target.port)) {
      c.addresses = {*a};
      connect_next(c, now);
      return;
    }
    if (auto it = dns_cache.find(c.target.host); it != dns_cache.end() && it->second.second > now) {
      c.addresses = it->second.first;
      for (Address& a : c.addresses) set_port(a, c.target.port);
      connect_next(c, now);
      return;
    }
    ask_resolver(c.target.host);  // on_tick connects c when the answer comes
  }

  void ask_resolver(const std::string& host) {
    std::lock_guard lock(resolver->mu);
    if (std::find(resolver->asked.begin(), resolver->asked.end(), host) != resolver->asked.end()) return;
    resolver->asked.push_back(host);
    if (!resolver_thread.joinable())
      resolver_thread = std::thread([r = resolver] {
        name_this_thread("tayori-resolve");
        r->run();
      });
    resolver->cv.notify_one();
  }

  void take_answers(int64_t now) {
    std::vector<Resolver::Answer> answers;
    {
      std::lock_guard lock(resolver->mu);
      if (resolver->answers.empty()) return;
      answers.swap(resolver->answers);
    }
    for (Resolver::Answer& a : answers) {
      if (!a.addresses.empty()) dns_cache[a.host] = {a.addresses, now + kDnsCacheMs};
      for (size_t i = 0; i < connections.size(); ++i) {
        Connection& c = *connections[i];
        if (c.phase != Phase::Resolving || c.target.host != a.host) continue;
        if (a.addresses.empty()) {
          end(c, CURLE_COULDNT_RESOLVE_HOST, "Could not resolve host: " + a.host + " (" + a.error + ")");
          continue;
        }
        c.addresses = a.addresses;
        for (Address& addr : c.addresses) set_port(addr, c.target.port);
        connect_next(c, now);
      }
    }
    sweep();
  }

  // Tries c's next address; ends the transfer when none is left.
  void connect_next(Connection& c, int64_t now) {
    while (c.next_address < c.addresses.size()) {
      const Address& a = c.addresses[c.next_address++];
      if (c.fd >= 0) forget_fd(c);
      const int fd = ::socket(a.addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
      if (fd < 0) {
        c.connect_error = errno_text(errno);
        continue;
      }
      const int one = 1;  // requests are written whole: no reason to wait for more (libcurl's default too)
      ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      c.fd = fd;
      by_fd[fd] = &c;
      c.phase = Phase::Connecting;
      if (::connect(fd, reinterpret_cast<const sockaddr*>(&a.addr), a.len) == 0) {
        connected(c, now);
        return;
      }
      if (errno == EINPROGRESS) {
        watch(c, EPOLLOUT);
        return;
      }
      c.connect_error = errno_text(errno);
    }
    end(c, CURLE_COULDNT_CONNECT,
        "Failed to connect to " + c.target.host + " port " + std::to_string(c.target.port) + ": " +
            (c.connect_error.empty() ? "no address" : c.connect_error));
  }

  void connected(Connection& c, int64_t now) {
    c.opened = 1;
    if (c.target.tls) {
      start_tls(c, now);
      return;
    }
    std::unique_ptr<Transfer> t = std::move(c.transfer);
    send_request(c, std::move(t), now);
  }

  // ---- TLS (OpenSSL, non-blocking on the connection's socket) ----

  // The settings libcurl uses for https:// here (transfer.cpp): peer and host name verified unless
  // verify_tls is off, against ca_file alone when one is given (CURLOPT_CAINFO) or the system's store.
  // ALPN offers http/1.1 only: this client speaks nothing else (RFC 7301 §3.1).
  SSL_CTX* context() {
    if (tls_context || !tls_context_error.empty()) return tls_context;
    SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx) {
      tls_context_error = "SSL_CTX_new failed";
      return nullptr;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    static const unsigned char kAlpn[] = {8, 'h', 't', 't', 'p', '/', '1', '.', '1'};
    SSL_CTX_set_alpn_protos(ctx, kAlpn, sizeof kAlpn);
    if (options.verify_tls) {
      SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr);
      const bool loaded = options.ca_file.empty()
                              ? SSL_CTX_set_default_verify_paths(ctx) == 1
                              : SSL_CTX_load_verify_locations(ctx, options.ca_file.c_str(), nullptr) == 1;
      if (!loaded) {
        tls_context_error = "error setting certificate verify locations: CAfile: " + options.ca_file;
        SSL_CTX_free(ctx);
        return nullptr;
      }
    }
    tls_context = ctx;
    return ctx;
  }

  void start_tls(Connection& c, int64_t now) {
    SSL_CTX* ctx = context();
    if (!ctx) {
      end(c, CURLE_SSL_CACERT_BADFILE, tls_context_error);
      return;
    }
    c.tls = SSL_new(ctx);
    if (!c.tls || SSL_set_fd(c.tls, c.fd) != 1) {
      end(c, CURLE_SSL_CONNECT_ERROR, "SSL_new failed");
      return;
    }
    const bool ip_literal = numeric_address(c.target.host, 0).has_value();
    if (!ip_literal) SSL_set_tlsext_host_name(c.tls, c.target.host.c_str());  // SNI (RFC 6066 §3): names only
    if (options.verify_tls) {
      X509_VERIFY_PARAM* param = SSL_get0_param(c.tls);
      X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
      // RFC 6125: an IP address is matched against iPAddress entries, a name against DNS names.
      if (ip_literal ? X509_VERIFY_PARAM_set1_ip_asc(param, c.target.host.c_str()) != 1
                     : X509_VERIFY_PARAM_set1_host(param, c.target.host.c_str(), 0) != 1) {
        end(c, CURLE_SSL_CONNECT_ERROR, "cannot set the host name to verify");
        return;
      }
    }
    SSL_set_connect_state(c.tls);
    c.phase = Phase::Handshaking;
    handshake(c, now);
  }

  void handshake(Connection& c, int64_t now) {
    ERR_clear_error();
    const int rc = SSL_do_handshake(c.tls);
    if (rc == 1) {
      std::unique_ptr<Transfer> t = std::move(c.transfer);
      send_request(c, std::move(t), now);
      return;
    }
    const int e = SSL_get_error(c.tls, rc);
    if (e == SSL_ERROR_WANT_READ) return watch(c, EPOLLIN);
    if (e == SSL_ERROR_WANT_WRITE) return watch(c, EPOLLIN | EPOLLOUT);
    if (const long verify = SSL_get_verify_result(c.tls); verify != X509_V_OK) {
      end(c, CURLE_PEER_FAILED_VERIFICATION,
          std::string("SSL certificate problem: ") + X509_verify_cert_error_string(verify));
      return;
    }
    end(c, CURLE_SSL_CONNECT_ERROR, "TLS handshake with " + c.target.host + " failed: " + tls_error_text(e));
  }

  static std::string tls_error_text(int ssl_error) {
    if (const unsigned long code = ERR_get_error(); code != 0) {
      char buf[256];
      ERR_error_string_n(code, buf, sizeof buf);
      return buf;
    }
    if (ssl_error == SSL_ERROR_SYSCALL) return errno != 0 ? errno_text(errno) : "connection closed";
    return "SSL error " + std::to_string(ssl_error);
  }

  // One write or read on c, through TLS when it has a session. Returns bytes moved, 0 at the end of the stream,
  // or -1 with `again` set (retry when epoll says so; `want_write`: the socket must turn writable) or errno set.
  ssize_t io_send(Connection& c, const char* data, size_t n, bool& again) {
    again = false;
    if (!c.tls) {
      const ssize_t w = ::send(c.fd, data, n, MSG_NOSIGNAL);
      again = w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR);
      return w;
    }
    ERR_clear_error();
    const int w = SSL_write(c.tls, data, static_cast<int>(std::min<size_t>(n, 1 << 30)));
    if (w > 0) return w;
    const int e = SSL_get_error(c.tls, w);
    again = e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ;
    if (!again && e != SSL_ERROR_SYSCALL) errno = EPROTO;
    return -1;
  }
  ssize_t io_recv(Connection& c, char* buf, size_t n, bool& again) {
    again = false;
    if (!c.tls) {
      const ssize_t r = ::recv(c.fd, buf, n, 0);
      again = r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR);
      return r;
    }
    ERR_clear_error();
    errno = 0;
    const int r = SSL_read(c.tls, buf, static_cast<int>(n));
    if (r > 0) return r;
    const int e = SSL_get_error(c.tls, r);
    if (e == SSL_ERROR_ZERO_RETURN) return 0;                       // close_notify
    if (e == SSL_ERROR_SYSCALL && errno == 0) return 0;             // closed without close_notify
    again = e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE;  // a TLS record not complete, a session ticket
    if (!again && e != SSL_ERROR_SYSCALL) errno = EPROTO;
    return -1;
  }

  void send_request(Connection& c, std::unique_ptr<Transfer> t, int64_t now) {
    c.out = write_http1_request(t->request, c.target, options.user_agent);
    c.sent = 0;
    c.reader.emplace(t->request.method == "HEAD", options.max_response_bytes);
    c.transfer = std::move(t);
    c.phase = Phase::Sending;
    flush(c, now);
  }

  // ---- the socket ----

  void watch(Connection& c, uint32_t events) {
    if (c.interest == events) return;
    epoll_event ev{};
    ev.events = events;
    ev.data.fd = c.fd;
    ::epoll_ctl(epoll_fd, c.interest == 0 ? EPOLL_CTL_ADD : EPOLL_CTL_MOD, c.fd, &ev);
    c.interest = events;
  }

  void forget_fd(Connection& c) {
    if (c.tls) {
      SSL_free(c.tls);  // no close_notify: the connection is dropped, not ended politely
      c.tls = nullptr;
    }
    by_fd.erase(c.fd);
    ::close(c.fd);  // the kernel takes a closed socket out of the epoll set
    c.fd = -1;
    c.interest = 0;
  }

  void flush(Connection& c, int64_t now) {
    while (c.sent < c.out.size()) {
      bool again = false;
      const ssize_t n = io_send(c, c.out.data() + c.sent, c.out.size() - c.sent, again);
      if (n > 0) {
        c.sent += static_cast<size_t>(n);
        continue;
      }
      if (again) {
        watch(c, EPOLLIN | EPOLLOUT);
        return;
      }
      const int e = errno;
      if (stale(c, now)) return;
      end(c, CURLE_SEND_ERROR, "Send failure: " + errno_text(e));
      return;
    }
    c.out.clear();
    c.out.shrink_to_fit();
    c.phase = Phase::Receiving;
    watch(c, EPOLLIN);
  }

  void receive(Connection& c, int64_t now) {
    // TLS may hold decrypted bytes the socket no longer signals: read until it has none left.
    do {
      receive_once(c, now);
    } while (c.transfer && c.tls && c.phase != Phase::Idle && SSL_pending(c.tls) > 0);
  }

  void receive_once(Connection& c, int64_t now) {
    char buf[kReadChunk];
    bool again = false;
    const ssize_t n = io_recv(c, buf, sizeof buf, again);
    if (n < 0) {
      if (again) return;
      const int e = errno;
      if (stale(c, now)) return;
      end(c, CURLE_RECV_ERROR, "Recv failure: " + errno_text(e));
      return;
    }
    Http1ResponseReader& reader = *c.reader;
    bool surplus = false;
    if (n == 0) {
      if (!reader.received_anything() && stale(c, now)) return;
      reader.end_of_stream();
    } else {
      surplus = reader.feed(std::string_view(buf, static_cast<size_t>(n))) < static_cast<size_t>(n);
    }
    if (reader.state() == Http1ResponseReader::State::Reading) return;
    if (reader.state() == Http1ResponseReader::State::Failed) {
      end(c, reader.error(), reader.error_text());
      return;
    }
    // Bytes after the answer are no answer to anything this client asked: the connection is not kept.
    const bool keep = reader.keep_alive() && !surplus && n != 0 && c.phase == Phase::Receiving;
    c.transfer->response = reader.take_response();
    hand_back(c);
    c.reader.reset();
    if (!keep) {
      destroy(&c);
      return;
    }
    c.phase = Phase::Idle;
    c.idle_since_ms = now;
    std::vector<Connection*>& kept = idle[c.origin];
    if (static_cast<int>(kept.size()) >= max_idle[c.origin]) {
      destroy(&c);
      return;
    }
    kept.push_back(&c);
  }

  bool only_tls_housekeeping(Connection& c) {
    char byte;
    ERR_clear_error();
    const int r = SSL_peek(c.tls, &byte, 1);
    return r <= 0 && SSL_get_error(c.tls, r) == SSL_ERROR_WANT_READ;
  }

  // A kept connection that died before any byte of the answer: the server closed or reset it while it idled
  // and this side had not seen it yet. A GET or HEAD goes again on a new connection (RFC 9110 §9.2.2); any
  // other request may have been acted on, and fails as libcurl's re-send does (http_transfer.cpp on_prereq).
  bool stale(Connection& c, int64_t now) {
    if (!c.reused || (c.reader && c.reader->received_anything())) return false;
    const std::string& m = c.transfer->request.method;
    if ((m == "GET" || m == "HEAD") && !c.retried) {
      forget_fd(c);
      c.retried = true;
      c.addresses.clear();
      c.next_address = 0;
      c.reader.reset();
      open(c, now);
      return true;
    }
    end(c, CURLE_GOT_NOTHING, kNotResentText);
    return true;
  }

  // Ends c's transfer with an error; the connection goes with it.
  void end(Connection& c, int code, std::string text) {
    if (c.transfer) {
      c.transfer->fail(code, std::move(text));
      hand_back(c);
    }
    destroy(&c);
  }

  // Gives c's transfer, its response set, back to the loop (take_finished); a connection opened for it counts
  // whatever the outcome, as libcurl counts it (CURLINFO_NUM_CONNECTS).
  void hand_back(Connection& c) {
    c.transfer->response.new_connections = c.opened;
    finished.push_back(std::move(c.transfer));
  }

  // Closes c; it leaves `connections` at the next sweep (callers up the stack may still hold it).
  void destroy(Connection* c) {
    if (c->fd >= 0) forget_fd(*c);
    if (auto it = idle.find(c->origin); it != idle.end()) std::erase(it->second, c);
    c->phase = Phase::Idle;
    c->origin.clear();
    c->reader.reset();
    dead = true;
  }
  bool dead = false;

  void sweep() {
    if (!dead) return;
    dead = false;
    std::erase_if(connections, [](const std::unique_ptr<Connection>& c) {
      return c->fd < 0 && c->phase == Phase::Idle && !c->transfer;
    });
  }

  // ---- the loop's calls ----

  void on_event(int fd, uint32_t events, int64_t now) {
    auto it = by_fd.find(fd);
    if (it == by_fd.end()) return;
    Connection& c = *it->second;
    switch (c.phase) {
      case Phase::Idle:
        // The server closed it, or sent what nobody asked for -- unless it is TLS 1.3 housekeeping (a session
        // ticket, RFC 8446 §4.6.1) that OpenSSL reads without giving a byte.
        if (!c.tls || !only_tls_housekeeping(c)) destroy(&c);
        break;
      case Phase::Handshaking: handshake(c, now); break;
      case Phase::Connecting: {
        int err = 0;
        socklen_t len = sizeof err;
        ::getsockopt(c.fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err != 0 || (events & (EPOLLERR | EPOLLHUP)) != 0) {
          c.connect_error = errno_text(err != 0 ? err : ECONNREFUSED);
          connect_next(c, now);
        } else {
          connected(c, now);
        }
        break;
      }
      case Phase::Sending:
        if (events & (EPOLLIN | EPOLLERR | EPOLLHUP)) {
          receive(c, now);  // an early answer (a 413 before the whole body), or the error
          if (c.transfer && c.phase == Phase::Sending) flush(c, now);
        } else {
          flush(c, now);
        }
        break;
      case Phase::Receiving: receive(c, now); break;
      case Phase::Resolving: break;
    }
    sweep();
  }

  void on_tick(int64_t now) {
    take_answers(now);
    for (auto& owned : connections) {
      Connection& c = *owned;
      if (c.transfer) {
        if (c.phase == Phase::Connecting || c.phase == Phase::Resolving || c.phase == Phase::Handshaking) {
          if (now >= c.connect_deadline_ms)
            end(c, CURLE_OPERATION_TIMEDOUT,
                "Connection timed out after " + std::to_string(now - c.started_ms) + " milliseconds");
        } else if (now >= c.deadline_ms) {
          end(c, CURLE_OPERATION_TIMEDOUT,
              "Operation timed out after " + std::to_string(now - c.started_ms) + " milliseconds");
        }
      } else if (c.phase == Phase::Idle && c.fd >= 0 && now - c.idle_since_ms >= kMaxIdleAgeMs) {
        destroy(&c);
      }
    }
    sweep();
  }

  int64_t next_timeout_ms(int64_t now) const {
    int64_t due = -1;
    for (const auto& owned : connections) {
      const Connection& c = *owned;
      int64_t at = -1;
      if (c.transfer)
        at = c.phase == Phase::Connecting || c.phase == Phase::Resolving || c.phase == Phase::Handshaking
                 ? c.connect_deadline_ms
                 : c.deadline_ms;
      else if (c.fd >= 0)
        at = c.idle_since_ms + kMaxIdleAgeMs;
      if (at >= 0) due = due < 0 ? at : std::min(due, at);
    }
    return due < 0 ? -1 : std::max<int64_t>(0, due - now);
  }

  void abort_all(int code, const std::string& text) {
    for (auto& c : connections)
      if (c->transfer) end(*c, code, text);
    for (auto& c : connections)
      if (c->fd >= 0) destroy(c.get());
    sweep();
  }
};

Http1Engine::Http1Engine(const TransportOptions& options, int epoll_fd, std::function<void()> wake)
    : impl_(std::make_unique<Impl>(options, epoll_fd, std::move(wake))) {}
Http1Engine::~Http1Engine() = default;

void Http1Engine::start(std::unique_ptr<Transfer> transfer, Http1Target target, int max_idle, int64_t now_ms) {
  impl_->start(std::move(transfer), std::move(target), max_idle, now_ms);
  impl_->sweep();
}
bool Http1Engine::owns(int fd) const { return impl_->by_fd.count(fd) != 0; }
void Http1Engine::on_event(int fd, uint32_t events, int64_t now_ms) { impl_->on_event(fd, events, now_ms); }
void Http1Engine::on_tick(int64_t now_ms) { impl_->on_tick(now_ms); }
int64_t Http1Engine::next_timeout_ms(int64_t now_ms) const { return impl_->next_timeout_ms(now_ms); }
std::vector<std::unique_ptr<Transfer>> Http1Engine::take_finished() {
  std::vector<std::unique_ptr<Transfer>> out;
  out.swap(impl_->finished);
  return out;
}
void Http1Engine::abort_all(int code, const std::string& text) { impl_->abort_all(code, text); }

}  // namespace tayori::transport
