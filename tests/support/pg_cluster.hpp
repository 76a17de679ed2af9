// A throw-away PostgreSQL cluster for tests (unit, integration, fault): initdb into a fresh temp folder,
// a server on a unix socket in it and no TCP, removed with everything in it at the end.
//
//   tayori::testing::PgCluster& pg = tayori::testing::shared_pg_cluster();  // one per test process
//   std::string uri = pg.create_database("claims");                        // a fresh database
//   pg.restart();                                                            // PostgreSQL restarts under load
//
// - initdb and pg_ctl come from $TAYORI_PG_BINDIR, else PATH, else the newest /usr/lib/postgresql/*/bin
//   (Debian's layout). No PostgreSQL is an error, not a skip: tools/setup.sh installs it.
// - initdb refuses to run as root: as root, initdb and the server run as the `postgres` user (Debian's
//   package creates it), which owns the temp folder.
// - Speed over durability: --no-sync, fsync=off (only an OS crash would lose data, and the tests do not
//   survive one anyway). A server killed with the test process is stopped by a watchdog (below), and a
//   server whose folder is gone stops itself within a minute.
// - A test binary links tayori_pg_cluster (tests/CMakeLists.txt): this folder and libpq (create_database,
//   execute).
// - Not thread-safe: one thread starts, stops and restarts it.
#pragma once

#include <fcntl.h>
#include <glob.h>
#include <grp.h>
#include <libpq-fe.h>
#include <pwd.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <filesystem>
#include <fstream>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace tayori::testing {

namespace pg_detail {

namespace fs = std::filesystem;

// The user the cluster runs as: none (this process's) unless we are root.
struct RunAs {
  bool active = false;
  uid_t uid = 0;
  gid_t gid = 0;
};

// The last `lines` lines of a file, or a note that it cannot be read.
inline std::string tail(const std::string& path, size_t lines = 30) {
  std::ifstream in(path);
  if (!in) return "(cannot read " + path + ")\n";
  std::deque<std::string> last;
  for (std::string line; std::getline(in, line);) {
    last.push_back(line);
    if (last.size() > lines) last.pop_front();
  }
  std::string out;
  for (auto& l : last) out += "  | " + l + "\n";
  return out;
}

// Runs `args` (args[0] an absolute path) with stdin from /dev/null and stdout and stderr appended to
// `output`, in `cwd`, as `as`; returns its exit status (128 + the signal when one ended it). Everything is
// built before fork(): the child calls only what is safe between fork() and exec().
// Its own fork and exec, not child_process.hpp's ChildProcess: initdb and pg_ctl refuse to run as root, so the
// child changes user (setgroups, setgid, setuid) between fork and exec, and the watchdog below must outlive
// the test in a session of its own, where a ChildProcess is a child the test owns and stops at its end.
inline int run(const std::vector<std::string>& args, const std::string& output, const RunAs& as,
               const std::string& cwd) {
  std::vector<char*> argv;
  for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  int out = ::open(output.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (out < 0) throw std::runtime_error("cannot open " + output + ": " + std::strerror(errno));
  if (as.active && ::fchown(out, as.uid, as.gid) != 0) {
    // The file may already belong to that user.
  }
  const std::string who = as.active ? " as the postgres user" : "";
  const std::string cannot_cd = "cannot enter " + cwd + who + "\n";
  const std::string cannot_become = "cannot become the postgres user\n";
  const std::string cannot_exec = "cannot execute " + args[0] + who + "\n";
  auto die = [](const std::string& why, int code) {
    ssize_t ignored = ::write(STDERR_FILENO, why.data(), why.size());
    (void)ignored;
    ::_exit(code);
  };
  pid_t pid = ::fork();
  if (pid == 0) {
    int devnull = ::open("/dev/null", O_RDONLY);
    ::dup2(devnull, STDIN_FILENO);
    ::dup2(out, STDOUT_FILENO);
    ::dup2(out, STDERR_FILENO);
    ::close_range(3, ~0U, 0);
    if (as.active && (::setgroups(1, &as.gid) != 0 || ::setgid(as.gid) != 0 || ::setuid(as.uid) != 0))
      die(cannot_become, 126);
    if (::chdir(cwd.c_str()) != 0) die(cannot_cd, 126);
    ::execv(argv[0], argv.data());
    die(cannot_exec, 127);
  }
  ::close(out);
  if (pid < 0) throw std::runtime_error(std::string("fork: ") + std::strerror(errno));
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

inline bool executable(const fs::path& p) { return ::access(p.c_str(), X_OK) == 0; }

// The folder holding initdb and pg_ctl (and the postgres they run).
inline std::string find_bindir() {
  auto has_both = [](const fs::path& dir) { return executable(dir / "initdb") && executable(dir / "pg_ctl"); };
  if (const char* env = std::getenv("TAYORI_PG_BINDIR"); env && *env) {
    if (has_both(env)) return env;
    throw std::runtime_error(std::string("TAYORI_PG_BINDIR=") + env + " holds no initdb and pg_ctl");
  }
  if (const char* path = std::getenv("PATH")) {
    std::string all = path;
    for (size_t start = 0; start <= all.size();) {
      size_t end = all.find(':', start);
      if (end == std::string::npos) end = all.size();
      fs::path dir = all.substr(start, end - start);
      if (!dir.empty() && has_both(dir)) return dir.string();
      start = end + 1;
    }
  }
  glob_t g{};
  std::vector<std::pair<int, std::string>> found;
  if (::glob("/usr/lib/postgresql/*/bin", GLOB_ONLYDIR, nullptr, &g) == 0)
    for (size_t i = 0; i < g.gl_pathc; ++i) {
      fs::path dir = g.gl_pathv[i];
      if (has_both(dir)) found.emplace_back(std::atoi(dir.parent_path().filename().c_str()), dir.string());
    }
  ::globfree(&g);
  if (found.empty())
    throw std::runtime_error(
        "PostgreSQL's initdb and pg_ctl were not found ($TAYORI_PG_BINDIR, PATH, /usr/lib/postgresql/*/bin): "
        "install the postgresql package (tools/setup.sh does)");
  return std::max_element(found.begin(), found.end())->second;
}

// 'text' as a postgresql.conf string / "name" as an SQL identifier.
inline std::string quoted(const std::string& s, char q) {
  std::string out(1, q);
  for (char c : s) {
    if (c == q) out += q;
    out += c;
  }
  return out + q;
}

// `s` for a URI: bytes other than letters, digits, "-._~" (and "/" when `keep_slash`) as %XX.
inline std::string percent_encoded(const std::string& s, bool keep_slash) {
  static const char* kHex = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~' || (keep_slash && c == '/')) {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  return out;
}

}  // namespace pg_detail

class PgCluster {
 public:
  enum class Stop { fast, immediate };  // pg_ctl's shutdown modes: sessions ended cleanly / a crash

  // initdb and start. Throws std::runtime_error naming the log and showing its tail when it cannot.
  PgCluster() {
    namespace fs = std::filesystem;
    bindir_ = pg_detail::find_bindir();
    if (::geteuid() == 0) {
      const passwd* pw = ::getpwnam("postgres");
      if (!pw)
        throw std::runtime_error(
            "running as root, which initdb refuses: a `postgres` user is needed to run the test cluster as "
            "(Debian's postgresql package creates it)");
      as_ = {true, pw->pw_uid, pw->pw_gid};
    }
    std::string tmpl = (fs::temp_directory_path() / "tayori-pg-XXXXXX").string();
    if (::mkdtemp(tmpl.data()) == nullptr) throw std::runtime_error("mkdtemp: " + std::string(std::strerror(errno)));
    root_ = tmpl;
    data_ = root_ + "/data";
    socket_dir_ = root_ + "/sock";
    log_ = root_ + "/postgres.log";
    commands_log_ = root_ + "/commands.log";
    fs::create_directory(socket_dir_);
    for (const std::string& p : {root_, socket_dir_})
      if (as_.active && ::chown(p.c_str(), as_.uid, as_.gid) != 0)
        throw std::runtime_error("chown " + p + ": " + std::strerror(errno));
    try {
      command({bindir_ + "/initdb", "-D", data_, "-A", "trust", "-U", kUser, "--no-sync", "-E", "UTF8", "--locale=C"},
              "initdb");
      std::ofstream conf(data_ + "/postgresql.conf", std::ios::app);
      conf << "\n# tayori::testing::PgCluster: a unix socket only; speed over durability\n"
           << "listen_addresses = ''\n"
           << "port = " << kPort << "\n"
           << "unix_socket_directories = " << pg_detail::quoted(socket_dir_, '\'') << "\n"
           << "fsync = off\nfull_page_writes = off\nsynchronous_commit = off\n";
      conf.close();
      if (!conf) throw std::runtime_error("cannot write " + data_ + "/postgresql.conf");
      start();
    } catch (...) {
      // Keep the logs to read; the data goes.
      if (fs::exists(data_ + "/postmaster.pid"))
        command_status({bindir_ + "/pg_ctl", "-D", data_, "-m", "immediate", "-w", "stop"});
      std::error_code ec;
      fs::remove_all(data_, ec);
      throw;
    }
    start_watchdog();
  }

  ~PgCluster() {
    if (running()) command_status({bindir_ + "/pg_ctl", "-D", data_, "-m", "immediate", "-w", "-s", "stop"});
    if (!keep()) {
      std::error_code ec;
      std::filesystem::remove_all(root_, ec);
    }
    if (watchdog_fd_ >= 0) ::close(watchdog_fd_);
    if (watchdog_pid_ > 0) ::waitpid(watchdog_pid_, nullptr, 0);
  }
  PgCluster(const PgCluster&) = delete;
  PgCluster& operator=(const PgCluster&) = delete;

  // Starts the server and waits until it accepts connections (it may first recover from an immediate stop).
  void start() {
    command({bindir_ + "/pg_ctl", "-D", data_, "-l", log_, "-w", "-t", "60", "-s", "start"}, "pg_ctl start");
  }
  // Stops it: `fast` ends the sessions (they see SQLSTATE 57P01) and checkpoints; `immediate` is a crash.
  void stop(Stop how = Stop::fast) {
    if (!running()) return;
    command({bindir_ + "/pg_ctl", "-D", data_, "-m", how == Stop::fast ? "fast" : "immediate", "-w", "-t", "60", "-s",
             "stop"},
            "pg_ctl stop");
  }
  void restart(Stop how = Stop::fast) {
    stop(how);
    start();
  }
  // Whether the server runs (its postmaster.pid names a live process).
  bool running() const {
    std::ifstream pidfile(data_ + "/postmaster.pid");
    long pid = 0;
    return pidfile >> pid && pid > 0 && (::kill(static_cast<pid_t>(pid), 0) == 0 || errno == EPERM);
  }

  // A libpq URI for `database` (socket, port and user given; no password: trust).
  std::string uri(const std::string& database = "postgres") const {
    return "postgresql:///" + pg_detail::percent_encoded(database, false) +
           "?host=" + pg_detail::percent_encoded(socket_dir_, true) + "&port=" + std::to_string(kPort) +
           "&user=" + kUser;
  }
  // Creates an empty database (from template1) and returns its URI.
  std::string create_database(const std::string& name) {
    execute("CREATE DATABASE " + pg_detail::quoted(name, '"'));
    return uri(name);
  }
  void drop_database(const std::string& name) {
    execute("DROP DATABASE IF EXISTS " + pg_detail::quoted(name, '"') + " WITH (FORCE)");
  }
  // A database no earlier call returned in this process: "<prefix>_<n>", lower case.
  std::string fresh_database(std::string prefix = "t") {
    for (char& c : prefix) c = std::isalnum(static_cast<unsigned char>(c)) ? std::tolower(c) : '_';
    return create_database(prefix.substr(0, 40) + "_" + std::to_string(++databases_));
  }

  // Runs parameterless SQL on a connection of its own; returns the first row's first column ("" if none).
  // Throws std::runtime_error with the server's message.
  std::string execute(const std::string& sql, const std::string& database = "postgres") const {
    PGconn* c = PQconnectdb(uri(database).c_str());
    if (PQstatus(c) != CONNECTION_OK) {
      std::string why = PQerrorMessage(c);
      PQfinish(c);
      throw std::runtime_error("cannot connect to the test cluster: " + why);
    }
    PGresult* r = PQexec(c, sql.c_str());
    ExecStatusType st = PQresultStatus(r);
    std::string out, why = PQresultErrorMessage(r);
    if (st == PGRES_TUPLES_OK && PQntuples(r) > 0 && PQnfields(r) > 0) out = PQgetvalue(r, 0, 0);
    PQclear(r);
    PQfinish(c);
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) throw std::runtime_error(sql + ": " + why);
    return out;
  }

  const std::string& socket_dir() const { return socket_dir_; }
  const std::string& data_dir() const { return data_; }
  const std::string& log_path() const { return log_; }
  const std::string& bindir() const { return bindir_; }
  std::string log_tail(size_t lines = 30) const { return pg_detail::tail(log_, lines); }

  static constexpr const char* kUser = "tayori";
  static constexpr int kPort = 5432;  // on its own socket folder: clusters never share it

 private:
  static bool keep() { return std::getenv("TAYORI_KEEP_TEST_DIRS") != nullptr; }

  int command_status(const std::vector<std::string>& args) const {
    return pg_detail::run(args, commands_log_, as_, root_);
  }
  void command(const std::vector<std::string>& args, const std::string& what) const {
    int status = command_status(args);
    if (status == 0) return;
    throw std::runtime_error("PostgreSQL test cluster: " + what + " failed (exit " + std::to_string(status) +
                             ").\nIts output (" + commands_log_ + "):\n" + pg_detail::tail(commands_log_) +
                             "The server's log (" + log_ + "):\n" + pg_detail::tail(log_));
  }

  // A process of its own session that outlives this one: when this process ends without the destructor
  // (a crash, a test runner's SIGKILL), its end of the pipe closes, and the watchdog stops the server
  // (SIGQUIT, an immediate shutdown) and removes the folder. The paths are arguments, not shell text.
  void start_watchdog() {
    static const char* kScript =
        "cat >/dev/null\n"
        "pid=$(head -n 1 \"$2/postmaster.pid\" 2>/dev/null)\n"
        "if [ -n \"$pid\" ] && kill -QUIT \"$pid\" 2>/dev/null; then\n"
        "  n=0; while [ -f \"$2/postmaster.pid\" ] && [ $n -lt 100 ]; do sleep 0.1; n=$((n + 1)); done\n"
        "fi\n"
        "[ \"$3\" = keep ] || rm -rf -- \"$1\"\n";
    std::vector<std::string> args = {
        "/bin/sh", "-c", kScript, "tayori-pg-watchdog", root_, data_, keep() ? "keep" : "remove"};
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) return;  // no watchdog: the destructor still cleans up
    pid_t pid = ::fork();
    if (pid == 0) {
      ::dup2(fds[0], STDIN_FILENO);
      int devnull = ::open("/dev/null", O_WRONLY);
      ::dup2(devnull, STDOUT_FILENO);
      ::dup2(devnull, STDERR_FILENO);
      ::close_range(3, ~0U, 0);
      ::setsid();  // a test runner that kills the process group leaves it
      ::execv(argv[0], argv.data());
      ::_exit(127);
    }
    ::close(fds[0]);
    if (pid < 0) {
      ::close(fds[1]);
      return;
    }
    watchdog_fd_ = fds[1];
    watchdog_pid_ = pid;
  }

  std::string bindir_, root_, data_, socket_dir_, log_, commands_log_;
  pg_detail::RunAs as_;
  int databases_ = 0;
  int watchdog_fd_ = -1;
  pid_t watchdog_pid_ = -1;
};

// The cluster of this test process, started at the first call (and again at the next call when starting
// failed, so that every test using it fails with the reason). Stopped and removed at exit.
inline PgCluster& shared_pg_cluster() {
  static PgCluster cluster;
  return cluster;
}

}  // namespace tayori::testing
