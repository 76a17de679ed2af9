// Hostile input against the HTTP server itself, driven over HTTP and raw sockets against the real binary:
// what a client that holds no key can make the gateway keep (metric series) or do (read a large body).
#include <gtest/gtest.h>

#include <sys/resource.h>
#include <future>
#include <set>

#include "harness.hpp"
#include "raw_connection.hpp"

namespace tayori::testing {
namespace {

constexpr char kAppKey[] = "hostile-server-app-key-0123456789";

class HostileServer : public ::testing::Test {
 protected:
  void start(const std::string& server_yaml = "") {
    ::setenv("TAYORI_TEST_APP_KEY", kAppKey, 1);
    gw_ = std::make_unique<Gateway>(dir_, server_yaml +
                                              "inbound:\n  app_keys:\n    - name: app\n      key_env: TAYORI_TEST_APP_KEY\n" +
                                              default_channels(dir_));
    gw_->start();
  }
  void TearDown() override {
    if (HasFailure() && gw_) std::cerr << "gateway stderr:\n" << gw_->stderr_text();
  }

  TempDir dir_;
  std::unique_ptr<Gateway> gw_;
  HttpClient http_;
};

// The `method` label was the raw method of any request, authenticated or not: each new word a client sent
// became a series kept for the life of the process. Methods the API does not use now count as "other".
TEST_F(HostileServer, UnknownMethodsShareOneMetricsSeries) {
  start();
  for (int i = 0; i < 5; ++i) {
    std::string method = "BREW" + std::to_string(i);
    EXPECT_EQ(http_.request(method, gw_->url("/healthz")).status, 405) << method;
    EXPECT_EQ(http_.request(method, gw_->url("/v1/messages")).status, 401) << method;
    EXPECT_EQ(http_.request(method, gw_->url("/no/such/route/" + method)).status, 404) << method;
  }
  ASSERT_EQ(http_.request("GET", gw_->url("/healthz")).status, 200);
  std::string metrics = http_.request("GET", gw_->url("/metrics")).body;
  EXPECT_EQ(metrics.find("BREW"), std::string::npos) << metrics;
  EXPECT_EQ(metrics.find("/no/such"), std::string::npos) << "routes are templates, not paths";
  EXPECT_NE(metrics.find(R"(method="other",route="/healthz",status="405")"), std::string::npos) << metrics;
  EXPECT_NE(metrics.find(R"(method="other",route="other",status="404")"), std::string::npos) << metrics;
  EXPECT_NE(metrics.find(R"(method="GET",route="/healthz",status="200")"), std::string::npos)
      << "known methods keep their name";
}

// The body (up to server.max_body_bytes, 4 MiB) was read before the key was checked, so anyone could make the
// gateway take in 4 MiB per request. Now the head alone decides: a wrong API key or app key is answered 401
// while the client has sent none of its announced body, and the connection is closed.
TEST_F(HostileServer, AWrongKeyGets401BeforeTheBodyIsSent) {
  start();
  struct Case {
    std::string path, key, realm;
  };
  for (const Case& c : {Case{"/v1/messages", "wrong-key", "tayori"}, Case{"/v1/recipients/r-1/consent", "", "tayori"},
                        Case{"/v1/inbound/app", kApiKey, "tayori-app"}}) {
    RawConnection raw(gw_->port());
    ASSERT_TRUE(raw.connected());
    std::string head = "POST " + c.path + " HTTP/1.1\r\nHost: gateway\r\nContent-Type: application/json\r\n" +
                       (c.key.empty() ? "" : "Authorization: Bearer " + c.key + "\r\n") +
                       "Content-Length: 4194304\r\n\r\n";
    ASSERT_TRUE(raw.send(head));
    RawConnection::Read read = raw.read_until_closed(std::chrono::seconds(5));
    EXPECT_TRUE(read.closed) << c.path << ": the rest of the stream is not a request";
    const std::string& answer = read.text;
    EXPECT_EQ(answer.rfind("HTTP/1.1 401", 0), 0u) << c.path << ": " << answer;
    EXPECT_NE(answer.find("realm=\"" + c.realm + "\""), std::string::npos) << answer;
  }
  // A key that is right still has its body read and handled.
  EXPECT_EQ(gw_->post_json(http_, "/v1/messages", sample_message("after-1")).status, 202);
  std::string metrics = http_.request("GET", gw_->url("/metrics")).body;
  EXPECT_NE(metrics.find(R"(method="POST",route="/v1/messages",status="401"} 1)"), std::string::npos) << metrics;
}

constexpr char kHealthz[] = "GET /healthz HTTP/1.1\r\nHost: gateway\r\n\r\n";

// There was no bound on connections: each one held a file descriptor and a session until its timeouts. Past
// server.max_connections a new connection is answered 503 (or reset) and closed at once, and counted; the
// open ones keep working, and once one closes a new one is taken.
TEST_F(HostileServer, ConnectionsPastMaxConnectionsAreRefusedAtOnceAndTheOpenOnesKeepWorking) {
  start("server:\n  max_connections: 4\n");
  std::vector<std::unique_ptr<RawConnection>> open;
  for (int i = 0; i < 4; ++i) {
    open.push_back(std::make_unique<RawConnection>(gw_->port()));
    ASSERT_EQ(open.back()->exchange(kHealthz).rfind("HTTP/1.1 200", 0), 0u) << i;
  }
  for (int i = 0; i < 3; ++i) {
    RawConnection extra(gw_->port());
    ASSERT_TRUE(extra.connected());
    extra.send(kHealthz);
    RawConnection::Read read = extra.read_until_closed(std::chrono::seconds(5));
    EXPECT_TRUE(read.closed) << "refused at once, not left waiting";
    EXPECT_EQ(read.text.find("HTTP/1.1 200"), std::string::npos) << read.text;
    if (!read.text.empty()) {
      EXPECT_EQ(read.text.rfind("HTTP/1.1 503", 0), 0u) << read.text;
    }
  }
  for (auto& c : open) EXPECT_EQ(c->exchange(kHealthz).rfind("HTTP/1.1 200", 0), 0u) << "an open connection still works";
  open.pop_back();
  HttpResult metrics;
  ASSERT_TRUE(eventually([&] { return (metrics = http_.request("GET", gw_->url("/metrics"))).status == 200; }));
  EXPECT_NE(metrics.body.find("tayori_http_connections_refused_total "), std::string::npos) << metrics.body;
  EXPECT_EQ(metrics.body.find("tayori_http_connections_refused_total 0"), std::string::npos) << metrics.body;
}

// The process's CPU time so far (user + system), from /proc/PID/stat, in seconds.
double cpu_seconds(pid_t pid) {
  std::string stat = read_file("/proc/" + std::to_string(pid) + "/stat");
  std::istringstream fields(stat.substr(stat.rfind(')') + 2));  // after "pid (comm) "
  std::string field;
  long ticks = 0;
  for (int i = 3; i <= 15 && fields >> field; ++i)
    if (i == 14 || i == 15) ticks += std::stol(field);  // utime, stime (proc(5))
  return static_cast<double>(ticks) / static_cast<double>(::sysconf(_SC_CLK_TCK));
}

// When accept failed for want of file descriptors (EMFILE), the server accepted again at once, failed again
// at once, and logged each time: a core spun for as long as the descriptors were short. Now it pauses between
// tries and says so once, and takes the waiting connections when descriptors are free again.
TEST_F(HostileServer, OutOfFileDescriptorsTheAcceptLoopPausesInsteadOfSpinning) {
  start();
  HttpClient kept;  // opened before the limit: keeps working through the episode
  ASSERT_EQ(kept.request("GET", gw_->url("/healthz")).status, 200);
  std::set<int> open;
  for (const auto& entry : fs::directory_iterator("/proc/" + std::to_string(gw_->pid()) + "/fd"))
    open.insert(std::stoi(entry.path().filename().string()));
  int lowest_free = 0;
  while (open.count(lowest_free)) ++lowest_free;
  rlimit old{};
  ASSERT_EQ(::prlimit(gw_->pid(), RLIMIT_NOFILE, nullptr, &old), 0);
  rlimit low = old;
  low.rlim_cur = static_cast<rlim_t>(lowest_free);  // a new descriptor takes the lowest free number: none fits
  ASSERT_EQ(::prlimit(gw_->pid(), RLIMIT_NOFILE, &low, nullptr), 0);

  std::vector<std::unique_ptr<RawConnection>> waiting;
  for (int i = 0; i < 8; ++i) {
    waiting.push_back(std::make_unique<RawConnection>(gw_->port()));  // the kernel queues them: connect succeeds
    waiting.back()->send(kHealthz);
  }
  ASSERT_TRUE(eventually([&] { return gw_->stderr_text().find("accept failed") != std::string::npos; }))
      << "the limit did not bite";
  // Not a measure of speed: a spinning accept loop burns a whole core (2 s of CPU in 2 s); pausing, almost none.
  double before = cpu_seconds(gw_->pid());
  std::this_thread::sleep_for(std::chrono::seconds(2));
  double used = cpu_seconds(gw_->pid()) - before;
  EXPECT_LT(used, 0.4) << "CPU seconds used in 2 s while out of file descriptors";
  EXPECT_EQ(kept.request("GET", gw_->url("/healthz")).status, 200) << "open connections keep working";

  ASSERT_EQ(::prlimit(gw_->pid(), RLIMIT_NOFILE, &old, nullptr), 0);
  for (auto& c : waiting)
    EXPECT_EQ(c->exchange("").rfind("HTTP/1.1 200", 0), 0u) << "a queued connection is taken";
  std::string log = gw_->stderr_text();
  size_t first = log.find("accept failed");
  EXPECT_EQ(log.find("accept failed", first + 1), std::string::npos) << "one line per episode:\n" << log.substr(0, 2000);
}

// Every WAL read lock of a SQLite database (bytes 123..127 of its -shm file: WAL_READ_LOCK(0..4) in SQLite's
// wal.c), held by this process as another program could hold them. While they are held, each read transaction
// the gateway begins fails (SQLITE_PROTOCOL, after SQLite's own retries of about 10 s), and so does each write.
class WalReadLocks {
 public:
  explicit WalReadLocks(const std::string& shm_path) : fd_(::open(shm_path.c_str(), O_RDWR)) {}
  ~WalReadLocks() {
    if (fd_ >= 0) ::close(fd_);
  }
  bool take() { return set(F_WRLCK); }
  bool release() { return set(F_UNLCK); }

 private:
  bool set(short type) {
    struct flock lock {};
    lock.l_type = type;
    lock.l_whence = SEEK_SET;
    lock.l_start = 123;
    lock.l_len = 5;
    return fd_ >= 0 && ::fcntl(fd_, F_SETLKW, &lock) == 0;
  }
  int fd_;
};

// A store read that threw (SQLITE_BUSY, an I/O error, no file descriptor left) ended the process from the
// dispatcher's claim loop, and cost HTTP requests a 500. Now a request that needs the store gets 503 with
// Retry-After, /metrics still answers, the claim loop logs, counts, pauses and goes on, and once the store
// can be read again messages are delivered.
TEST_F(HostileServer, AStoreThatCannotBeReadCostsAnswersNotTheProcess) {
  start();
  ASSERT_EQ(gw_->post_json(http_, "/v1/messages", sample_message("before-1")).status, 202);
  ASSERT_TRUE(eventually([&] { return state_of(*gw_, http_, "before-1") == "delivered"; }));
  WalReadLocks locks(gw_->data_dir() + "/tayori.db-shm");
  ASSERT_TRUE(locks.take());

  auto scrape = std::async(std::launch::async, [&] {
    HttpClient own;
    return own.request("GET", gw_->url("/metrics"));
  });
  HttpResult read = gw_->get(http_, "/v1/messages/before-1");
  EXPECT_EQ(read.status, 503) << read.body;
  EXPECT_EQ(read.headers["retry-after"], "1");
  EXPECT_EQ(read.headers["content-type"], "application/problem+json");
  EXPECT_NE(read.body.find("the store could not be read"), std::string::npos) << read.body;
  EXPECT_EQ(scrape.get().status, 200) << "a scrape answers with what it has";

  std::optional<int> ended;
  ASSERT_TRUE(eventually(
      [&] {
        if (!ended) ended = gw_->wait_exit(std::chrono::milliseconds(0));
        return ended || gw_->stderr_text().find("dispatcher: claiming due messages failed") != std::string::npos;
      },
      std::chrono::seconds(60)));
  ASSERT_FALSE(ended.has_value()) << "the gateway ended with status " << *ended;

  ASSERT_TRUE(locks.release());
  ASSERT_EQ(gw_->post_json(http_, "/v1/messages", sample_message("after-1")).status, 202);
  EXPECT_TRUE(eventually([&] { return state_of(*gw_, http_, "after-1") == "delivered"; }, std::chrono::seconds(30)));
  std::string metrics = http_.request("GET", gw_->url("/metrics")).body;
  EXPECT_NE(metrics.find(R"(tayori_thread_errors_total{thread="dispatcher"})"), std::string::npos) << metrics;
}

// The value of a counter series in a /metrics text ("name{labels} value"); -1 when absent.
double metric_value(const std::string& metrics, const std::string& series) {
  size_t at = metrics.find(series + " ");
  return at == std::string::npos ? -1 : std::stod(metrics.substr(at + series.size() + 1));
}

// PUT .../consent committed one record per fsync, with an HTTP thread waiting for each commit, and a failure
// part-way kept the records before it. Now one PUT is one store operation: one group commit, all or none.
TEST(HostileConsent, APutOfSeveralRecordsIsOneCommitAndAnInvalidRecordStoresNone) {
  TempDir dir;
  Gateway gw(dir, default_channels(dir), "", "enabled: false");  // no claims: the only commits are the PUT's
  gw.start();
  HttpClient http;
  auto record = [](const std::string& channel, const std::string& purpose, const std::string& state) {
    return Json{{"channel", channel}, {"purpose", purpose}, {"state", state}, {"source", "web_form"}};
  };
  Json invalid = {{"consent", {record("email", "marketing", "opted_in"), record("sms", "marketing", "opted_in"),
                               record("email", "transactional", "maybe")}}};
  HttpResult refused = gw.put_json(http, "/v1/recipients/r-1/consent", invalid);
  EXPECT_EQ(refused.status, 400) << refused.body;
  EXPECT_NE(refused.body.find(R"("pointer":"/consent/2/state")"), std::string::npos) << refused.body;
  EXPECT_EQ(gw.get(http, "/v1/recipients/r-1/consent/history").json()["history"].size(), 0u);

  auto commits = [&] {
    return metric_value(http.request("GET", gw.url("/metrics")).body, R"(tayori_store_writes_total{unit="commits"})");
  };
  double before = commits();
  Json valid = {{"consent", {record("email", "marketing", "opted_in"), record("sms", "marketing", "opted_in"),
                             record("email", "transactional", "opted_out")}}};
  HttpResult stored = gw.put_json(http, "/v1/recipients/r-1/consent", valid);
  ASSERT_EQ(stored.status, 200) << stored.body;
  EXPECT_EQ(commits() - before, 1) << "three records, one commit";
  EXPECT_EQ(gw.get(http, "/v1/recipients/r-1/consent/history").json()["history"].size(), 3u);
  // Named, since a range-for over a member of a temporary iterates what its destructor already freed.
  Json answer = stored.json();
  for (const Json& c : answer["consent"])
    if (c["channel"] == "sms" && c["purpose"] == "marketing") {
      EXPECT_EQ(c["state"], "opted_in") << c.dump();
    }
}

}  // namespace
}  // namespace tayori::testing
