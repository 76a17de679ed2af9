// The provider simulator (tayori-sim, tools/simulator) as a child process of a test, written once for every
// test that runs it: listening on 127.0.0.1 port 0, over HTTP/1.1 and, given a certificate, over HTTP/2 on TLS
// too, ready once it has printed where it listens. For the integration tier only (check_no_servers.sh keeps
// it out of tests/unit).
#pragma once

#include <chrono>
#include <fstream>
#include <iterator>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "child_process.hpp"

namespace tayori::test {

class SimProcess {
 public:
  struct Options {
    std::string tls_cert = "";  // with tls_key: an HTTP/2-over-TLS listener as well (--listen-h2)
    std::string tls_key = "";
    std::string stderr_path = "";  // where its stderr goes, shown when it does not start; "" keeps the test's
  };

  SimProcess() = default;
  SimProcess(const std::vector<std::string>& args, const Options& options) { start(args, options); }
  explicit SimProcess(const std::vector<std::string>& args) { start(args, Options()); }

  // Starts tayori-sim with its listeners, then `args`, and waits for one "listening on" line per listener.
  // Throws when it does not come up, with its stderr when that went to a file.
  void start(const std::vector<std::string>& args) { start(args, Options()); }
  void start(const std::vector<std::string>& args, const Options& options) {
    const bool h2 = !options.tls_cert.empty();
    std::vector<std::string> argv = {TAYORI_SIM_BINARY, "--listen", "127.0.0.1:0"};
    if (h2)
      argv.insert(argv.end(),
                  {"--listen-h2", "127.0.0.1:0", "--tls-cert", options.tls_cert, "--tls-key", options.tls_key});
    argv.insert(argv.end(), args.begin(), args.end());
    stderr_path_ = options.stderr_path;
    ChildProcess::Options spawn;
    spawn.stderr_path = stderr_path_;
    process_ = ChildProcess(argv, spawn);
    const std::string prefix = "tayori-sim: listening on ";
    for (int lines = h2 ? 2 : 1; lines > 0; --lines) {
      std::optional<std::string> text = process_.read_line(std::chrono::seconds(20));
      if (!text) throw std::runtime_error("tayori-sim did not start: " + stderr_text());
      const size_t end = text->rfind(prefix, 0) == 0 ? text->find(' ', prefix.size()) : 0;
      const std::string rest = end == std::string::npos ? "" : text->substr(end);
      if (end == 0 || (!rest.empty() && rest != " (h2)"))
        throw std::runtime_error("tayori-sim: unexpected line: " + *text);
      (rest.empty() ? http_ : h2_) = text->substr(prefix.size(), end - prefix.size());
    }
  }

  // SIGTERM and reap; the exit status (or -signal). The destructor does it too.
  int stop() { return process_.stop(); }

  // http://127.0.0.1:PORT and https://127.0.0.1:PORT (the HTTP/2 listener), each followed by `path`.
  std::string url(const std::string& path = "") const { return http_ + path; }
  std::string h2_url(const std::string& path = "") const { return h2_ + path; }

  std::string stderr_text() const {
    if (stderr_path_.empty()) return "(stderr not kept)";
    std::ifstream in(stderr_path_, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
  }

 private:
  ChildProcess process_;  // SIGTERM and reaped when the object goes
  std::string http_, h2_, stderr_path_;
};

}  // namespace tayori::test
