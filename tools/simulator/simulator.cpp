// tayori-sim — a provider simulator for tests and demos. It speaks just enough of each provider's wire
// format (PROVIDERS.md) to exercise the channel plugins end to end, records every request it receives,
// and takes fault injections over a small control API:
//   POST /_sim/faults   {"status":503,"count":N}  answer the next N provider requests with that status
//   GET  /_sim/requests                           every received request: method, path, headers, body
// Provider so far: LINE Messaging API push (POST /v2/bot/message/push).
//
//   tayori-sim --listen 127.0.0.1:0 --line-token TOKEN
#include <signal.h>

#include <cstdio>
#include <cstring>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>
#include <string>

#include "api/http_server.hpp"

namespace {

using tayori::api::HttpRequest;
using tayori::api::HttpResponse;
using nlohmann::json;

HttpResponse reply(int status, const json& body) {
  HttpResponse r;
  r.status = status;
  r.body = body.dump();
  return r;
}

bool is_line_user_id(const json& to) {
  if (!to.is_string()) return false;
  const std::string& s = to.get_ref<const std::string&>();
  if (s.size() != 33 || s[0] != 'U') return false;
  for (size_t i = 1; i < s.size(); ++i)
    if (!std::isxdigit(static_cast<unsigned char>(s[i]))) return false;
  return true;
}

class Simulator final : public tayori::api::Handler {
 public:
  explicit Simulator(std::string line_token) : line_token_(std::move(line_token)) {}

  void handle(HttpRequest request, tayori::api::Responder respond) override { respond(answer(request)); }

 private:
  // Request handling is a plain function of the request (and the simulator's recorded state).
  HttpResponse answer(const HttpRequest& req) {
    std::lock_guard lock(mutex_);
    if (req.path == "/_sim/requests" && req.method == "GET") return reply(200, received_);
    if (req.path == "/_sim/faults" && req.method == "POST") {
      auto j = json::parse(req.body, nullptr, false);
      if (!j.is_object() || !j.contains("status") || !j["status"].is_number_integer())
        return reply(400, {{"message", "expected {\"status\":N,\"count\":N}"}});
      fault_status_ = j["status"].get<int>();
      fault_count_ = j.value("count", 1);
      return reply(200, json::object());
    }
    json headers = json::object();
    for (const auto& [k, v] : req.headers) headers[k] = v;
    received_.push_back({{"method", req.method}, {"path", req.path}, {"headers", headers}, {"body", req.body}});
    if (fault_count_ > 0) {
      --fault_count_;
      return reply(fault_status_, {{"message", "injected fault"}});
    }
    if (req.path == "/v2/bot/message/push" && req.method == "POST") return line_push(req);
    return reply(404, {{"message", "Not found"}});
  }

  HttpResponse line_push(const HttpRequest& req) {
    if (req.header("authorization") != "Bearer " + line_token_)
      return reply(401, {{"message", "Authentication failed. Confirm that the access token in the authorization "
                                     "header is valid."}});
    auto body = json::parse(req.body, nullptr, false);
    if (!body.is_object()) return reply(400, {{"message", "The request body has 1 error(s)"},
                                              {"details", {{{"message", "Invalid JSON"}, {"property", ""}}}}});
    if (!is_line_user_id(body.contains("to") ? body["to"] : json()))
      return reply(400, {{"message", "The request body has 1 error(s)"},
                         {"details", {{{"message", "Invalid user ID"}, {"property", "to"}}}}});
    const json messages = body.contains("messages") ? body["messages"] : json();
    if (!messages.is_array() || messages.empty() || messages.size() > 5)
      return reply(400, {{"message", "The request body has 1 error(s)"},
                         {"details", {{{"message", "Size must be between 1 and 5"}, {"property", "messages"}}}}});
    std::string key(req.header("x-line-retry-key"));
    if (!key.empty() && !accepted_keys_.insert(key).second)
      return reply(409, {{"message", "The retry key is already accepted"}});
    json sent = json::array();
    for (size_t i = 0; i < messages.size(); ++i) {
      std::string id = std::to_string(++next_message_id_);
      sent.push_back({{"id", id}, {"quoteToken", "sim-quote-" + id}});
    }
    return reply(200, {{"sentMessages", sent}});
  }

  std::string line_token_;
  std::mutex mutex_;
  json received_ = json::array();
  std::set<std::string> accepted_keys_;
  long long next_message_id_ = 100000000000000;
  int fault_status_ = 0;
  int fault_count_ = 0;
};

int usage() {
  std::fprintf(stderr, "usage: tayori-sim --listen HOST:PORT [--line-token TOKEN]\n");
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  std::string listen = "127.0.0.1:0", line_token = "sim-line-token";
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--listen" && i + 1 < argc) listen = argv[++i];
    else if (a == "--line-token" && i + 1 < argc) line_token = argv[++i];
    else return usage();
  }
  size_t colon = listen.rfind(':');
  if (colon == std::string::npos) return usage();
  std::string host = listen.substr(0, colon);
  int port = 0;
  try {
    port = std::stoi(listen.substr(colon + 1));
  } catch (const std::exception&) {
    return usage();
  }
  // Block the stop signals before the server's threads start, so only sigwait below receives them.
  sigset_t stop;
  sigemptyset(&stop);
  sigaddset(&stop, SIGINT);
  sigaddset(&stop, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop, nullptr);

  Simulator sim(line_token);
  tayori::api::HttpServer server(sim, tayori::api::ServerLimits{}, 2);
  uint16_t bound = 0;
  try {
    bound = server.start(host, static_cast<uint16_t>(port));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "tayori-sim: cannot listen on %s: %s\n", listen.c_str(), e.what());
    return 1;
  }
  std::printf("tayori-sim: listening on http://%s:%u\n", host.c_str(), bound);
  std::fflush(stdout);
  int sig = 0;
  sigwait(&stop, &sig);
  server.stop(1000);
  return 0;
}
