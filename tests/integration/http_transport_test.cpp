// OutboundTransport against real sockets on 127.0.0.1 (no curl mocks): tayori's own HTTP/1.1 server with a
// recording handler, a listener that never accepts (timeouts, shutdown), a closed port (refused), and --
// when Debian's nghttp2-server is installed -- nghttpd for HTTP/2 (h2c prior knowledge and h2 over TLS
// with a certificate made at test time by the openssl CLI).
#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <curl/curl.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <future>
#include <iostream>
#include <map>
#include <mutex>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "api/http_server.hpp"
#include "common/thread_guard.hpp"
#include "completions.hpp"
#include "harness.hpp"  // TempDir
#include "required_tool.hpp"
#include "transport/http1_engine.hpp"
#include "transport/outbound_transport.hpp"
#include "transport/transfer.hpp"

extern char** environ;

namespace tayori::transport {
namespace {

using namespace std::chrono_literals;


// Records every request and answers with `reply`.
class RecordingHandler : public api::Handler {
 public:
  void handle(api::HttpRequest request, api::Responder respond) override {
    {
      std::lock_guard lock(mu);
      requests.push_back(request);
      remotes.insert(request.remote);
    }
    api::HttpResponse r;
    r.status = 201;
    r.content_type = "text/plain";
    r.headers = {{"X-Reply-Token", "abc 123"}};
    r.body = "echo:" + request.method + ":" + request.body;
    respond(std::move(r));
  }
  std::mutex mu;
  std::vector<api::HttpRequest> requests;
  std::set<std::string> remotes;  // one per accepted connection
};

struct LocalServer {
  RecordingHandler handler;
  api::HttpServer server{handler, api::ServerLimits{}, 2};
  uint16_t port = server.start("127.0.0.1", 0);
  ~LocalServer() { server.stop(500); }
  std::string url(const std::string& path) const { return "http://127.0.0.1:" + std::to_string(port) + path; }
};

uint16_t bound_port(int fd) {
  sockaddr_in addr{};
  socklen_t len = sizeof addr;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  return ntohs(addr.sin_port);
}

int bind_loopback() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) throw std::runtime_error("bind");
  return fd;
}

// Listens and never answers: the kernel completes the handshake (a test may accept() to see a connection
// arrive), and no byte ever comes back.
struct SilentListener {
  int fd = bind_loopback();
  uint16_t port = (::listen(fd, 128), bound_port(fd));
  ~SilentListener() { ::close(fd); }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port) + "/slow"; }
};

// A port nothing listens on (bound and released; refused on connect).
uint16_t closed_port() {
  int fd = bind_loopback();
  uint16_t port = bound_port(fd);
  ::close(fd);
  return port;
}

bool port_accepts(uint16_t port) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(port);
  bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  ::close(fd);
  return ok;
}

bool wait_for_port(uint16_t port, test::ChildProcess& child) {
  for (int i = 0; i < 100; ++i) {
    if (port_accepts(port)) return true;
    if (!child.running()) return false;
    std::this_thread::sleep_for(50ms);
  }
  return false;
}

constexpr const char* kNghttpd = "/usr/sbin/nghttpd";

TEST(HttpTransport, RequestAndResponseArriveExactly) {
  LocalServer srv;
  OutboundTransport transport;
  Completions c(1);
  Request req;
  req.method = "PUT";
  req.url = srv.url("/v1/things/7?x=1");
  req.headers = {{"X-Custom", "value with  spaces"}, {"Content-Type", "application/json"}, {"X-Empty", ""}};
  req.body = R"({"a":1})";
  req.http_version = HttpVersion::Http1_1;
  transport.submit(req, c.slot(0));
  ASSERT_TRUE(c.wait_all());
  Response r = c.response(0);
  EXPECT_EQ(r.transport_error, 0) << r.error_text;
  EXPECT_EQ(r.status, 201);
  EXPECT_EQ(r.body, R"(echo:PUT:{"a":1})");
  EXPECT_EQ(r.header("x-reply-token"), "abc 123");
  EXPECT_EQ(r.header("content-type"), "text/plain");
  EXPECT_EQ(r.http_version_used, "1.1");
  EXPECT_EQ(r.new_connections, 1);

  std::lock_guard lock(srv.handler.mu);
  ASSERT_EQ(srv.handler.requests.size(), 1u);
  const auto& got = srv.handler.requests[0];
  EXPECT_EQ(got.method, "PUT");
  EXPECT_EQ(got.target, "/v1/things/7?x=1");
  EXPECT_EQ(got.body, R"({"a":1})");
  EXPECT_EQ(got.header("x-custom"), "value with  spaces");
  EXPECT_EQ(got.header("content-type"), "application/json");
  EXPECT_EQ(got.header("content-length"), "7");
  EXPECT_EQ(got.header("expect"), "");
  bool saw_empty = false;
  for (const auto& [k, v] : got.headers) saw_empty |= k == "x-empty" && v.empty();
  EXPECT_TRUE(saw_empty);
}

TEST(HttpTransport, ACompletionThatThrowsIsCountedAndTheTransportGoesOn) {
  LocalServer srv;
  OutboundTransport transport;
  int64_t before = thread_errors()["transport"];
  std::promise<void> thrown;
  Request first;
  first.url = srv.url("/first");
  transport.submit(first, [&](const Response&) {
    thrown.set_value();
    throw std::runtime_error("a completion that fails");
  });
  ASSERT_EQ(thrown.get_future().wait_for(10s), std::future_status::ready);
  // The transport thread lives on: the next request is answered.
  Completions c(1);
  Request second;
  second.url = srv.url("/second");
  transport.submit(second, c.slot(0));
  ASSERT_TRUE(c.wait_all());
  EXPECT_EQ(c.response(0).body, "echo:GET:");
  EXPECT_EQ(thread_errors()["transport"], before + 1);
}

TEST(HttpTransport, PostWithoutContentTypeGetsNoImplicitFormType) {
  LocalServer srv;
  OutboundTransport transport;
  Completions c(2);
  transport.submit({"POST", srv.url("/p"), {}, "raw", 0, "", HttpVersion::Default}, c.slot(0));
  transport.submit({"GET", srv.url("/g"), {}, "", 0, "", HttpVersion::Default}, c.slot(1));
  ASSERT_TRUE(c.wait_all());
  EXPECT_EQ(c.response(0).body, "echo:POST:raw");
  EXPECT_EQ(c.response(1).body, "echo:GET:");
  std::lock_guard lock(srv.handler.mu);
  for (const auto& got : srv.handler.requests) EXPECT_EQ(got.header("content-type"), "") << got.method;
}

// One request after another on one transport: each finished transfer's easy handle is reset and given to the
// next (outbound_transport.cpp recycle_easy). Nothing of a request may leak into the next one on that handle:
// not its method (CURLOPT_CUSTOMREQUEST outlives CURLOPT_HTTPGET), its headers, or its body.
TEST(HttpTransport, AReusedHandleCarriesNothingOfTheRequestBefore) {
  LocalServer srv;
  OutboundTransport transport;
  const std::vector<Request> sequence = {
      {"PUT", srv.url("/put"), {{"X-Custom", "first"}, {"Content-Type", "application/json"}}, R"({"a":1})", 5'000},
      {"GET", srv.url("/get"), {}, "", 0},
      {"HEAD", srv.url("/head"), {{"X-Other", "third"}}, "", 0},
      {"POST", srv.url("/post"), {}, "raw", 0},
      {"GET", srv.url("/again"), {}, "", 0},
  };
  for (size_t i = 0; i < sequence.size(); ++i) {
    Completions c(1);
    transport.submit(sequence[i], c.slot(0));
    ASSERT_TRUE(c.wait_all());
    EXPECT_EQ(c.response(0).status, 201) << i << ": " << c.response(0).error_text;
  }
  std::lock_guard lock(srv.handler.mu);
  ASSERT_EQ(srv.handler.requests.size(), sequence.size());
  for (size_t i = 0; i < sequence.size(); ++i) {
    const auto& got = srv.handler.requests[i];
    const Request& sent = sequence[i];
    EXPECT_EQ(got.method, sent.method) << i;
    EXPECT_EQ(got.target, sent.url.substr(sent.url.find('/', 7))) << i;
    EXPECT_EQ(got.body, sent.body) << i;
    EXPECT_EQ(got.header("x-custom"), i == 0 ? "first" : "") << i;
    EXPECT_EQ(got.header("x-other"), i == 2 ? "third" : "") << i;
    EXPECT_EQ(got.header("content-type"), i == 0 ? "application/json" : "") << i;
    if (sent.body.empty()) EXPECT_EQ(got.header("content-length"), sent.method == "PUT" ? "0" : "") << i;
  }
}

TEST(HttpTransport, HundredConcurrentRequestsReuseConnections) {
  LocalServer srv;
  OutboundTransport transport;
  const std::string pool = OutboundTransport::pool_key_for({"GET", srv.url("/"), {}, "", 0, "", {}});
  transport.configure_pool(pool, PoolOptions{8, nullptr});
  constexpr size_t kN = 100;
  Completions c(kN);
  for (size_t i = 0; i < kN; ++i)
    transport.submit({"POST", srv.url("/n"), {}, std::to_string(i), 0, "", HttpVersion::Http1_1}, c.slot(i));
  ASSERT_TRUE(c.wait_all());
  int64_t opened = 0;
  for (size_t i = 0; i < kN; ++i) {
    Response r = c.response(i);
    ASSERT_EQ(r.transport_error, 0) << r.error_text;
    EXPECT_EQ(r.status, 201);
    EXPECT_EQ(r.body, "echo:POST:" + std::to_string(i));
    EXPECT_EQ(c.calls(i), 1);
    opened += r.new_connections;
  }
  std::lock_guard lock(srv.handler.mu);
  EXPECT_EQ(srv.handler.requests.size(), kN);
  EXPECT_GE(srv.handler.remotes.size(), 1u);
  EXPECT_LE(srv.handler.remotes.size(), 8u) << "connections accepted by the server";
  EXPECT_EQ(static_cast<size_t>(opened), srv.handler.remotes.size());
}

// Bursts of 16 concurrent requests, as 16 dispatcher workers send them, with a pause between bursts: the
// keep-alive connections of one burst serve the next, so no more than 16 are ever opened. (libcurl's own
// cache limit follows the transfers running at the moment and closed most of them between bursts.)
TEST(HttpTransport, KeptConnectionsSurviveBetweenBursts) {
  LocalServer srv;
  OutboundTransport transport;
  const std::string pool = OutboundTransport::pool_key_for({"GET", srv.url("/"), {}, "", 0, "", {}});
  transport.configure_pool(pool, PoolOptions{16, nullptr});
  constexpr size_t kWorkers = 16, kBursts = 5;
  for (size_t burst = 0; burst < kBursts; ++burst) {
    Completions c(kWorkers);
    for (size_t i = 0; i < kWorkers; ++i)
      transport.submit({"POST", srv.url("/n"), {}, std::to_string(i), 0, "", HttpVersion::Http1_1}, c.slot(i));
    ASSERT_TRUE(c.wait_all());
    for (size_t i = 0; i < kWorkers; ++i) ASSERT_EQ(c.response(i).status, 201) << c.response(i).error_text;
  }
  std::lock_guard lock(srv.handler.mu);
  EXPECT_EQ(srv.handler.requests.size(), kWorkers * kBursts);
  EXPECT_LE(srv.handler.remotes.size(), kWorkers) << "connections accepted by the server";
  EXPECT_EQ(transport.connections_opened(), srv.handler.remotes.size());
  EXPECT_EQ(transport.connections_opened(pool), srv.handler.remotes.size());
  EXPECT_EQ(transport.connections_opened("https://elsewhere:443"), 0u);
}

// max_connections_per_host holds every request to a host to that many connections, whichever client would carry it.
TEST(HttpTransport, AConnectionCapPerHostHoldsAllRequestsToIt) {
  LocalServer srv;
  TransportOptions options;
  options.max_connections_per_host = 1;
  OutboundTransport transport(options);
  transport.configure_pool(OutboundTransport::pool_key_for({"GET", srv.url("/"), {}, "", 0, "", {}}),
                           PoolOptions{8, nullptr});
  constexpr size_t kN = 16;
  Completions c(kN);
  for (size_t i = 0; i < kN; ++i)
    transport.submit({"POST", srv.url("/n"), {}, std::to_string(i), 0, "", HttpVersion::Http1_1}, c.slot(i));
  ASSERT_TRUE(c.wait_all());
  for (size_t i = 0; i < kN; ++i) EXPECT_EQ(c.response(i).body, "echo:POST:" + std::to_string(i));
  std::lock_guard lock(srv.handler.mu);
  EXPECT_EQ(srv.handler.remotes.size(), 1u) << "connections accepted by the server";
}

// The CPU time (clock ticks) this process's transport threads have used so far.
int64_t transport_threads_cpu_ticks() {
  int64_t ticks = 0;
  for (const auto& task : std::filesystem::directory_iterator("/proc/self/task")) {
    std::ifstream comm(task.path() / "comm");
    std::string name;
    std::getline(comm, name);
    if (name.rfind("tayori-transp", 0) != 0) continue;
    std::ifstream stat(task.path() / "stat");
    std::string all((std::istreambuf_iterator<char>(stat)), std::istreambuf_iterator<char>());
    std::istringstream fields(all.substr(all.rfind(')') + 2));  // after "pid (comm) "
    std::string field;
    for (int i = 3; i <= 15 && fields >> field; ++i)
      if (i == 14 || i == 15) ticks += std::stoll(field);  // utime, stime
  }
  return ticks;
}

// A keep-alive server that closes each connection after its one answer, once the test says so: the client's
// kept connection dies while it idles in the transport's cache. A listener like SilentListener's that answers
// when the test asks it to.
struct ClosingServer : SilentListener {
  // Accepts a connection, answers one GET with a keep-alive 200, and returns the connection, still open.
  int answer_one() const {
    int c = ::accept(fd, nullptr, nullptr);
    std::string request;
    char buf[4096];
    while (request.find("\r\n\r\n") == std::string::npos) {
      ssize_t n = ::read(c, buf, sizeof buf);
      if (n <= 0) break;
      request.append(buf, static_cast<size_t>(n));
    }
    static constexpr char kAnswer[] = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
    EXPECT_EQ(::write(c, kAnswer, sizeof kAnswer - 1), static_cast<ssize_t>(sizeof kAnswer - 1));
    return c;
  }
};

// The transport leaves an idle kept connection in its epoll set (outbound_transport.cpp, on_socket): when the
// server closes it there, the loop takes it out instead of waking for it again and again, and the next request
// goes out on a new connection.
TEST(HttpTransport, AKeptConnectionTheServerClosesWhileIdleIsDroppedAndTheNextRequestGoesOnANewOne) {
  ClosingServer srv;
  OutboundTransport transport;
  // One GET through the transport, answered by the server; returns the server's side of its connection.
  auto get_once = [&](const char* which) {
    Completions c(1);
    transport.submit({"GET", srv.url(), {}, "", 5000, "", HttpVersion::Http1_1}, c.slot(0));
    int connection = srv.answer_one();
    EXPECT_TRUE(c.wait_all()) << which;
    EXPECT_EQ(c.response(0).status, 200) << which << ": " << c.response(0).error_text;
    EXPECT_EQ(c.response(0).new_connections, 1) << which;
    return connection;
  };
  ::close(get_once("first"));  // the server ends the idle connection: its FIN reaches the transport's epoll set
  std::this_thread::sleep_for(100ms);
  const int64_t before = transport_threads_cpu_ticks();
  std::this_thread::sleep_for(600ms);
  // A loop woken for that socket over and over would spend the whole 600 ms (60 ticks at 100 Hz) on a core.
  EXPECT_LT(transport_threads_cpu_ticks() - before, 15) << "the transport spun on the closed connection";
  ::close(get_once("second"));
}

TEST(HttpTransport, TimeoutGivesOperationTimedOut) {
  SilentListener silent;
  OutboundTransport transport;
  Completions c(1);
  const auto start = std::chrono::steady_clock::now();
  transport.submit({"GET", silent.url(), {}, "", 300, "", HttpVersion::Http1_1}, c.slot(0));
  ASSERT_TRUE(c.wait_all());
  const auto elapsed = std::chrono::steady_clock::now() - start;
  Response r = c.response(0);
  EXPECT_EQ(r.transport_error, CURLE_OPERATION_TIMEDOUT) << r.error_text;
  EXPECT_FALSE(r.error_text.empty());
  EXPECT_EQ(r.status, 0);
  EXPECT_FALSE(r.ok());
  EXPECT_GE(elapsed, 250ms);
  EXPECT_LT(elapsed, 5s);
}

TEST(HttpTransport, ConnectionRefusedIsAnError) {
  OutboundTransport transport;
  Completions c(1);
  transport.submit({"GET", "http://127.0.0.1:" + std::to_string(closed_port()) + "/", {}, "", 2000, "", {}},
                   c.slot(0));
  ASSERT_TRUE(c.wait_all());
  Response r = c.response(0);
  EXPECT_EQ(r.transport_error, CURLE_COULDNT_CONNECT) << r.error_text;
  EXPECT_EQ(r.status, 0);
}

TEST(HttpTransport, BadInputFailsWithoutSending) {
  LocalServer srv;
  OutboundTransport transport;
  Completions c(3);
  transport.submit({"GET", srv.url("/"), {{"X-Evil", "a\r\nInjected: 1"}}, "", 0, "", {}}, c.slot(0));
  transport.submit({"GET", "file:///etc/passwd", {}, "", 0, "", {}}, c.slot(1));
  transport.submit({"GE T", srv.url("/"), {}, "", 0, "", {}}, c.slot(2));
  ASSERT_TRUE(c.wait_all());
  EXPECT_EQ(c.response(0).transport_error, CURLE_BAD_FUNCTION_ARGUMENT);
  EXPECT_EQ(c.response(1).transport_error, CURLE_UNSUPPORTED_PROTOCOL);
  EXPECT_EQ(c.response(2).transport_error, CURLE_BAD_FUNCTION_ARGUMENT);
  std::lock_guard lock(srv.handler.mu);
  EXPECT_TRUE(srv.handler.requests.empty());
}

TEST(HttpTransport, ShutdownWithRequestsInFlightCompletesEachOnce) {
  SilentListener silent;
  auto transport = std::make_unique<OutboundTransport>();
  transport->configure_pool("slow", PoolOptions{4, nullptr});
  constexpr size_t kN = 30;  // 4 in flight, 26 queued behind the pool limit
  Completions c(kN);
  for (size_t i = 0; i < kN; ++i)
    transport->submit({"GET", silent.url(), {}, "", 60'000, "slow", HttpVersion::Http1_1}, c.slot(i));
  // The pool's four are on the wire once the listener has taken their connections (never answered).
  std::vector<int> on_the_wire;
  for (int i = 0; i < 4; ++i) {
    pollfd p{silent.fd, POLLIN, 0};
    ASSERT_EQ(::poll(&p, 1, 10'000), 1) << "connections made: " << i;
    on_the_wire.push_back(::accept(silent.fd, nullptr, nullptr));
  }
  EXPECT_EQ(c.done(), 0u);
  transport->shutdown();
  ASSERT_TRUE(c.wait_all(1s));
  for (size_t i = 0; i < kN; ++i) {
    EXPECT_EQ(c.calls(i), 1) << i;
    EXPECT_EQ(c.response(i).transport_error, CURLE_ABORTED_BY_CALLBACK);
    EXPECT_EQ(c.response(i).error_text, "transport shut down");
  }
  // After shutdown, submit completes at once (on this thread) with the same error.
  Response late;
  int late_calls = 0;
  transport->submit({"GET", silent.url(), {}, "", 0, "", {}}, [&](Response r) {
    late = std::move(r);
    ++late_calls;
  });
  EXPECT_EQ(late_calls, 1);
  EXPECT_EQ(late.transport_error, CURLE_ABORTED_BY_CALLBACK);
  transport.reset();  // a second (implicit) shutdown is harmless
  for (size_t i = 0; i < kN; ++i) EXPECT_EQ(c.calls(i), 1);
  for (int fd : on_the_wire) ::close(fd);
}

TEST(HttpTransport, RateLimitedPoolHoldsRequestsUntilTokens) {
  LocalServer srv;
  OutboundTransport transport;
  // 2 at once, then one per 50 ms: 6 requests need at least 200 ms.
  transport.configure_pool("limited", PoolOptions{0, std::make_shared<TokenBucket>(20, 2)});
  constexpr size_t kN = 6;
  Completions c(kN);
  const auto start = std::chrono::steady_clock::now();
  for (size_t i = 0; i < kN; ++i) transport.submit({"GET", srv.url("/r"), {}, "", 0, "limited", {}}, c.slot(i));
  ASSERT_TRUE(c.wait_all());
  const auto elapsed = std::chrono::steady_clock::now() - start;
  for (size_t i = 0; i < kN; ++i) EXPECT_EQ(c.response(i).status, 201) << c.response(i).error_text;
  EXPECT_GE(elapsed, 190ms);
  EXPECT_LT(elapsed, 3s);
}

TEST(HttpTransport, PoolKeyDefaultsToOrigin) {
  auto key = [](std::string url, std::string pool = "") {
    return OutboundTransport::pool_key_for({"GET", std::move(url), {}, "", 0, std::move(pool), {}});
  };
  EXPECT_EQ(key("https://API.push.apple.com/3/device/x"), "https://api.push.apple.com:443");
  EXPECT_EQ(key("http://127.0.0.1:8080/a?b"), "http://127.0.0.1:8080");
  EXPECT_EQ(key("http://user:pw@host"), "http://host:80");
  EXPECT_EQ(key("https://[::1]/x"), "https://[::1]:443");
  EXPECT_EQ(key("https://[::1]:9/x"), "https://[::1]:9");
  EXPECT_EQ(key("https://a/x", "line-account-1"), "line-account-1");
}

// ---- The transport's own HTTP/1.1 client (transport/http1_engine.hpp): framings, persistence, retries ----

// Answers the requests it receives, on any connection, from a script: each entry is the bytes of one answer, or
// kHangUp to close the connection after reading the request, without a word. An answer that says
// "Connection: close" or has no length closes its connection after it. For requests sent one after another (the
// order of the script is the order they arrive in); connections end when the client closes them. With a
// certificate and key it speaks TLS (OpenSSL, no ALPN: a client that asks for HTTP/2 gets HTTP/1.1).
struct ScriptedServer : SilentListener {
  static constexpr const char* kHangUp = "";
  explicit ScriptedServer(std::vector<std::string> script, const std::string& cert = "", const std::string& key = "")
      : script_(std::move(script)) {
    if (!cert.empty()) {
      tls_ = SSL_CTX_new(TLS_server_method());
      EXPECT_EQ(SSL_CTX_use_certificate_file(tls_, cert.c_str(), SSL_FILETYPE_PEM), 1);
      EXPECT_EQ(SSL_CTX_use_PrivateKey_file(tls_, key.c_str(), SSL_FILETYPE_PEM), 1);
    }
    thread_ = std::thread([this] { serve(); });
  }
  ~ScriptedServer() {
    ::shutdown(fd, SHUT_RDWR);
    thread_.join();
    if (tls_) SSL_CTX_free(tls_);
  }
  int accepted() const { return accepted_; }
  // TLS: after the next answer, wait for send_ticket() and send a TLS 1.3 session ticket (RFC 8446 §4.6.1) then.
  void hold_a_ticket_after_the_next_answer() { ticket_held_ = true; }
  // Lets the held ticket go, and returns once it is on the wire.
  void send_ticket() {
    std::unique_lock lock(mu_);
    ticket_wanted_ = true;
    ticket_cv_.notify_all();
    EXPECT_TRUE(ticket_cv_.wait_for(lock, 5s, [&] { return !ticket_wanted_; })) << "no ticket was held";
  }
  std::vector<std::string> request_lines() {
    std::lock_guard lock(mu_);
    return lines_;
  }
  std::string https_url() const { return "https://127.0.0.1:" + std::to_string(port) + "/slow"; }

 private:
  struct Peer {
    int fd;
    SSL* ssl;
    ssize_t read(char* buf, size_t n) { return ssl ? SSL_read(ssl, buf, static_cast<int>(n)) : ::read(fd, buf, n); }
    ssize_t write(const std::string& s) {
      return ssl ? SSL_write(ssl, s.data(), static_cast<int>(s.size())) : ::write(fd, s.data(), s.size());
    }
  };
  // Reads one request (head and Content-Length body); false at the end of the connection.
  bool read_request(Peer& c, std::string& buffer) {
    char buf[4096];
    for (;;) {
      const size_t end = buffer.find("\r\n\r\n");
      if (end != std::string::npos) {
        size_t length = 0;
        const size_t cl = buffer.find("Content-Length: ");
        if (cl != std::string::npos && cl < end) length = std::stoul(buffer.substr(cl + 16));
        if (buffer.size() >= end + 4 + length) {
          std::lock_guard lock(mu_);
          lines_.push_back(buffer.substr(0, buffer.find("\r\n")));
          buffer.erase(0, end + 4 + length);
          return true;
        }
      }
      const ssize_t n = c.read(buf, sizeof buf);
      if (n <= 0) return false;
      buffer.append(buf, static_cast<size_t>(n));
    }
  }
  void serve() {
    std::vector<std::thread> peers;
    for (;;) {
      Peer c{::accept(fd, nullptr, nullptr), nullptr};
      if (c.fd < 0) break;
      ++accepted_;
      peers.emplace_back([this, c]() mutable { converse(c); });
    }
    for (std::thread& t : peers) t.join();
  }
  void converse(Peer c) {
    if (tls_) {
      c.ssl = SSL_new(tls_);
      SSL_set_fd(c.ssl, c.fd);
      if (SSL_accept(c.ssl) != 1) {  // a client that refused the certificate
        SSL_free(c.ssl);
        ::close(c.fd);
        return;
      }
    }
    std::string buffer;
    while (read_request(c, buffer)) {
      std::string answer;
      {
        std::lock_guard lock(mu_);
        if (next_ >= script_.size()) break;
        answer = script_[next_++];
      }
      if (answer.empty()) break;  // kHangUp
      EXPECT_EQ(c.write(answer), static_cast<ssize_t>(answer.size()));
      if (c.ssl && ticket_held_.exchange(false)) {
        std::unique_lock lock(mu_);
        if (ticket_cv_.wait_for(lock, 5s, [&] { return ticket_wanted_; })) {
          EXPECT_EQ(SSL_new_session_ticket(c.ssl), 1);
          EXPECT_EQ(SSL_do_handshake(c.ssl), 1);  // sends the ticket now
          ticket_wanted_ = false;
          ticket_cv_.notify_all();
        }
      }
      if (answer.find("Connection: close") != std::string::npos ||
          (answer.find("Length") == std::string::npos && answer.find("chunked") == std::string::npos))
        break;
    }
    if (c.ssl) SSL_free(c.ssl);
    ::close(c.fd);
  }
  std::vector<std::string> script_;
  size_t next_ = 0;  // the script's next answer
  SSL_CTX* tls_ = nullptr;
  std::thread thread_;
  std::atomic<int> accepted_{0};
  std::mutex mu_;
  std::vector<std::string> lines_;
  std::atomic<bool> ticket_held_{false};
  bool ticket_wanted_ = false;  // under mu_
  std::condition_variable ticket_cv_;
};

Response send_one(OutboundTransport& transport, Request request) {
  Completions c(1);
  transport.submit(std::move(request), c.slot(0));
  EXPECT_TRUE(c.wait_all(20s));
  return c.response(0);
}

TEST(HttpTransportOwnClient, ReadsEveryFramingAndReusesOnlyConnectionsTheServerKeeps) {
  ScriptedServer srv({"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\none\r\n0\r\n\r\n",
                      "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\ntwo",
                      "HTTP/1.0 200 OK\r\nX-Kind: until close\r\n\r\nthree",
                      "HTTP/1.1 404 Not Found\r\nContent-Length: 4\r\n\r\nfour"});
  OutboundTransport transport;
  const std::vector<std::pair<std::string, int64_t>> expected = {{"one", 1}, {"two", 0}, {"three", 1}, {"four", 1}};
  for (size_t i = 0; i < expected.size(); ++i) {
    Response r = send_one(transport, {"GET", srv.url() + std::to_string(i), {}, "", 5000, "", {}});
    EXPECT_EQ(r.transport_error, 0) << i << ": " << r.error_text;
    EXPECT_EQ(r.body, expected[i].first) << i;
    EXPECT_EQ(r.new_connections, expected[i].second) << i;
  }
  EXPECT_EQ(srv.accepted(), 3);
  EXPECT_EQ(transport.connections_opened(), 3u);
}

// A kept connection the server closed just as the next request went out (no byte of an answer came): a GET
// goes again on a new connection (RFC 9110 §9.2.2); a POST does not, as the server may have acted on it.
TEST(HttpTransportOwnClient, OnlyAGetGoesAgainWhenItsKeptConnectionDies) {
  const std::string ok = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
  ScriptedServer srv({ok, ScriptedServer::kHangUp, ok, ok, ScriptedServer::kHangUp});
  OutboundTransport transport;
  EXPECT_EQ(send_one(transport, {"GET", srv.url() + "/1", {}, "", 5000, "", {}}).status, 200);
  Response again = send_one(transport, {"GET", srv.url() + "/2", {}, "", 5000, "", {}});
  EXPECT_EQ(again.status, 200) << again.error_text;
  EXPECT_EQ(again.new_connections, 1);
  EXPECT_EQ(send_one(transport, {"POST", srv.url() + "/3", {}, "x", 5000, "", {}}).status, 200);
  Response post = send_one(transport, {"POST", srv.url() + "/4", {}, "y", 5000, "", {}});
  EXPECT_EQ(post.transport_error, CURLE_GOT_NOTHING) << post.error_text;
  EXPECT_EQ(post.status, 0);
  const std::vector<std::string> seen = {"GET /slow/1 HTTP/1.1", "GET /slow/2 HTTP/1.1", "GET /slow/2 HTTP/1.1",
                                         "POST /slow/3 HTTP/1.1", "POST /slow/4 HTTP/1.1"};
  EXPECT_EQ(srv.request_lines(), seen);
}

TEST(HttpTransportOwnClient, ANameIsResolvedOffTheLoopAndAnUnknownOneFails) {
  LocalServer srv;
  OutboundTransport transport;
  Response r =
      send_one(transport, {"GET", "http://localhost:" + std::to_string(srv.port) + "/n", {}, "", 10'000, "", {}});
  EXPECT_EQ(r.status, 201) << r.error_text;
  EXPECT_EQ(r.body, "echo:GET:");
  Response unknown = send_one(transport, {"GET", "http://no-such-host.invalid/", {}, "", 15'000, "", {}});
  EXPECT_EQ(unknown.transport_error, CURLE_COULDNT_RESOLVE_HOST) << unknown.error_text;
}

// A self-signed certificate for `names` (a subjectAltName), made by the openssl CLI; false if it could not.
bool make_test_cert(const tayori::testing::TempDir& dir, const std::string& names = "IP:127.0.0.1,DNS:localhost") {
  const std::string cmd =
      "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1"
      " -subj /CN=tayori-test -addext subjectAltName=" +
      names + " -keyout " + dir.file("key.pem") + " -out " + dir.file("cert.pem") + " >/dev/null 2>&1";
  return std::system(cmd.c_str()) == 0;
}

// A ScriptedServer over TLS with a certificate for `names`, and a transport that trusts that certificate. The
// transport goes first (the server's connections end when the client closes them).
struct TlsScripted {
  TlsScripted(std::vector<std::string> script, const std::string& names = "IP:127.0.0.1,DNS:localhost")
      : cert_made(make_test_cert(dir, names)),
        srv(std::move(script), dir.file("cert.pem"), dir.file("key.pem")),
        transport(trusting(dir.file("cert.pem"))) {}
  static TransportOptions trusting(const std::string& ca_file) {
    TransportOptions options;
    options.ca_file = ca_file;
    return options;
  }
  tayori::testing::TempDir dir;
  bool cert_made;
  ScriptedServer srv;
  OutboundTransport transport;
};

TEST(HttpTransportOwnClient, SpeaksHttp1OverTlsAndVerifiesThePeer) {
  const std::string ok = "HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nsecure";
  TlsScripted tls({ok, ok, ok});
  ASSERT_TRUE(tls.cert_made) << "openssl req failed";
  ScriptedServer& srv = tls.srv;
  for (int64_t opened : {1, 0}) {
    Response r = send_one(tls.transport, {"POST", srv.https_url(), {}, "x", 5000, "", HttpVersion::Http1_1});
    EXPECT_EQ(r.transport_error, 0) << r.error_text;
    EXPECT_EQ(r.body, "secure");
    EXPECT_EQ(r.http_version_used, "1.1");
    EXPECT_EQ(r.new_connections, opened);
  }
  // Without the test CA the self-signed certificate is refused, and nothing is sent.
  OutboundTransport strict;
  Response refused = send_one(strict, {"POST", srv.https_url(), {}, "x", 5000, "", HttpVersion::Http1_1});
  EXPECT_EQ(refused.transport_error, CURLE_PEER_FAILED_VERIFICATION) << refused.error_text;
  EXPECT_EQ(srv.request_lines().size(), 2u);
}

// The host name is checked against the certificate (RFC 6125), by name and by address: a trusted certificate
// for another host is refused, one for the name in the URL is taken.
TEST(HttpTransportOwnClient, RefusesATrustedCertificateForAnotherHost) {
  TlsScripted tls({"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"}, "DNS:localhost");
  ASSERT_TRUE(tls.cert_made) << "openssl req failed";
  ScriptedServer& srv = tls.srv;
  OutboundTransport& transport = tls.transport;
  Response by_address = send_one(transport, {"POST", srv.https_url(), {}, "x", 5000, "", HttpVersion::Http1_1});
  EXPECT_EQ(by_address.transport_error, CURLE_PEER_FAILED_VERIFICATION) << by_address.error_text;
  const std::string by_name_url = "https://localhost:" + std::to_string(srv.port) + "/slow";
  Response by_name = send_one(transport, {"POST", by_name_url, {}, "x", 10'000, "", HttpVersion::Http1_1});
  EXPECT_EQ(by_name.status, 200) << by_name.error_text;
  EXPECT_EQ(srv.request_lines().size(), 1u);
}

// A listener whose accept queue is full: the kernel drops further SYNs, so a connect to it never completes.
struct FullListener {
  int fd = bind_loopback();
  uint16_t port = (::listen(fd, 0), bound_port(fd));
  std::vector<int> queued;  // connections that fill the queue, never accepted
  bool full = fill();
  ~FullListener() {
    for (int q : queued) ::close(q);
    ::close(fd);
  }
  bool fill() {
    for (int i = 0; i < 8; ++i) {
      int q = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
      sockaddr_in addr{};
      addr.sin_family = AF_INET;
      addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      addr.sin_port = htons(port);
      (void)::connect(q, reinterpret_cast<sockaddr*>(&addr), sizeof addr);  // in progress: poll tells how it ends
      queued.push_back(q);
      pollfd p{q, POLLOUT, 0};
      if (::poll(&p, 1, 200) == 0) return true;  // this one hangs: the queue is full
    }
    return false;
  }
};

// connect_timeout_ms bounds the TCP and the TLS handshakes, as CURLOPT_CONNECTTIMEOUT_MS does for libcurl,
// however long the request's own timeout is.
TEST(HttpTransportOwnClient, TheConnectTimeoutBoundsTheTcpAndTheTlsHandshake) {
  TransportOptions options;
  options.connect_timeout_ms = 300;
  OutboundTransport transport(options);
  FullListener full;
  ASSERT_TRUE(full.full) << "the accept queue did not fill";
  SilentListener silent;  // the TCP handshake completes; no TLS answer comes
  const std::string urls[] = {"http://127.0.0.1:" + std::to_string(full.port) + "/",
                              "https://127.0.0.1:" + std::to_string(silent.port) + "/"};
  for (const std::string& url : urls) {
    const auto start = std::chrono::steady_clock::now();
    Response r = send_one(transport, {"POST", url, {}, "x", 30'000, "", HttpVersion::Http1_1});
    const auto elapsed = std::chrono::steady_clock::now() - start;
    EXPECT_EQ(r.transport_error, CURLE_OPERATION_TIMEDOUT) << url << ": " << r.error_text;
    EXPECT_NE(r.error_text.find("Connection timed out"), std::string::npos) << r.error_text;
    EXPECT_GE(elapsed, 250ms) << url;
    EXPECT_LT(elapsed, 5s) << url;
  }
}

// The own client driven by hand on real sockets, with the clock in the test's hands: what libcurl keeps for
// minutes (idle connections, names) is seen to expire without waiting for it.
struct DrivenEngine {
  explicit DrivenEngine(const TransportOptions& options = {})
      : engine(std::make_unique<Http1Engine>(options, epoll_fd, [this] { ++resolver_answers; })) {}
  int epoll_fd = ::epoll_create1(EPOLL_CLOEXEC);
  std::atomic<int> resolver_answers{0};  // the resolver wakes the loop once per answer
  std::unique_ptr<Http1Engine> engine;
  int64_t now = 5'000'000;
  ~DrivenEngine() {
    engine.reset();
    ::close(epoll_fd);
  }
  // Starts a POST to `url` at `now` and turns the loop (the clock stopped) until it ends.
  Response send(const std::string& url) {
    std::unique_ptr<Transfer> t = make_http_transfer();
    t->request = {"POST", url, {}, "x", 5000, "", HttpVersion::Http1_1};
    std::optional<Response> got;
    t->done = [&](Response r) { got = std::move(r); };
    engine->start(std::move(t), *parse_http1_target(url), 4, now);
    for (int turn = 0; turn < 500 && !got; ++turn) this->turn(10);
    EXPECT_TRUE(got) << url;
    return got.value_or(Response{});
  }
  // One turn of the loop: waits up to `wait_ms` for events and hands them over. Returns how many came.
  int turn(int wait_ms) {
    epoll_event events[8];
    const int n = ::epoll_wait(epoll_fd, events, 8, wait_ms);
    for (int i = 0; i < n; ++i) engine->on_event(events[i].data.fd, events[i].events, now);
    engine->on_tick(now);
    for (auto& done : engine->take_finished()) done->complete();
    return std::max(n, 0);
  }
};

// A kept connection goes after 118 s idle, libcurl's CURLOPT_MAXAGE_CONN default: taken for a request before
// then, not after, and closed by the loop's tick once due.
TEST(HttpTransportOwnClient, AKeptConnectionIsUsedUpTo118SecondsIdleAndClosedAfter) {
  const std::string ok = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
  ScriptedServer srv({ok, ok, ok});
  const std::string url = "http://127.0.0.1:" + std::to_string(srv.port) + "/x";
  DrivenEngine driven;
  EXPECT_EQ(driven.send(url).new_connections, 1);
  driven.now += 117'999;
  EXPECT_EQ(driven.send(url).new_connections, 0) << "idle 117.999 s: kept";
  driven.now += 118'000;
  Response third = driven.send(url);
  EXPECT_EQ(third.status, 200);
  EXPECT_EQ(third.new_connections, 1) << "idle 118 s: not taken, though no tick closed it yet";
  EXPECT_EQ(srv.accepted(), 2);
  driven.now += 117'000;
  EXPECT_EQ(driven.engine->next_timeout_ms(driven.now), 1'000) << "the idle connection's age is planned for";
  driven.now += 1'000;
  driven.engine->on_tick(driven.now);
  EXPECT_EQ(driven.engine->next_timeout_ms(driven.now), -1) << "closed: nothing left to plan";
}

// A resolved name is kept 60 s (libcurl's DNS cache default), then asked again.
TEST(HttpTransportOwnClient, AResolvedNameIsKeptSixtySeconds) {
  const std::string closing = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok";
  ScriptedServer srv({closing, closing, closing});
  const std::string url = "http://localhost:" + std::to_string(srv.port) + "/x";
  DrivenEngine driven;
  for (auto [advance, answers] : {std::pair{0, 1}, {59'999, 1}, {1, 2}}) {
    driven.now += advance;
    Response r = driven.send(url);
    EXPECT_EQ(r.status, 200) << r.error_text;
    EXPECT_EQ(r.new_connections, 1) << "each answer closes its connection";
    EXPECT_EQ(driven.resolver_answers, answers) << advance;
  }
}

// A TLS 1.3 server may send a session ticket whenever it likes (RFC 8446 §4.6.1). One that comes while a kept
// connection idles is OpenSSL's to read, not a close nor an unasked answer: the connection stays kept.
TEST(HttpTransportOwnClient, ASessionTicketThatComesWhileIdleKeepsTheConnection) {
  const std::string ok = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
  TlsScripted tls({ok, ok});
  ASSERT_TRUE(tls.cert_made) << "openssl req failed";
  tls.srv.hold_a_ticket_after_the_next_answer();
  DrivenEngine driven(TlsScripted::trusting(tls.dir.file("cert.pem")));
  const std::string url = tls.srv.https_url();
  EXPECT_EQ(driven.send(url).new_connections, 1);
  tls.srv.send_ticket();
  EXPECT_EQ(driven.turn(2'000), 1) << "the ticket is seen on the idle connection";
  Response second = driven.send(url);
  EXPECT_EQ(second.status, 200) << second.error_text;
  EXPECT_EQ(second.new_connections, 0) << "the connection was kept";
  EXPECT_EQ(tls.srv.accepted(), 1);
}

// An https:// request that lets ALPN choose goes through libcurl, which would take HTTP/2 if offered; once the
// origin has answered in HTTP/1.1, the own client carries the next ones -- on a connection of its own, seen
// here as a second connection the server accepts, which the third request reuses.
TEST(HttpTransportOwnClient, TakesOverAnHttpsOriginOnceItAnsweredInHttp1) {
  const std::string ok = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
  TlsScripted tls({ok, ok, ok});
  ASSERT_TRUE(tls.cert_made) << "openssl req failed";
  ScriptedServer& srv = tls.srv;
  for (int64_t opened : {1, 1, 0}) {
    Response r = send_one(tls.transport, {"POST", srv.https_url(), {}, "x", 5000, "", HttpVersion::Default});
    EXPECT_EQ(r.status, 200) << r.error_text;
    EXPECT_EQ(r.http_version_used, "1.1");
    EXPECT_EQ(r.new_connections, opened);
  }
  EXPECT_EQ(srv.accepted(), 2);
}

// ---- HTTP/2 against nghttpd (Debian nghttp2-server) ----

class Http2Test : public ::testing::Test {
 protected:
  void SetUp() override {
    TAYORI_REQUIRE_TOOL(::access(kNghttpd, X_OK) == 0, "nghttpd is not installed (apt-get install nghttp2-server)");
    std::ofstream(dir_.file("hello.txt")) << "hello over h2";
  }
  std::unique_ptr<test::ChildProcess> start_nghttpd(bool tls, uint16_t& port) {
    port = closed_port();
    std::vector<std::string> argv = {kNghttpd, "-a", "127.0.0.1", "-d", dir_.path().string()};
    if (tls) {
      argv.push_back(std::to_string(port));
      argv.push_back(dir_.file("key.pem"));
      argv.push_back(dir_.file("cert.pem"));
    } else {
      argv.push_back("--no-tls");
      argv.push_back(std::to_string(port));
    }
    auto child = std::make_unique<test::ChildProcess>(argv, test::ChildProcess::Options{"/dev/null", "/dev/null"});
    if (!wait_for_port(port, *child)) return nullptr;
    return child;
  }
  bool make_cert() {
    const std::string cmd = "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1"
                            " -subj /CN=localhost -addext subjectAltName=IP:127.0.0.1,DNS:localhost"
                            " -keyout " + dir_.file("key.pem") + " -out " + dir_.file("cert.pem") +
                            " >/dev/null 2>&1";
    return std::system(cmd.c_str()) == 0;
  }
  // 20 concurrent requests; `max_opened` is how many new connections they may open between them.
  void run_multiplexed(OutboundTransport& transport, const std::string& url, HttpVersion version,
                       int64_t max_opened) {
    constexpr size_t kN = 20;
    Completions c(kN);
    for (size_t i = 0; i < kN; ++i) transport.submit({"GET", url, {}, "", 5000, "", version}, c.slot(i));
    ASSERT_TRUE(c.wait_all());
    int64_t opened = 0;
    for (size_t i = 0; i < kN; ++i) {
      Response r = c.response(i);
      ASSERT_EQ(r.transport_error, 0) << r.error_text;
      EXPECT_EQ(r.status, 200);
      EXPECT_EQ(r.http_version_used, "2");
      EXPECT_EQ(r.body, "hello over h2");
      opened += r.new_connections;
    }
    EXPECT_LE(opened, max_opened) << "requests multiplexed on one connection";
  }
  tayori::testing::TempDir dir_;
};

TEST_F(Http2Test, H2cPriorKnowledgeMultiplexes) {
  uint16_t port = 0;
  auto server = start_nghttpd(false, port);
  ASSERT_TRUE(server) << "nghttpd did not start";
  OutboundTransport transport;
  const std::string url = "http://127.0.0.1:" + std::to_string(port) + "/hello.txt";
  // libcurl < 8.0.0 cannot reuse an h2c prior-knowledge connection (curl/curl#10634), so the transport
  // gives each h2c transfer its own connection there; multiplexing is then only checked over TLS below.
  const bool reuse = curl_version_info(CURLVERSION_NOW)->version_num >= 0x080000;
  if (!reuse) std::cout << "[   NOTE   ] libcurl " << curl_version_info(CURLVERSION_NOW)->version
                        << ": h2c multiplexing not asserted (curl/curl#10634)\n";
  run_multiplexed(transport, url, HttpVersion::Http2PriorKnowledge, reuse ? 1 : 20);
}

TEST_F(Http2Test, H2OverTlsWithTestCaMultiplexes) {
  ASSERT_TRUE(make_cert()) << "openssl req failed";
  uint16_t port = 0;
  auto server = start_nghttpd(true, port);
  ASSERT_TRUE(server) << "nghttpd did not start";
  const std::string url = "https://127.0.0.1:" + std::to_string(port) + "/hello.txt";

  TransportOptions opts;
  opts.ca_file = dir_.file("cert.pem");
  OutboundTransport transport(opts);
  run_multiplexed(transport, url, HttpVersion::Http2Tls, 1);  // PIPEWAIT: all 20 on the first connection

  // Verification is on by default: without the test CA the self-signed certificate is refused.
  OutboundTransport strict;
  Completions c(1);
  strict.submit({"GET", url, {}, "", 5000, "", HttpVersion::Http2Tls}, c.slot(0));
  ASSERT_TRUE(c.wait_all());
  EXPECT_EQ(c.response(0).transport_error, CURLE_PEER_FAILED_VERIFICATION) << c.response(0).error_text;
}

}  // namespace
}  // namespace tayori::transport
