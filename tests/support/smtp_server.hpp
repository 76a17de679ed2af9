// A real SMTP server for the tests, written once: tests/support/smtp_server.py (Debian's python3-aiosmtpd) as a
// child process on 127.0.0.1 port 0, storing every message it accepts in a folder, so a test checks what
// actually arrived. Its stdin is a pipe it watches: it exits when the test process goes, even without the
// destructor. For the integration tier only (check_no_servers.sh keeps it out of tests/unit).
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <optional>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "child_process.hpp"

namespace tayori::test {

class SmtpServer {
 public:
  struct Options {
    std::string maildir;             // where the messages go (made when missing)
    std::vector<std::string> flags;  // smtp_server.py's own: --starttls CERT KEY, --reject-rcpt ADDR:CODE, ...
    std::string stderr_path = "";    // where its stderr goes, for failure messages; "" keeps the test's
  };

  // One message as smtp_server.py stored it: a head of "key: value" lines, a blank line, then DATA.
  struct Received {
    std::string from;
    std::vector<std::string> rcpt;
    std::string ehlo;  // the domain the client announced (RFC 5321 §4.1.1.1)
    std::string auth;  // the AUTH user, "" without AUTH
    std::string tls;   // "starttls", "implicit" or "none"
    std::string data;  // DATA as received, dot-stuffing removed
    std::string raw;   // the whole file
  };

  // Debian's interpreter, the one python3-aiosmtpd installs into (a python3 earlier on PATH, such as a pyenv
  // one, may not have it).
  static constexpr const char* kPython = "/usr/bin/python3";

  static bool available() {
    static const bool ok = std::system((std::string(kPython) + " -c 'import aiosmtpd' >/dev/null 2>&1").c_str()) == 0;
    return ok;
  }

  // Starts the server and waits up to 20 s for the port line; started() says whether it came.
  explicit SmtpServer(const Options& options) : maildir_(options.maildir), stderr_path_(options.stderr_path) {
    std::filesystem::create_directories(maildir_);
    std::vector<std::string> argv = {kPython, TAYORI_TEST_SUPPORT_DIR "/smtp_server.py", "--maildir", maildir_};
    argv.insert(argv.end(), options.flags.begin(), options.flags.end());
    ChildProcess::Options spawn;
    spawn.stderr_path = stderr_path_;
    spawn.stdin_pipe = true;
    process_ = ChildProcess(argv, spawn);
    if (auto line = process_.read_line(std::chrono::seconds(20))) port_ = std::atoi(line->c_str());
  }
  SmtpServer(const SmtpServer&) = delete;
  SmtpServer& operator=(const SmtpServer&) = delete;

  bool started() const { return port_ != 0; }
  int port() const { return port_; }
  std::string url(const std::string& scheme = "smtp") const { return scheme + "://127.0.0.1:" + std::to_string(port_); }
  std::string stderr_text() const { return stderr_path_.empty() ? "(stderr not kept)" : read(stderr_path_); }

  // Every message accepted so far, in arrival order.
  std::vector<Received> received() const {
    std::vector<std::string> names;
    for (const auto& e : std::filesystem::directory_iterator(maildir_))
      if (e.path().extension() == ".msg") names.push_back(e.path().string());
    std::sort(names.begin(), names.end());
    std::vector<Received> out;
    for (const auto& name : names) {
      Received r;
      r.raw = read(name);
      const size_t blank = r.raw.find("\n\n");
      r.data = blank == std::string::npos ? r.raw : r.raw.substr(blank + 2);
      std::istringstream head(r.raw.substr(0, blank));
      for (std::string line; std::getline(head, line);) {
        const size_t colon = line.find(": ");
        if (colon == std::string::npos) continue;
        const std::string key = line.substr(0, colon), value = line.substr(colon + 2);
        if (key == "from") r.from = value;
        if (key == "rcpt") r.rcpt.push_back(value);
        if (key == "ehlo") r.ehlo = value;
        if (key == "auth") r.auth = value;
        if (key == "tls") r.tls = value;
      }
      out.push_back(std::move(r));
    }
    return out;
  }

 private:
  static std::string read(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
  }

  std::string maildir_, stderr_path_;
  ChildProcess process_;  // SIGTERM and reaped when the object goes
  int port_ = 0;
};

}  // namespace tayori::test
