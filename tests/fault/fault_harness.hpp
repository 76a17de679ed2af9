// Helpers of the fault suite (tests/fault): sizes from the environment, a printed seed, the gateway's pid and
// resident memory, /metrics samples, channel YAML pointed at tayori-sim, and the simulator's request record
// grouped by message. Builds on tests/integration's harness (the real binaries over HTTP), never on mocks.
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>

#include <algorithm>
#include <cctype>
#include <cstdint>
#include <iostream>
#include <optional>
#include <random>
#include <regex>
#include <set>
#include <string>
#include <vector>

#include "harness.hpp"
#include "pg_cluster.hpp"
#include "sim_harness.hpp"

namespace tayori::testing::fault {

// ---- Sizes and randomness ---------------------------------------------------------------------------------------

// A size from the environment (tests/fault/README.md lists them), or `fallback`: the CI default.
// The store section of a gateway on a fresh database `name` of this process's throw-away PostgreSQL cluster
// (the faults that also run on PostgreSQL). The test cluster runs with synchronous_commit off for speed; this
// database commits durably, as a gateway's does, so that an acknowledged message survives the server too.
inline std::string postgres_store(const std::string& name, const std::string& node_id) {
  PgCluster& pg = shared_pg_cluster();
  std::string env = "TAYORI_FAULT_PG_URL_" + name;
  for (char& c : env) c = std::isalnum(static_cast<unsigned char>(c)) ? std::toupper(c) : '_';
  ::setenv(env.c_str(), pg.create_database(name).c_str(), 1);
  pg.execute("ALTER DATABASE " + name + " SET synchronous_commit = on");
  return "store:\n  backend: postgres\n  url_env: " + env + "\n  node_id: " + node_id + "\n";
}

inline int env_int(const char* name, int fallback) {
  const char* v = std::getenv(name);
  if (v == nullptr || *v == '\0') return fallback;
  return std::max(1, std::atoi(v));
}

// TAYORI_FAULT_SEED, or a fresh one; printed either way so that a failing run can be replayed exactly.
inline uint64_t seed(const std::string& test) {
  const char* v = std::getenv("TAYORI_FAULT_SEED");
  uint64_t s = v != nullptr && *v != '\0' ? std::strtoull(v, nullptr, 10) : std::random_device{}();
  std::cout << "[" << test << "] seed " << s << " (replay with TAYORI_FAULT_SEED=" << s << ")\n";
  return s;
}

// ---- The gateway process ---------------------------------------------------------------------------------------

// VmRSS of `pid` in KiB (proc(5)), or -1.
inline long rss_kib(pid_t pid) {
  std::istringstream status(read_file("/proc/" + std::to_string(pid) + "/status"));
  for (std::string line; std::getline(status, line);)
    if (line.rfind("VmRSS:", 0) == 0) return std::atol(line.c_str() + 6);
  return -1;
}

// The value of one sample in a Prometheus text exposition, e.g. `tayori_circuit_state{channel="sms"}`.
inline std::optional<double> metric(const std::string& exposition, const std::string& series) {
  std::istringstream in(exposition);
  for (std::string line; std::getline(in, line);)
    if (line.size() > series.size() && line.rfind(series, 0) == 0 && line[series.size()] == ' ')
      return std::stod(line.substr(series.size() + 1));
  return std::nullopt;
}

inline std::optional<double> circuit_state(const Gateway& gw, HttpClient& http, const std::string& channel) {
  HttpResult r = http.request("GET", gw.url("/metrics"));
  if (r.status != 200) return std::nullopt;
  return metric(r.body, "tayori_circuit_state{channel=\"" + channel + "\"}");
}

// One raw exchange over a fresh TCP connection (for bytes libcurl refuses to send): the status of the
// answer's status line, or -1 when the connection closed without one (the body is not read).
inline HttpResult raw_exchange(int port, const std::string& bytes) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) throw std::runtime_error("socket failed");
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  timeval tv{10, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  std::string answer;
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0 &&
      ::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(bytes.size())) {
    char buf[512];
    for (ssize_t n; answer.find("\r\n") == std::string::npos && (n = ::recv(fd, buf, sizeof buf, 0)) > 0;)
      answer.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  std::smatch m;
  static const std::regex status_line(R"(^HTTP/1\.[01] (\d{3}) )");
  HttpResult r;
  r.status = std::regex_search(answer, m, status_line) ? std::stoi(m[1].str()) : -1;
  if (r.status == -1) r.body = "closed without an answer";
  return r;
}

// ---- Channels on the simulator -----------------------------------------------------------------------------------

// Sets the secrets the channel blocks below name (the YAML holds only the variables' names).
inline void set_channel_secrets() {
  ::setenv("LINE_TOKEN", kLineToken, 1);
  ::setenv("TWILIO_TOKEN", kTwilioToken, 1);
}

// A `line` channel named `name` on the simulator; `extra` adds channel keys (each line indented by 4).
inline std::string line_channel(const Sim& sim, const std::string& name, const std::string& extra = "") {
  return "  - name: " + name + "\n    plugin: line\n" + extra + "    settings:\n      base_url: " + sim.http_base() +
         "\n      channel_access_token_env: LINE_TOKEN\n";
}

// A Twilio SMS channel named `name` on the simulator; Twilio keeps no idempotency key, so a resend is a
// second SMS.
inline std::string sms_channel(const Sim& sim, const std::string& name, const std::string& extra = "") {
  return "  - name: " + name + "\n    plugin: sms_twilio\n    inbound: false\n" + extra +
         "    settings:\n      base_url: " + sim.http_base() + "\n      account_sid: " + kTwilioSid +
         "\n      auth_token_env: TWILIO_TOKEN\n" + "      from: \"+15005550006\"\n";
}

inline constexpr const char* kConsent =
    "policy:\n  consent:\n    defaults:\n      transactional: opted_in\n      marketing: opted_in\n";

// ---- Messages and the simulator's record of them ------------------------------------------------------------

// Message ids here are [a-z0-9-], so the tag survives JSON and form encoding as it is.
inline std::string tag(const std::string& id) { return "tayori-fault-" + id + "-end"; }

// The id tagged in a provider request body, if any.
inline std::optional<std::string> tagged_id(const std::string& body) {
  static const std::regex re("tayori-fault-([a-z0-9-]+?)-end");
  std::smatch m;
  if (!std::regex_search(body, m, re)) return std::nullopt;
  return m[1].str();
}

// A transactional message to `channel` with a recipient of its own (no frequency rule ties messages together),
// its text tagged with the id, padded with `padding` more characters.
inline Json fault_message(const std::string& id, const std::string& channel, size_t padding = 0) {
  return {{"id", id},
          {"recipient", {{"id", "r-" + id}, {"contacts", {{"line", kLineUser}, {"phone", "+819012345678"}}}}},
          {"purpose", "transactional"},
          {"channels", {channel}},
          {"content", {{"text", tag(id) + std::string(padding, 'x')}}}};
}

// One provider request as the simulator recorded it.
struct SimSend {
  int64_t seq = 0;      // the simulator's request id: arrival order
  int64_t time_ms = 0;  // arrival, Unix ms
  std::string retry_key;
};

// The simulator's requests to `provider`, by tagged message id, each list in arrival order.
inline std::map<std::string, std::vector<SimSend>> sends_by_message(Sim& sim, const std::string& provider) {
  std::map<std::string, std::vector<SimSend>> out;
  for (const Json& r : sim.requests(provider)) {
    auto id = tagged_id(r.value("body", ""));
    if (!id) continue;
    out[*id].push_back(
        {r["id"].get<int64_t>(), r["time_ms"].get<int64_t>(), r["headers"].value("x-line-retry-key", "")});
  }
  return out;
}

inline int64_t unix_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

inline bool has_event(const Json& status, const std::string& type) {
  if (!status.contains("events")) return false;
  for (const auto& e : status["events"])
    if (e.value("type", "") == type) return true;
  return false;
}

// Waits until every message in `ids` is delivered (a final state, so each is polled until it gets there);
// returns those that are not after `timeout`.
inline std::vector<std::string> undelivered(const Gateway& gw, const std::set<std::string>& ids,
                                            std::chrono::milliseconds timeout) {
  HttpClient http;
  std::set<std::string> pending = ids;
  eventually(
      [&] {
        for (auto it = pending.begin(); it != pending.end();)
          it = state_of(gw, http, *it) == "delivered" ? pending.erase(it) : std::next(it);
        return pending.empty();
      },
      timeout);
  return {pending.begin(), pending.end()};
}

// "n undelivered, e.g. <id>: <status>" for an assertion message.
inline std::string describe(const Gateway& gw, const std::vector<std::string>& ids) {
  if (ids.empty()) return "none";
  HttpClient http;
  return std::to_string(ids.size()) + " not delivered, e.g. " + ids.front() + ": " +
         gw.get(http, "/v1/messages/" + ids.front()).body;
}

}  // namespace tayori::testing::fault
