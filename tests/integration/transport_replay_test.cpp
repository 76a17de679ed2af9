// OutboundTransport against the provider simulator (tayori-sim, a child process) over HTTP/1.1 and HTTP/2 over
// TLS, for what a delivery gateway must get right on the wire:
//  - a POST whose connection dies before the answer is never sent again behind the caller's back (libcurl
//    7.88 re-sends a request whose reused connection died without a response byte, Curl_retry_request,
//    up to 5 times; the provider may already have acted on the first copy). The caller gets a transport
//    error instead and retries with the provider's de-dup key.
//  - hundreds of concurrent HTTP/2 POSTs on one TLS connection to the simulator's nghttp2 listener are
//    each answered, and each reaches the provider exactly once.
// The simulator records every provider request it receives (GET /_sim/requests), so "exactly once" is
// checked on the provider's side, not inferred from the client.
#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <curl/curl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <stdexcept>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "completions.hpp"
#include "harness.hpp"  // TempDir
#include "sim_process.hpp"
#include "transport/outbound_transport.hpp"

namespace tayori::transport {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;

constexpr const char* kLineToken = "sim-token";

// tayori-sim (tests/support/sim_process.hpp) with both listeners, HTTP/1.1 and HTTP/2 over TLS with a
// certificate made here by the openssl CLI.
class Sim {
 public:
  // Call through ASSERT_NO_FATAL_FAILURE.
  void start() {
    const std::string cert = dir_.file("cert.pem"), key = dir_.file("key.pem");
    const std::string cmd = "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1"
                            " -subj /CN=localhost -addext subjectAltName=IP:127.0.0.1,DNS:localhost -keyout " +
                            key + " -out " + cert + " >/dev/null 2>&1";
    ASSERT_EQ(std::system(cmd.c_str()), 0) << "openssl req failed";
    test::SimProcess::Options options;
    options.tls_cert = cert;
    options.tls_key = key;
    process_.start({"--line-token", kLineToken}, options);
    ca_file_ = cert;
  }

  std::string http_url() const { return process_.url(); }   // http://127.0.0.1:PORT
  std::string h2_url() const { return process_.h2_url(); }  // https://127.0.0.1:PORT (h2 only)
  const std::string& ca_file() const { return ca_file_; }

 private:
  tayori::testing::TempDir dir_;
  test::SimProcess process_;
  std::string ca_file_;
};

// A TCP relay on 127.0.0.1 in front of a server, for killing a connection after the request reached the
// server but before its answer reached the client: hold_answers() stops passing the server's bytes on, and
// reset_clients() then resets every client connection (SO_LINGER 0: RST, as a crashed peer or a middlebox
// does) and closes the server sides. Only for loopback tests: one thread, blocking writes.
class Relay {
 public:
  explicit Relay(uint16_t target) : target_(target) {
    listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a = loopback(0);
    socklen_t len = sizeof a;
    if (::bind(listen_fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(listen_fd_, 16) != 0 ||
        ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&a), &len) != 0)
      throw std::runtime_error("relay: cannot listen");
    port_ = ntohs(a.sin_port);
    thread_ = std::thread([this] { loop(); });
  }
  ~Relay() {
    command(Command::Stop);
    thread_.join();
    for (auto& [client, server] : pairs_) ::close(client), ::close(server);
    ::close(listen_fd_);
    ::close(wake_fd_);
  }
  uint16_t port() const { return port_; }
  void hold_answers() { command(Command::Hold); }
  void reset_clients() { command(Command::Reset); }

 private:
  enum class Command { None, Hold, Reset, Stop };

  static sockaddr_in loopback(uint16_t port) {
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(port);
    return a;
  }
  static bool write_all(int fd, const char* p, ssize_t n) {
    while (n > 0) {
      ssize_t w = ::send(fd, p, static_cast<size_t>(n), MSG_NOSIGNAL);
      if (w <= 0) return false;
      p += w, n -= w;
    }
    return true;
  }

  // Hands `c` to the relay thread and waits until it has been carried out.
  void command(Command c) {
    std::unique_lock lock(mu_);
    pending_ = c;
    uint64_t one = 1;
    [[maybe_unused]] ssize_t n = ::write(wake_fd_, &one, sizeof one);
    cv_.wait(lock, [&] { return pending_ == Command::None; });
  }

  // Carries out the pending command; false on Stop.
  bool obey() {
    uint64_t count;
    [[maybe_unused]] ssize_t n = ::read(wake_fd_, &count, sizeof count);
    std::lock_guard lock(mu_);
    const Command c = std::exchange(pending_, Command::None);
    cv_.notify_all();
    if (c == Command::Hold) hold_ = true;
    if (c == Command::Reset) {
      for (auto& [client, server] : pairs_) {
        linger rst{1, 0};
        ::setsockopt(client, SOL_SOCKET, SO_LINGER, &rst, sizeof rst);
        ::close(client), ::close(server);
      }
      pairs_.clear();
      hold_ = false;
    }
    return c != Command::Stop;
  }

  void loop() {
    char buf[16384];
    for (;;) {
      std::vector<pollfd> fds = {{listen_fd_, POLLIN, 0}, {wake_fd_, POLLIN, 0}};
      for (auto& [client, server] : pairs_) fds.push_back({client, POLLIN, 0}), fds.push_back({server, POLLIN, 0});
      if (::poll(fds.data(), fds.size(), -1) < 0) continue;
      if (fds[1].revents & POLLIN) {
        if (!obey()) return;
        continue;  // pairs_ may have changed under fds
      }
      std::vector<bool> dead(pairs_.size(), false);
      for (size_t i = 0; i < pairs_.size(); ++i) {
        for (int side = 0; side < 2 && !dead[i]; ++side) {
          if (!(fds[2 + 2 * i + side].revents & (POLLIN | POLLHUP | POLLERR))) continue;
          const int from = side == 0 ? pairs_[i].first : pairs_[i].second;
          const int to = side == 0 ? pairs_[i].second : pairs_[i].first;
          ssize_t n = ::recv(from, buf, sizeof buf, 0);
          if (n <= 0 || ((side == 0 || !hold_) && !write_all(to, buf, n))) dead[i] = true;
        }
      }
      for (size_t i = pairs_.size(); i-- > 0;)
        if (dead[i]) {
          ::close(pairs_[i].first), ::close(pairs_[i].second);
          pairs_.erase(pairs_.begin() + static_cast<std::ptrdiff_t>(i));
        }
      if (fds[0].revents & POLLIN) {
        int client = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
        int server = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        sockaddr_in a = loopback(target_);
        if (client >= 0 && ::connect(server, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0) {
          pairs_.emplace_back(client, server);
        } else {
          if (client >= 0) ::close(client);
          ::close(server);
        }
      }
    }
  }

  uint16_t target_;
  uint16_t port_ = 0;
  int listen_fd_ = -1;
  int wake_fd_ = ::eventfd(0, EFD_CLOEXEC);
  std::thread thread_;
  std::vector<std::pair<int, int>> pairs_;  // (client, server), relay thread only
  bool hold_ = false;                       // relay thread only
  std::mutex mu_;
  std::condition_variable cv_;
  Command pending_ = Command::None;
};

uint16_t port_of(const std::string& url) { return static_cast<uint16_t>(std::stoi(url.substr(url.rfind(':') + 1))); }


Response call(OutboundTransport& t, Request r) {
  Completions res(1);
  t.submit(std::move(r), res.slot(0));
  EXPECT_TRUE(res.wait_all(30s));
  return res[0];
}

class TransportReplayTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_NO_FATAL_FAILURE(sim_.start()); }

  TransportOptions options() const {
    TransportOptions o;
    o.ca_file = sim_.ca_file();
    return o;
  }

  // A LINE push with a body unique to `n` (the simulator serves every provider on both listeners).
  Request push(const std::string& base, int n, HttpVersion version) const {
    json body = {{"to", "U0123456789abcdef0123456789abcdef"},
                 {"messages", json::array({{{"type", "text"}, {"text", "push " + std::to_string(n)}}})}};
    return Request{"POST", base + "/v2/bot/message/push",
                   {{"Authorization", std::string("Bearer ") + kLineToken}, {"Content-Type", "application/json"}},
                   body.dump(), 20'000, "", version};
  }

  // How many times the simulator received each push text.
  std::map<std::string, int> received() {
    Response r = call(control_, {"GET", sim_.http_url() + "/_sim/requests?provider=line"});
    EXPECT_EQ(r.status, 200) << r.error_text << r.body;
    std::map<std::string, int> seen;
    for (const json& req : json::parse(r.body, nullptr, false))
      ++seen[json::parse(req.value("body", ""), nullptr, false)["messages"][0].value("text", "?")];
    return seen;
  }

  void add_fault(const json& fault) {
    Response r = call(control_, {"POST", sim_.http_url() + "/_sim/faults", {{"Content-Type", "application/json"}},
                                 fault.dump()});
    ASSERT_EQ(r.status, 200) << r.error_text << r.body;
  }

  // Polls until the simulator has received push `n` (bounded: 10 s).
  bool wait_received(int n) {
    for (int i = 0; i < 200; ++i) {
      if (received()["push " + std::to_string(n)] > 0) return true;
      std::this_thread::sleep_for(50ms);
    }
    return false;
  }

  enum class Death {
    SimDrop,      // the simulator's drop fault: HTTP/1.1 closes the connection, HTTP/2 resets the stream
    RelayReset,   // the connection is reset (RST) after the request reached the simulator
  };

  // A first push warms a connection up; the second goes out on that kept connection and reaches the
  // simulator, which never answers it (`death`). It must reach the provider once and come back as a
  // transport error; a third push still works.
  Response expect_no_replay(const std::string& sim_url, HttpVersion version, const std::string& wire_version,
                            Death death) {
    Relay relay(port_of(sim_url));
    const std::string base = death == Death::RelayReset
                                 ? sim_url.substr(0, sim_url.rfind(':') + 1) + std::to_string(relay.port())
                                 : sim_url;
    OutboundTransport transport(options());
    Response first = call(transport, push(base, 1, version));
    EXPECT_EQ(first.status, 200) << first.error_text << first.body;
    EXPECT_EQ(first.http_version_used, wire_version);

    Completions second(1);
    if (death == Death::SimDrop) {
      add_fault({{"provider", "line"}, {"drop_count", 1}});
      transport.submit(push(base, 2, version), second.slot(0));
    } else {
      relay.hold_answers();
      transport.submit(push(base, 2, version), second.slot(0));
      EXPECT_TRUE(wait_received(2)) << "the second push never reached the simulator";
      relay.reset_clients();
    }
    EXPECT_TRUE(second.wait_all(30s));
    EXPECT_NE(second[0].transport_error, 0) << "status " << second[0].status << ": the request was re-sent";
    EXPECT_EQ(second[0].status, 0);

    std::map<std::string, int> seen = received();
    EXPECT_EQ(seen["push 1"], 1);
    EXPECT_EQ(seen["push 2"], 1) << "the POST was sent again after the provider had received it";

    Response third = call(transport, push(base, 3, version));
    EXPECT_EQ(third.status, 200) << third.error_text;
    EXPECT_EQ(received()["push 3"], 1);
    return second[0];
  }

  // 500 POSTs submitted at once over HTTP/2 to the nghttp2 listener, all in flight together (libcurl puts up
  // to 100 streams on a connection). Each comes back exactly once; returns how many were not answered 200,
  // after checking that every push reached the provider exactly once -- the unanswered ones included.
  int blast_500(OutboundTransport& transport, const std::string& base) {
    constexpr int kN = 500;
    PoolOptions pool;
    pool.max_concurrent = kN;
    const std::string key = OutboundTransport::pool_key_for(push(base, 0, HttpVersion::Http2Tls));
    transport.configure_pool(key, pool);
    Completions res(kN);
    for (int i = 0; i < kN; ++i) transport.submit(push(base, i, HttpVersion::Http2Tls), res.slot(i));
    EXPECT_TRUE(res.wait_all(120s));
    int64_t opened = 0;
    int unanswered = 0;
    for (int i = 0; i < kN; ++i) {
      EXPECT_EQ(res.calls(i), 1);
      opened += res[i].new_connections;
      if (res[i].status == 200) {
        EXPECT_EQ(res[i].http_version_used, "2");
      } else {
        ++unanswered;
        EXPECT_EQ(res[i].transport_error, CURLE_HTTP2_STREAM) << "push " << i << ": " << res[i].error_text;
      }
    }
    EXPECT_GE(opened, 1);
    EXPECT_EQ(transport.connections_opened(key), static_cast<uint64_t>(opened));
    EXPECT_EQ(transport.connections_opened(), static_cast<uint64_t>(opened));

    std::map<std::string, int> seen = received();
    int not_once = 0;
    for (int i = 0; i < kN; ++i) not_once += seen["push " + std::to_string(i)] != 1;
    EXPECT_EQ(not_once, 0) << "pushes the provider received twice or never";
    return unanswered;
  }

  Sim sim_;
  OutboundTransport control_;
};

// libcurl re-sends these (reproduced with libcurl 7.88.1): the transport refuses the re-send.
TEST_F(TransportReplayTest, Http11PostOnClosedKeptConnectionIsNotResent) {
  Response r = expect_no_replay(sim_.http_url(), HttpVersion::Http1_1, "1.1", Death::SimDrop);
  EXPECT_EQ(r.transport_error, CURLE_GOT_NOTHING) << r.error_text;
}

TEST_F(TransportReplayTest, Http11PostOnResetKeptConnectionIsNotResent) {
  Response r = expect_no_replay(sim_.http_url(), HttpVersion::Http1_1, "1.1", Death::RelayReset);
  EXPECT_EQ(r.transport_error, CURLE_GOT_NOTHING) << r.error_text;
}

TEST_F(TransportReplayTest, Http2PostOnResetConnectionIsNotResent) {
  Response r = expect_no_replay(sim_.h2_url(), HttpVersion::Http2Tls, "2", Death::RelayReset);
  EXPECT_EQ(r.transport_error, CURLE_GOT_NOTHING) << r.error_text;
}

// The simulator's HTTP/2 drop resets only the stream: a stream error, which libcurl does not re-send.
TEST_F(TransportReplayTest, Http2DroppedStreamIsAnErrorAndNotResent) {
  Response r = expect_no_replay(sim_.h2_url(), HttpVersion::Http2Tls, "2", Death::SimDrop);
  EXPECT_EQ(r.transport_error, CURLE_HTTP2_STREAM) << r.error_text;
}

TEST_F(TransportReplayTest, FiveHundredConcurrentHttp2PostsAnsweredExactlyOnce) {
  OutboundTransport transport(options());
  EXPECT_EQ(blast_500(transport, sim_.h2_url()), 0);
}

// A dropped request costs its own stream only: with 5 drops among 500 streams in flight, exactly 5 fail.
// (When a drop closed the whole connection, every other stream in flight on it failed with it, and libcurl
// re-sent some of them.)
TEST_F(TransportReplayTest, Http2DropsFailOnlyTheirOwnStreams) {
  ASSERT_NO_FATAL_FAILURE(add_fault({{"provider", "line"}, {"drop_count", 5}}));
  OutboundTransport transport(options());
  EXPECT_EQ(blast_500(transport, sim_.h2_url()), 5);
}

}  // namespace
}  // namespace tayori::transport
