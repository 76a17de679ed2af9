// Test harness for integration tests: runs the real `tayori` binary on port 0 against a config written
// to a temp folder, and talks to it over HTTP with libcurl. No mocks: the same binary operators run.
#pragma once

#include <curl/curl.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <optional>
#include <nlohmann/json.hpp>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "child_process.hpp"
#include "eventually.hpp"  // eventually(): waiting on asynchronous delivery

namespace tayori::testing {

using Json = nlohmann::json;
namespace fs = std::filesystem;

inline const char* kApiKey = "integration-test-key-0123456789";

// A fresh folder per test, removed at the end unless TAYORI_KEEP_TEST_DIRS is set.
class TempDir {
 public:
  TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "tayori-it-XXXXXX").string();
    if (::mkdtemp(tmpl.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
    path_ = tmpl;
  }
  ~TempDir() {
    if (std::getenv("TAYORI_KEEP_TEST_DIRS") == nullptr) {
      std::error_code ec;
      fs::remove_all(path_, ec);
    }
  }
  const fs::path& path() const { return path_; }
  std::string file(const std::string& name) const { return (path_ / name).string(); }

 private:
  fs::path path_;
};

inline std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

inline void write_file(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
}

// Each line of a JSON-lines file, parsed.
inline std::vector<Json> read_jsonl(const std::string& path) {
  std::vector<Json> out;
  std::istringstream in(read_file(path));
  for (std::string line; std::getline(in, line);)
    if (!line.empty()) out.push_back(Json::parse(line));
  return out;
}

struct HttpResult {
  long status = 0;
  std::string body;
  std::map<std::string, std::string> headers;  // lower-case names
  Json json() const { return Json::parse(body, nullptr, false); }
};

// Makes `curl` append the response body to `body` and record its header fields in `headers` (names lower-cased,
// the status line skipped; a repeated name keeps its last value).
inline void collect_response(CURL* curl, std::string& body, std::map<std::string, std::string>& headers) {
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, +[](char* p, size_t s, size_t n, void* ud) {
    static_cast<std::string*>(ud)->append(p, s * n);
    return s * n;
  });
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, &body);
  curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, +[](char* p, size_t s, size_t n, void* ud) {
    std::string line(p, s * n);
    auto colon = line.find(':');
    if (colon != std::string::npos && line.rfind("HTTP/", 0) != 0) {
      std::string name = line.substr(0, colon);
      for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      std::string value = line.substr(colon + 1);
      while (!value.empty() && value.front() == ' ') value.erase(0, 1);
      while (!value.empty() && (value.back() == '\r' || value.back() == '\n')) value.pop_back();
      (*static_cast<std::map<std::string, std::string>*>(ud))[name] = value;
    }
    return s * n;
  });
  curl_easy_setopt(curl, CURLOPT_HEADERDATA, &headers);
}

class HttpClient {
 public:
  HttpClient() : curl_(curl_easy_init()) {}
  ~HttpClient() { curl_easy_cleanup(curl_); }
  HttpClient(const HttpClient&) = delete;
  HttpClient& operator=(const HttpClient&) = delete;

  // One request on a kept-alive connection. `headers` are "Name: value" lines.
  HttpResult request(const std::string& method, const std::string& url, const std::string& body = "",
                     const std::vector<std::string>& headers = {}) {
    HttpResult result;
    curl_easy_reset(curl_);
    curl_easy_setopt(curl_, CURLOPT_URL, url.c_str());
    curl_easy_setopt(curl_, CURLOPT_CUSTOMREQUEST, method.c_str());
    curl_easy_setopt(curl_, CURLOPT_TIMEOUT_MS, 30000L);
    if (method == "GET") curl_easy_setopt(curl_, CURLOPT_HTTPGET, 1L);
    if (method == "POST" || !body.empty()) {
      curl_easy_setopt(curl_, CURLOPT_POSTFIELDS, body.data());
      curl_easy_setopt(curl_, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body.size()));
    }
    curl_slist* list = nullptr;
    for (const auto& h : headers) list = curl_slist_append(list, h.c_str());
    curl_easy_setopt(curl_, CURLOPT_HTTPHEADER, list);
    collect_response(curl_, result.body, result.headers);
    CURLcode rc = curl_easy_perform(curl_);
    curl_slist_free_all(list);
    if (rc != CURLE_OK) {
      result.status = -1;
      result.body = curl_easy_strerror(rc);
      return result;
    }
    curl_easy_getinfo(curl_, CURLINFO_RESPONSE_CODE, &result.status);
    return result;
  }

 private:
  CURL* curl_;
};

// The channels block most tests use: an email and an sms channel of `plugin` (file_sink, or a fixture that
// takes the same `path` setting), writing FILE_PREFIX-email.jsonl and FILE_PREFIX-sms.jsonl in the test folder.
inline std::string default_channels(const TempDir& dir, const std::string& plugin = "file_sink",
                                    const std::string& file_prefix = "outbox") {
  auto channel = [&](const std::string& name, const std::string& contact) {
    return "  - name: " + name + "\n    plugin: " + plugin + "\n    contact: " + contact +
           "\n    settings:\n      path: " + dir.file(file_prefix + "-" + name + ".jsonl") + "\n";
  };
  return "channels:\n" + channel("email", "email") + channel("sms", "phone");
}

// A running gateway process.
class Gateway {
 public:
  // `extra_yaml` is appended to a base config (api key, plugin dirs); it must supply `channels:`.
  // `dispatcher_yaml` adds keys to the base config's `dispatcher:` block, one "key: value" per line
  // (e.g. "retry_base: 10ms\nworkers: 8"), since that block cannot appear twice in the YAML.
  Gateway(const TempDir& dir, const std::string& extra_yaml, const std::string& data_dir = "",
          const std::string& dispatcher_yaml = "")
      : dir_(dir), data_dir_(data_dir.empty() ? dir.file("data") : data_dir) {
    config_path_ = dir.file("gateway.yaml");
    std::string dispatcher = "dispatcher:\n  poll_interval: 50ms\n";
    std::istringstream lines(dispatcher_yaml);
    for (std::string line; std::getline(lines, line);)
      if (!line.empty()) dispatcher += "  " + line + "\n";
    write_file(config_path_, "api_keys:\n  - name: it\n    key_env: TAYORI_API_KEY\n"
                             "plugin_dirs: [" TAYORI_PLUGIN_DIR ", " TAYORI_FIXTURE_DIR "]\n" +
                                 dispatcher + extra_yaml);
  }
  ~Gateway() { stop(SIGKILL); }

  // More API keys beside "it" (YAML list entries such as "  - {name: a, key_env: A, scopes: [send]}\n"),
  // before start(). Their variables come from this process's environment, which the gateway inherits.
  void add_api_keys(const std::string& entries) {
    const std::string head = "api_keys:\n";
    write_file(config_path_, head + entries + read_file(config_path_).substr(head.size()));
  }

  // Starts the binary and waits for its "listening on" line. Throws (with its stderr) when it does not come up.
  void start() {
    stderr_path_ = dir_.file("gateway-" + std::to_string(++starts_) + ".stderr");
    test::ChildProcess::Options options;
    options.stderr_path = stderr_path_;
    options.env = {{"TAYORI_API_KEY", kApiKey}};
    process_ = test::ChildProcess(
        {TAYORI_BINARY, "serve", "--config", config_path_, "--listen", "127.0.0.1:0", "--data-dir", data_dir_},
        options);
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    const std::string marker = "listening on http://127.0.0.1:";
    while (auto line = process_.read_line(
               std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now()))) {
      if (auto at = line->find(marker); at != std::string::npos) {
        port_ = std::stoi(line->substr(at + marker.size()));
        return;
      }
    }
    stop(SIGKILL);
    throw std::runtime_error("gateway did not start; stderr:\n" + read_file(stderr_path_));
  }

  // Sends `sig` and reaps the process; returns its exit status (or -signal).
  int stop(int sig = SIGTERM) { return process_.stop(sig); }
  // Sends `sig` without waiting (SIGHUP reloads; SIGTERM starts a drain that wait_exit() then reaps).
  void signal(int sig) const { process_.signal(sig); }
  // Waits up to `timeout` for the process to exit; its status (or -signal), or nullopt if still running.
  std::optional<int> wait_exit(std::chrono::milliseconds timeout) { return process_.wait_exit(timeout); }
  pid_t pid() const { return process_.pid(); }
  const std::string& config_path() const { return config_path_; }

  std::string url(const std::string& path) const { return "http://127.0.0.1:" + std::to_string(port_) + path; }
  int port() const { return port_; }
  std::string stderr_text() const { return read_file(stderr_path_); }
  const std::string& data_dir() const { return data_dir_; }

  HttpResult post_json(HttpClient& c, const std::string& path, const Json& body) const {
    return c.request("POST", url(path), body.dump(),
                     {"Authorization: Bearer " + std::string(kApiKey), "Content-Type: application/json"});
  }
  HttpResult put_json(HttpClient& c, const std::string& path, const Json& body) const {
    return c.request("PUT", url(path), body.dump(),
                     {"Authorization: Bearer " + std::string(kApiKey), "Content-Type: application/json"});
  }
  HttpResult get(HttpClient& c, const std::string& path) const {
    return c.request("GET", url(path), "", {"Authorization: Bearer " + std::string(kApiKey)});
  }
  HttpResult del(HttpClient& c, const std::string& path) const {
    return c.request("DELETE", url(path), "", {"Authorization: Bearer " + std::string(kApiKey)});
  }

 private:
  const TempDir& dir_;
  std::string data_dir_;
  std::string config_path_;
  std::string stderr_path_;
  int starts_ = 0;
  test::ChildProcess process_;
  int port_ = 0;
};

inline Json sample_message(const std::string& id, const std::string& channel = "email") {
  return {{"id", id},
          {"recipient",
           {{"id", "r-" + id}, {"locale", "ja-JP"}, {"timezone", "Asia/Tokyo"},
            {"contacts", {{"email", "hanako@example.jp"}, {"phone", "+819012345678"}}}}},
          {"purpose", "transactional"},
          {"category", "order"},
          {"channels", {channel}},
          {"content", {{"subject", "ご注文ありがとうございます"}, {"text", "注文番号 " + id}}}};
}

inline std::string state_of(const Gateway& gw, HttpClient& c, const std::string& id) {
  HttpResult r = gw.get(c, "/v1/messages/" + id);
  if (r.status != 200) return "http-" + std::to_string(r.status);
  return r.json().value("state", "");
}

// Waits until every message of `ids` is in `state`; on timeout, the first one that is not (its status JSON),
// else "".
template <class Ids>
std::string await_all(const Gateway& gw, HttpClient& c, const Ids& ids, const std::string& state,
                      std::chrono::milliseconds timeout = std::chrono::seconds(60)) {
  std::string straggler;
  eventually(
      [&] {
        for (const auto& id : ids)
          if (state_of(gw, c, id) != state) {
            straggler = id;
            return false;
          }
        straggler.clear();
        return true;
      },
      timeout);
  return straggler.empty() ? "" : gw.get(c, "/v1/messages/" + straggler).body;
}

}  // namespace tayori::testing
