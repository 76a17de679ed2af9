// A program a test starts -- the gateway, tayori-sim, an SMTP or HTTP/2 server -- and what the test needs from
// it, written once: fork and exec with extra environment, stdout into a pipe the test reads line by line with a
// deadline, stderr into a file the test shows when something goes wrong, optionally a stdin pipe whose closing
// tells the child to go, signals, and the reaping, which the destructor does too. Everything the child runs
// between fork() and exec() is prepared before the fork, so the child calls only async-signal-safe functions.
#pragma once

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

extern char** environ;

namespace tayori::test {

class ChildProcess {
 public:
  struct Options {
    std::string stderr_path;  // the child's stderr goes to this file (truncated); "" keeps the test's
    std::string stdout_path;  // the child's stdout goes to this file; "" = a pipe that read_line() reads
    bool stdin_pipe = false;  // the child's stdin is a pipe that close_stdin() (or the end) closes
    std::vector<std::pair<std::string, std::string>> env;  // set in the child's environment, over the test's
  };

  ChildProcess() = default;
  // Starts argv[0] (a path; searched in PATH when it has no '/') with argv. Throws when it cannot be started.
  ChildProcess(const std::vector<std::string>& argv, const Options& options) { start(argv, options); }
  explicit ChildProcess(const std::vector<std::string>& argv) { start(argv, Options()); }
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;
  ChildProcess(ChildProcess&& other) noexcept { *this = std::move(other); }
  ChildProcess& operator=(ChildProcess&& other) noexcept {
    if (this != &other) {
      stop();
      pid_ = std::exchange(other.pid_, -1);
      stdout_fd_ = std::exchange(other.stdout_fd_, -1);
      stdin_fd_ = std::exchange(other.stdin_fd_, -1);
      pending_ = std::move(other.pending_);
    }
    return *this;
  }
  ~ChildProcess() { stop(); }

  // The next line the child writes to stdout, without its line end; nullopt at end of output or once
  // `timeout` has passed.
  std::optional<std::string> read_line(std::chrono::milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
      if (auto nl = pending_.find('\n'); nl != std::string::npos) {
        std::string line = pending_.substr(0, nl);
        pending_.erase(0, nl + 1);
        if (!line.empty() && line.back() == '\r') line.pop_back();
        return line;
      }
      if (stdout_fd_ < 0) return std::nullopt;
      const auto left =
          std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) return std::nullopt;
      pollfd p{stdout_fd_, POLLIN, 0};
      const int ready = ::poll(&p, 1, static_cast<int>(left.count()));
      if (ready < 0 && errno == EINTR) continue;
      if (ready <= 0) return std::nullopt;
      char buf[512];
      const ssize_t n = ::read(stdout_fd_, buf, sizeof buf);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return std::nullopt;
      pending_.append(buf, static_cast<size_t>(n));
    }
  }

  // Sends `sig` without waiting (SIGHUP: reload; SIGTERM: a drain that wait_exit() then reaps).
  void signal(int sig) const {
    if (pid_ > 0) ::kill(pid_, sig);
  }

  // Sends `sig` and reaps the child: its exit status, or -signal; 0 when it was not running.
  int stop(int sig = SIGTERM) {
    if (pid_ <= 0) return 0;
    close_stdin();
    ::kill(pid_, sig);
    int status = 0;
    while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
    }
    return reaped(status);
  }

  // Waits up to `timeout` for the child to exit: its status (or -signal), or nullopt while it still runs.
  std::optional<int> wait_exit(std::chrono::milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (pid_ > 0) {
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) return reaped(status);
      if (std::chrono::steady_clock::now() >= deadline) return std::nullopt;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return std::nullopt;
  }

  // Still running (not exited, or exited and not yet reaped by this object).
  bool running() { return pid_ > 0 && !wait_exit(std::chrono::milliseconds(0)); }

  void close_stdin() {
    if (stdin_fd_ >= 0) ::close(stdin_fd_);
    stdin_fd_ = -1;
  }

  pid_t pid() const { return pid_; }

 private:
  void start(const std::vector<std::string>& args, const Options& options) {
    if (args.empty()) throw std::invalid_argument("ChildProcess: no program");
    std::vector<char*> argv;
    for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    std::vector<std::string> env_strings;
    for (char** e = environ; *e != nullptr; ++e) {
      const std::string entry = *e;
      bool replaced = false;
      for (const auto& [name, value] : options.env) replaced |= entry.rfind(name + "=", 0) == 0;
      if (!replaced) env_strings.push_back(entry);
    }
    for (const auto& [name, value] : options.env) env_strings.push_back(name + "=" + value);
    std::vector<char*> envp;
    for (auto& e : env_strings) envp.push_back(e.data());
    envp.push_back(nullptr);
    const bool search = args[0].find('/') == std::string::npos;

    int out[2] = {-1, -1}, in[2] = {-1, -1};
    if (::pipe2(out, O_CLOEXEC) != 0 || (options.stdin_pipe && ::pipe2(in, O_CLOEXEC) != 0))
      throw std::runtime_error(std::string("ChildProcess: pipe: ") + std::strerror(errno));
    const auto open_for_child = [](const std::string& path) {
      return path.empty() ? -1 : ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    };
    const int err = open_for_child(options.stderr_path);
    const int out_file = open_for_child(options.stdout_path);
    pid_ = ::fork();
    if (pid_ < 0) throw std::runtime_error(std::string("ChildProcess: fork: ") + std::strerror(errno));
    if (pid_ == 0) {
      ::dup2(out_file >= 0 ? out_file : out[1], STDOUT_FILENO);
      if (in[0] >= 0) ::dup2(in[0], STDIN_FILENO);
      if (err >= 0) ::dup2(err, STDERR_FILENO);
      if (search)
        ::execvpe(argv[0], argv.data(), envp.data());
      else
        ::execve(argv[0], argv.data(), envp.data());
      ::_exit(127);
    }
    ::close(out[1]);
    stdout_fd_ = out[0];
    if (in[0] >= 0) {
      ::close(in[0]);
      stdin_fd_ = in[1];
    }
    if (err >= 0) ::close(err);
    if (out_file >= 0) ::close(out_file);
  }

  int reaped(int status) {
    pid_ = -1;
    close_stdin();
    if (stdout_fd_ >= 0) ::close(stdout_fd_);
    stdout_fd_ = -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -WTERMSIG(status);
  }

  pid_t pid_ = -1;
  int stdout_fd_ = -1;
  int stdin_fd_ = -1;
  std::string pending_;  // read from stdout, not yet returned as a line
};

}  // namespace tayori::test
