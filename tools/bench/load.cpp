// tayori_load — a load generator for POST /v1/messages, closed-loop, or paced (--rate).
//
// --concurrency keep-alive HTTP/1.1 connections, each with one request in flight, share a counter of requests
// to send. Closed-loop (the default), a connection sends its next request as soon as its answer is in. Paced
// (--rate R), request n of a phase is due R-th fractions of a second after the phase began, n / R seconds, and
// a free connection waits for it; its latency counts from that time, not from when a connection was free to
// send it, so a gateway that falls behind shows the wait its clients would see (a closed loop slows down with
// the server and hides it: coordinated omission). Every request carries one message (--batch 1: the message object is
// the body) or --batch N messages
// ({"messages":[...]}), each with an id unique to the run (--id-prefix) and a contact of the kind the channel
// takes (--contact), unique per message within the run.
// The time of each request (send to full answer) is recorded; the run prints one result line:
// requests, messages, wall seconds, requests/s, messages/s and p50/p90/p99/max latency in ms.
// Every answer must be a 202 that accepted every message; anything else is counted by status, reported
// on stderr and makes the exit status 1.
//
// The generator shares the machine's cores with the gateway it measures, so it spends as little as it can:
// one thread drives every connection from one epoll set (a thread per connection, each in libcurl's blocking
// easy interface, cost about 80 us of CPU per request, more than the gateway's own intake), and bodies are
// written as text, not built as JSON values first.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "transport/http1_wire.hpp"

namespace {

using Clock = std::chrono::steady_clock;
namespace transport = tayori::transport;
using nlohmann::json;

const char* kUsage =
    "usage: tayori_load --url http://HOST:PORT [options]\n"
    "  --key KEY          API key (default: $TAYORI_API_KEY)\n"
    "  --concurrency N    worker threads, one keep-alive connection each (default 4)\n"
    "  --requests N       measured HTTP requests in total (default 1000)\n"
    "  --batch N          messages per request: 1 = one message object, >1 = {\"messages\":[...]} (default 1)\n"
    "  --id-prefix P      prefix of the message ids, must be unique per run (default: load-<time>-<pid>)\n"
    "  --warmup N         requests sent before measuring, not counted (default 0)\n"
    "  --channel NAME     channel each message asks for (default email)\n"
    "  --contact KIND     the recipient's contact: email (default), phone, line, push.fcm, push.apns\n"
    "  --recipients P     prefix of the recipient ids (and email addresses): P-0 to P-99999 (default user)\n"
    "  --purpose P        transactional (default) or marketing (consent, quiet hours and caps apply)\n"
    "  --same-content     every message says the same (a batching channel may carry them in one request)\n"
    "  --random-ids       each id carries 16 hex digits drawn from its number after the prefix, so ids come in\n"
    "                     no order, as UUIDs do (default: prefix, phase, request and position, in order)\n"
    "  --rate R           paced: R requests per second, each timed from when it was due (default: closed loop)\n"
    "  --timeout-ms N     per-request time limit (default 30000)\n"
    "  --json             print the result as one JSON object instead of a key=value line\n";

struct Options {
  std::string url;
  std::string key;
  int concurrency = 4;
  long requests = 1000;
  int batch = 1;
  std::string id_prefix;
  long warmup = 0;
  std::string channel = "email";
  std::string contact = "email";
  std::string recipients = "user";
  std::string purpose = "transactional";
  bool same_content = false;
  bool random_ids = false;
  long rate = 0;  // requests per second; 0: closed loop
  long timeout_ms = 30'000;
  bool json = false;
};

[[noreturn]] void usage_error(const std::string& message) {
  std::cerr << "tayori_load: " << message << "\n" << kUsage;
  std::exit(64);
}

long to_long(const std::string& flag, const std::string& text, long min) {
  char* end = nullptr;
  errno = 0;
  long v = std::strtol(text.c_str(), &end, 10);
  if (text.empty() || *end != '\0' || errno != 0 || v < min)
    usage_error(flag + " needs an integer >= " + std::to_string(min) + ", not \"" + text + "\"");
  return v;
}

Options parse_options(int argc, char** argv) {
  Options o;
  if (const char* k = std::getenv("TAYORI_API_KEY")) o.key = k;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) usage_error(a + " needs a value");
      return argv[++i];
    };
    if (a == "--url")
      o.url = value();
    else if (a == "--key")
      o.key = value();
    else if (a == "--concurrency")
      o.concurrency = static_cast<int>(to_long(a, value(), 1));
    else if (a == "--requests")
      o.requests = to_long(a, value(), 1);
    else if (a == "--batch")
      o.batch = static_cast<int>(to_long(a, value(), 1));
    else if (a == "--id-prefix")
      o.id_prefix = value();
    else if (a == "--warmup")
      o.warmup = to_long(a, value(), 0);
    else if (a == "--channel")
      o.channel = value();
    else if (a == "--contact")
      o.contact = value();
    else if (a == "--recipients")
      o.recipients = value();
    else if (a == "--purpose")
      o.purpose = value();
    else if (a == "--same-content")
      o.same_content = true;
    else if (a == "--random-ids")
      o.random_ids = true;
    else if (a == "--rate")
      o.rate = to_long(a, value(), 1);
    else if (a == "--timeout-ms")
      o.timeout_ms = to_long(a, value(), 1);
    else if (a == "--json")
      o.json = true;
    else if (a == "--help" || a == "-h") {
      std::cout << kUsage;
      std::exit(0);
    } else
      usage_error("unknown argument \"" + a + "\"");
  }
  if (o.url.empty()) usage_error("--url is required");
  while (!o.url.empty() && o.url.back() == '/') o.url.pop_back();
  if (o.key.empty()) usage_error("no API key: pass --key or set TAYORI_API_KEY");
  if (o.concurrency > 1024) usage_error("--concurrency is at most 1024");
  if (o.contact != "email" && o.contact != "phone" && o.contact != "line" && o.contact != "push.fcm" &&
      o.contact != "push.apns")
    usage_error("--contact must be email, phone, line, push.fcm or push.apns, not \"" + o.contact + "\"");
  if (o.purpose != "transactional" && o.purpose != "marketing")
    usage_error("--purpose must be transactional or marketing, not \"" + o.purpose + "\"");
  if (o.id_prefix.empty())
    o.id_prefix = "load-" + std::to_string(std::chrono::system_clock::now().time_since_epoch().count()) + "-" +
                  std::to_string(::getpid());
  // Both go into every body: refuse here what JSON cannot carry rather than fail mid-run.
  try {
    json::array({o.id_prefix, o.channel}).dump();
  } catch (const json::exception&) {
    usage_error("--id-prefix and --channel must be UTF-8");
  }
  return o;
}

// `count` 64-bit words as lower-case hex, derived from `n` by SplitMix64's finaliser: a bijection, so the
// first word (and the whole string) differs for every `n`, while looking as random as a real id does.
void append_hex_from(std::string& out, uint64_t n, int count) {
  static constexpr char kDigits[] = "0123456789abcdef";
  for (int i = 0; i < count; ++i) {
    uint64_t z = n + static_cast<uint64_t>(i) * 0x9e3779b97f4a7c15ULL;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    z ^= z >> 31;
    for (int shift = 60; shift >= 0; shift -= 4) out += kDigits[(z >> shift) & 15];
  }
}

// --random-ids: 16 hex digits drawn from message number `n` and a dash, after the id's prefix, so that ids come in
// no order, as an upstream's UUIDs do; nothing without it.
void append_id_disorder(std::string& out, const Options& o, long n) {
  if (!o.random_ids) return;
  append_hex_from(out, static_cast<uint64_t>(n), 1);
  out += '-';
}

// The recipient's contacts as JSON text: one of `kind`, unique to message number `n` of the run, in the shape
// each channel plugin accepts (E.164 phone, LINE user id "U" + 32 hex, APNs device token of 64 hex).
void append_contacts(std::string& out, const std::string& kind, long n, const std::string& recipient) {
  auto u = static_cast<uint64_t>(n);
  if (kind == "phone") {
    char phone[24];
    std::snprintf(phone, sizeof phone, "+8190%08ld", n % 100'000'000);
    out += R"({"phone":")";
    out += phone;
    out += R"("})";
  } else if (kind == "line") {
    out += R"({"line":"U)";
    append_hex_from(out, u, 2);
    out += R"("})";
  } else if (kind == "push.fcm") {
    out += R"({"push":[{"platform":"fcm","token":"load:)";
    append_hex_from(out, u, 2);
    out += R"("}]})";
  } else if (kind == "push.apns") {
    out += R"({"push":[{"platform":"apns","token":")";
    append_hex_from(out, u, 4);
    out += R"("}]})";
  } else {
    out += R"({"email":")" + recipient + R"(@example.jp"})";
  }
}

// The parts of every message that the options fix, as JSON text (the id prefix and channel are the caller's,
// so they are escaped once by nlohmann here).
struct BodyParts {
  std::string id_prefix;  // quoted, without its closing quote
  std::string recipient_prefix;  // escaped, without quotes, ending in "-"
  std::string channel;    // quoted
  std::string purpose;    // quoted
};

BodyParts body_parts(const Options& o) {
  BodyParts p;
  p.id_prefix = json(o.id_prefix + "-").dump();
  p.id_prefix.pop_back();
  p.recipient_prefix = json(o.recipients + "-").dump();
  p.recipient_prefix = p.recipient_prefix.substr(1, p.recipient_prefix.size() - 2);
  p.channel = json(o.channel).dump();
  p.purpose = json(o.purpose).dump();
  return p;
}

// A typical message (transactional unless --purpose says otherwise), about 400 bytes, as nlohmann would write
// it (keys sorted). The content has every field some channel plugin needs: subject and text (email), text (SMS,
// LINE), title and body (FCM, APNs), so one shape suits every channel.
void append_message(std::string& out, const Options& o, const BodyParts& parts, const char* phase, long request, int k,
                    long n) {
  std::string r = std::to_string(n % 100'000);
  std::string text = o.same_content ? std::string("Your order is on its way and should arrive within two days.")
                                    : "Order " + r + " is on its way and should arrive within two days.";
  out += R"({"category":"order","channels":[)";
  out += parts.channel;
  out += R"(],"content":{"body":")";
  out += text;
  out += R"(","subject":"Your order has shipped","text":")";
  out += text;
  out += R"(","title":"Shipped"},"id":)";
  out += parts.id_prefix;
  append_id_disorder(out, o, n);
  out += phase;
  out += std::to_string(request);
  out += '-';
  out += std::to_string(k);
  out += R"(","metadata":{"source":"tayori_load"},"purpose":)";
  out += parts.purpose;
  const std::string recipient = parts.recipient_prefix + r;
  out += R"(,"recipient":{"contacts":)";
  append_contacts(out, o.contact, n, recipient);
  out += R"(,"id":")";
  out += recipient;
  out += R"(","locale":"ja-JP"}})";
}

// The body of request number `request` of `phase`: the message object itself, or {"messages":[...]}.
// Messages are numbered across the run, warm-up first, so no two share a contact.
std::string make_body(const Options& o, const BodyParts& parts, const char* phase, long request) {
  long first = (phase[0] == 'w' ? 0 : o.warmup * o.batch) + request * o.batch;
  std::string out;
  out.reserve(static_cast<size_t>(o.batch) * 480 + 16);
  if (o.batch == 1) {
    append_message(out, o, parts, phase, request, 0, first);
    return out;
  }
  out += R"({"messages":[)";
  for (int k = 0; k < o.batch; ++k) {
    if (k) out += ',';
    append_message(out, o, parts, phase, request, k, first + k);
  }
  out += "]}";
  return out;
}

// The same first message built as a JSON value: the text above must read as it, or the run would measure
// something else than it says (a typo in a key would have every message refused, or accepted without a field).
bool body_reads_as_built(const Options& o, const BodyParts& parts) {
  std::string r = "0";
  std::string text = o.same_content ? std::string("Your order is on its way and should arrive within two days.")
                                    : "Order " + r + " is on its way and should arrive within two days.";
  json contacts;
  if (o.contact == "phone")
    contacts = {{"phone", "+819000000000"}};
  else if (o.contact == "line" || o.contact == "push.fcm" || o.contact == "push.apns") {
    std::string hex;
    append_hex_from(hex, 0, o.contact == "push.apns" ? 4 : 2);
    if (o.contact == "line")
      contacts = {{"line", "U" + hex}};
    else
      contacts = {{"push", json::array({{{"platform", o.contact.substr(5)},
                                         {"token", (o.contact == "push.fcm" ? "load:" : "") + hex}}})}};
  } else {
    contacts = {{"email", o.recipients + "-0@example.jp"}};
  }
  std::string id = o.id_prefix + "-";
  append_id_disorder(id, o, 0);
  json built = {
      {"id", id + "w0-0"},
      {"recipient", {{"id", o.recipients + "-0"}, {"locale", "ja-JP"}, {"contacts", contacts}}},
      {"purpose", o.purpose},
      {"category", "order"},
      {"channels", json::array({o.channel})},
      {"content", {{"subject", "Your order has shipped"}, {"text", text}, {"title", "Shipped"}, {"body", text}}},
      {"metadata", {{"source", "tayori_load"}}}};
  std::string written;
  append_message(written, o, parts, "w", 0, 0, 0);
  return written == built.dump();
}

// How many of the request's messages the answer says were accepted (a duplicate means the id prefix was reused).
long accepted_in(std::string_view answer, int batch) {
  if (batch == 1) return answer.find("\"status\":\"accepted\"") != std::string_view::npos ? 1 : 0;
  // The batch answer's top-level "accepted": N (the per-item statuses are values, never keys).
  auto at = answer.find("\"accepted\":");
  if (at == std::string_view::npos) return 0;
  return std::strtol(std::string(answer.substr(at + 11, 24)).c_str(), nullptr, 10);
}

// An answer larger than this is not the gateway's (a 202 for 1,000 messages is under 100 KB).
constexpr int64_t kMaxAnswerBytes = 16 * 1024 * 1024;

struct Failure {
  long count = 0;
  std::string sample;  // the first answer (or connection error) seen with this key
};

struct Result {
  std::vector<double> latencies_ms;
  std::map<std::string, Failure> failures;  // "503", "connection: refused", "202 not accepting every message"
  long failed_requests = 0;
  long messages_not_accepted = 0;
};

// Where the requests go: http://HOST:PORT[/prefix], resolved once.
struct Endpoint {
  sockaddr_storage address{};
  socklen_t address_length = 0;
  std::string authority;  // the Host header
  std::string path;       // the prefix's path + /v1/messages
};

Endpoint resolve(const std::string& url) {
  static constexpr std::string_view kScheme = "http://";
  if (url.rfind(kScheme, 0) != 0) usage_error("--url must be http://HOST:PORT (tayori_load speaks plain HTTP/1.1)");
  std::string rest = url.substr(kScheme.size());
  size_t slash = rest.find('/');
  Endpoint e;
  e.authority = rest.substr(0, slash);
  e.path = (slash == std::string::npos ? "" : rest.substr(slash)) + "/v1/messages";
  std::string host = e.authority, port = "80";
  if (!host.empty() && host[0] == '[') {  // an IPv6 literal, RFC 3986 §3.2.2
    size_t close = host.find(']');
    if (close == std::string::npos) usage_error("--url has an unclosed IPv6 literal");
    if (close + 1 < host.size() && host[close + 1] == ':') port = host.substr(close + 2);
    host = host.substr(1, close - 1);
  } else if (size_t colon = host.rfind(':'); colon != std::string::npos) {
    port = host.substr(colon + 1);
    host = host.substr(0, colon);
  }
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  if (int rc = ::getaddrinfo(host.c_str(), port.c_str(), &hints, &found); rc != 0 || !found)
    usage_error("--url: cannot resolve " + e.authority + ": " + ::gai_strerror(rc));
  std::memcpy(&e.address, found->ai_addr, found->ai_addrlen);
  e.address_length = found->ai_addrlen;
  ::freeaddrinfo(found);
  return e;
}

// Every connection of the run, driven by one thread: a request is sent whole (one `send` once its connection
// is open) and its answer read as it comes; the connection then takes the next request number.
class Load {
 public:
  Load(const Options& o, Endpoint endpoint, int connections)
      : options_(o), endpoint_(std::move(endpoint)), parts_(body_parts(o)), connections_(connections) {
    epoll_ = ::epoll_create1(EPOLL_CLOEXEC);
    if (epoll_ < 0) throw std::runtime_error(std::string("epoll_create1: ") + std::strerror(errno));
    for (size_t i = 0; i < connections_.size(); ++i) connections_[i].index = static_cast<uint32_t>(i);
  }
  ~Load() {
    for (auto& c : connections_) disconnect(c);
    ::close(epoll_);
  }
  Load(const Load&) = delete;
  Load& operator=(const Load&) = delete;

  // Sends requests 0..count-1 of `phase` ("w" warm-up, "m" measured), `connections` at a time, and returns
  // when each has its answer or its failure; latencies are recorded when `measured`.
  void run(const char* phase, long count, bool measured) {
    phase_ = phase;
    count_ = count;
    measured_ = measured;
    next_ = 0;
    began_ = Clock::now();
    for (auto& c : connections_) restart_.push_back(&c);
    epoll_event events[64];
    auto last_sweep = Clock::now();
    for (;;) {
      // Paced: a waiting connection for each request whose time has come (one each: handing them all the next
      // request, which all but one would put back, cost a pass over every connection per request); none once
      // every request has gone.
      if (next_ >= count_) waiting_.clear();
      while (!waiting_.empty() && Clock::now() >= due(next_)) {
        Connection* c = waiting_.back();
        waiting_.pop_back();
        start_next(*c);
      }
      // Connections whose request failed take their next one here, not inside the failure: a gateway that
      // refuses every connection would otherwise nest a call per request.
      while (!restart_.empty()) {
        Connection* c = restart_.back();
        restart_.pop_back();
        start_next(*c);
      }
      if (in_flight_ == 0 && waiting_.empty()) break;
      // Woken for the next request's time to the microsecond (epoll_pwait2): at thousands of requests per second
      // a millisecond's timer would send them in bursts, and charge each up to a millisecond of its own.
      std::chrono::nanoseconds until = std::chrono::milliseconds(50);  // the timeout sweep's period
      if (!waiting_.empty()) until = std::clamp<std::chrono::nanoseconds>(due(next_) - Clock::now(), {}, until);
      timespec timeout{static_cast<time_t>(until.count() / 1'000'000'000),
                       static_cast<long>(until.count() % 1'000'000'000)};
      int n = ::epoll_pwait2(epoll_, events, 64, &timeout, nullptr);
      if (n < 0 && errno != EINTR) throw std::runtime_error(std::string("epoll_pwait2: ") + std::strerror(errno));
      for (int i = 0; i < n; ++i) {
        // An event for a socket the connection has since closed and replaced is stale: its generation is gone.
        Connection& c = connections_[events[i].data.u64 >> 32];
        if (static_cast<uint32_t>(events[i].data.u64) == c.generation) on_ready(c, events[i].events);
      }
      if (auto now = Clock::now(); now - last_sweep >= std::chrono::milliseconds(50)) {
        last_sweep = now;
        for (auto& c : connections_)
          if (c.busy && now - c.started > std::chrono::milliseconds(options_.timeout_ms))
            fail(c, "timeout", "no answer within --timeout-ms " + std::to_string(options_.timeout_ms));
      }
    }
  }

  Result result;

 private:
  struct Connection {
    uint32_t index = 0;
    uint32_t generation = 0;  // of its socket: one more at each connect
    int fd = -1;
    bool connecting = false;
    bool busy = false;  // a request is in flight
    std::string out;    // the request, and how much of it is sent
    size_t sent = 0;
    // The answer as it comes: the transport's own reader (fuzzed), so Content-Length, chunked and close-delimited
    // bodies, interim answers and keep-alive read as the gateway's client reads them.
    std::optional<transport::Http1ResponseReader> reader;
    Clock::time_point started;
  };

  // When request n of the phase is due: paced, n / rate seconds after the phase began; else at once.
  Clock::time_point due(long n) const {
    if (options_.rate == 0) return began_;
    return began_ + std::chrono::nanoseconds(n * 1'000'000'000 / options_.rate);
  }

  void start_next(Connection& c) {
    while (next_ < count_) {
      Clock::time_point now = Clock::now();
      if (due(next_) > now) {
        waiting_.push_back(&c);  // paced, and the next request's time has not come
        return;
      }
      // A paced request's time is when it was due, so that a wait for a free connection counts.
      Clock::time_point started = options_.rate == 0 ? now : due(next_);
      long n = next_++;
      std::string body = make_body(options_, parts_, phase_, n);
      c.out.clear();
      c.out += "POST " + endpoint_.path + " HTTP/1.1\r\nHost: " + endpoint_.authority +
               "\r\nContent-Type: application/json\r\nAuthorization: Bearer " + options_.key +
               "\r\nContent-Length: " + std::to_string(body.size()) + "\r\n\r\n";
      c.out += body;
      c.sent = 0;
      c.reader.emplace(false, kMaxAnswerBytes);
      c.busy = true;
      ++in_flight_;
      c.started = started;
      if (c.fd < 0) {
        if (std::string error = connect(c); !error.empty()) {
          end_failed(c, error, error);  // the next request tries again
          continue;
        }
      }
      if (!c.connecting) send_some(c);
      return;
    }
  }

  // Opens the connection's socket; the error, or empty.
  std::string connect(Connection& c) {
    c.fd = ::socket(endpoint_.address.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c.fd < 0) return "connection: socket: " + std::string(std::strerror(errno));
    ++c.generation;
    int one = 1;
    ::setsockopt(c.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    int rc = ::connect(c.fd, reinterpret_cast<const sockaddr*>(&endpoint_.address), endpoint_.address_length);
    if (rc < 0 && errno != EINPROGRESS) {
      std::string error = "connection: " + std::string(std::strerror(errno));
      disconnect(c);
      return error;
    }
    c.connecting = rc < 0;
    epoll_event ev{};
    ev.events = EPOLLIN | (c.connecting ? uint32_t{EPOLLOUT} : 0u);
    ev.data.u64 = (static_cast<uint64_t>(c.index) << 32) | c.generation;
    ::epoll_ctl(epoll_, EPOLL_CTL_ADD, c.fd, &ev);
    return {};
  }

  void disconnect(Connection& c) {
    if (c.fd < 0) return;
    ::close(c.fd);  // leaves the epoll set with its last descriptor
    c.fd = -1;
    c.connecting = false;
  }

  void watch_writable(Connection& c, bool on) {
    epoll_event ev{};
    ev.events = EPOLLIN | (on ? uint32_t{EPOLLOUT} : 0u);
    ev.data.u64 = (static_cast<uint64_t>(c.index) << 32) | c.generation;
    ::epoll_ctl(epoll_, EPOLL_CTL_MOD, c.fd, &ev);
  }

  void send_some(Connection& c) {
    while (c.sent < c.out.size()) {
      ssize_t n = ::send(c.fd, c.out.data() + c.sent, c.out.size() - c.sent, MSG_NOSIGNAL);
      if (n > 0) {
        c.sent += static_cast<size_t>(n);
      } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        return watch_writable(c, true);
      } else if (n < 0 && errno == EINTR) {
        continue;
      } else {
        return fail(c, "connection: " + std::string(std::strerror(errno)), "");
      }
    }
  }

  void on_ready(Connection& c, uint32_t events) {
    if (c.fd < 0) return;
    if (c.connecting) {
      if (!(events & (EPOLLOUT | EPOLLERR | EPOLLHUP))) return;
      int error = 0;
      socklen_t length = sizeof error;
      ::getsockopt(c.fd, SOL_SOCKET, SO_ERROR, &error, &length);
      if (error) return fail(c, "connection: " + std::string(std::strerror(error)), "");
      c.connecting = false;
      watch_writable(c, false);
      return send_some(c);
    }
    if ((events & EPOLLOUT) && c.sent < c.out.size()) {
      watch_writable(c, false);
      send_some(c);
      if (c.fd < 0) return;
    }
    if (events & (EPOLLIN | EPOLLERR | EPOLLHUP)) receive(c);
  }

  void receive(Connection& c) {
    char buffer[16384];
    for (;;) {
      ssize_t n = ::recv(c.fd, buffer, sizeof buffer, 0);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
      if (n < 0) return fail(c, "connection: " + std::string(std::strerror(errno)), "");
      if (!c.busy) {
        if (n == 0) return disconnect(c);  // an idle keep-alive connection the server closed
        return fail(c, "connection: bytes with no request", std::string(buffer, static_cast<size_t>(n)));
      }
      if (n == 0)
        c.reader->end_of_stream();
      else
        c.reader->feed(std::string_view(buffer, static_cast<size_t>(n)));
      if (c.reader->state() == transport::Http1ResponseReader::State::Done) return answered(c);
      if (c.reader->state() == transport::Http1ResponseReader::State::Failed)
        return fail(c, n == 0 ? "connection: closed by the server" : "not an HTTP/1.1 answer", c.reader->error_text());
    }
  }

  void answered(Connection& c) {
    auto end = Clock::now();
    bool keep = c.reader->keep_alive();
    transport::Response answer = c.reader->take_response();
    if (measured_) result.latencies_ms.push_back(std::chrono::duration<double, std::milli>(end - c.started).count());
    std::string failure;
    if (answer.status != 202) {
      failure = std::to_string(answer.status);
    } else if (long accepted = accepted_in(answer.body, options_.batch); accepted != options_.batch) {
      failure = "202 not accepting every message";
      result.messages_not_accepted += options_.batch - accepted;
    }
    if (!failure.empty()) count_failure(failure, answer.body.substr(0, 400));
    c.busy = false;
    --in_flight_;
    if (!keep) disconnect(c);
    start_next(c);
  }

  // The request in flight on `c` failed: counted, and the connection closed; the run loop gives it the next
  // request, which opens another.
  void fail(Connection& c, const std::string& failure, const std::string& sample) {
    end_failed(c, failure, sample.empty() ? failure : sample);
    disconnect(c);
    restart_.push_back(&c);
  }

  void end_failed(Connection& c, const std::string& failure, const std::string& sample) {
    if (!c.busy) return;
    if (measured_)
      result.latencies_ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - c.started).count());
    count_failure(failure, sample);
    c.busy = false;
    --in_flight_;
  }

  void count_failure(const std::string& failure, const std::string& sample) {
    ++result.failed_requests;
    Failure& f = result.failures[failure];
    if (f.count++ == 0) f.sample = sample;
  }

  const Options& options_;
  const Endpoint endpoint_;
  const BodyParts parts_;
  std::vector<Connection> connections_;
  std::vector<Connection*> restart_;
  std::vector<Connection*> waiting_;  // paced: free, until the next request is due
  Clock::time_point began_;           // of the phase
  int epoll_ = -1;
  const char* phase_ = "m";
  long count_ = 0, next_ = 0, in_flight_ = 0;
  bool measured_ = false;
};

// `v` rounded to `digits` decimals, for the --json result.
double rounded(double v, int digits) {
  double scale = std::pow(10.0, digits);
  return std::round(v * scale) / scale;
}

double percentile(const std::vector<double>& sorted, double p) {
  if (sorted.empty()) return 0;
  size_t rank = static_cast<size_t>(std::ceil(p * static_cast<double>(sorted.size())));  // nearest rank
  return sorted[std::clamp<size_t>(rank, 1, sorted.size()) - 1];
}

}  // namespace

int main(int argc, char** argv) {
  Options o = parse_options(argc, argv);
  if (!body_reads_as_built(o, body_parts(o))) {
    std::cerr << "tayori_load: the message text written differs from the one built as JSON (a bug in load.cpp)\n";
    return 70;
  }
  int connections = static_cast<int>(std::min<long>(o.concurrency, std::max(o.requests, o.warmup)));
  Load load(o, resolve(o.url), connections);
  // The warm-up ends before the clock starts, so the measured phase begins at full concurrency.
  load.run("w", o.warmup, false);
  Clock::time_point started = Clock::now();
  load.run("m", o.requests, true);
  double seconds = std::chrono::duration<double>(Clock::now() - started).count();

  Result& r = load.result;
  std::vector<double>& latencies = r.latencies_ms;
  std::sort(latencies.begin(), latencies.end());

  long messages = o.requests * o.batch;
  double rps = seconds > 0 ? static_cast<double>(o.requests) / seconds : 0;
  double mps = seconds > 0 ? static_cast<double>(messages) / seconds : 0;
  double p50 = percentile(latencies, 0.50), p90 = percentile(latencies, 0.90), p99 = percentile(latencies, 0.99);
  double max = latencies.empty() ? 0 : latencies.back();

  if (o.json) {
    json by_kind = json::object();
    for (auto& [k, f] : r.failures) by_kind[k] = f.count;
    nlohmann::ordered_json result = {
        {"requests", o.requests},
        {"messages", messages},
        {"batch", o.batch},
        {"concurrency", connections},
        {"warmup", o.warmup},
        {"seconds", rounded(seconds, 3)},
        {"requests_per_s", rounded(rps, 1)},
        {"messages_per_s", rounded(mps, 1)},
        {"latency_ms",
         {{"p50", rounded(p50, 3)}, {"p90", rounded(p90, 3)}, {"p99", rounded(p99, 3)}, {"max", rounded(max, 3)}}},
        {"failed_requests", r.failed_requests},
        {"failures", by_kind}};
    // Failure kinds are status codes and system error texts; replace anything that is not UTF-8 rather than throw.
    std::cout << result.dump(-1, ' ', false, json::error_handler_t::replace) << "\n";
  } else {
    char line[512];
    std::snprintf(line, sizeof line,
                  "tayori_load: requests=%ld messages=%ld batch=%d concurrency=%d seconds=%.3f req_per_s=%.1f "
                  "msg_per_s=%.1f p50_ms=%.3f p90_ms=%.3f p99_ms=%.3f max_ms=%.3f failed=%ld\n",
                  o.requests, messages, o.batch, connections, seconds, rps, mps, p50, p90, p99, max, r.failed_requests);
    std::cout << line;
  }
  std::cout.flush();

  if (r.failed_requests > 0) {
    std::cerr << "tayori_load: " << r.failed_requests << " requests failed (warm-up included)";
    if (r.messages_not_accepted)
      std::cerr << " (" << r.messages_not_accepted << " messages answered duplicate/rejected: reuse of --id-prefix?)";
    std::cerr << "\n";
    for (auto& [k, f] : r.failures)
      std::cerr << "  " << k << " x" << f.count << (f.sample == k ? "" : ": " + f.sample) << "\n";
    return 1;
  }
  return 0;
}
