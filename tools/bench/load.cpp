// tayori_load — a closed-loop load generator for POST /v1/messages.
//
// N worker threads, one libcurl easy handle each (so each keeps its connection alive), share a
// counter of requests to send. Every request carries one message (--batch 1: the message object is the
// body) or --batch N messages ({"messages":[...]}), each with an id unique to the run (--id-prefix) and a
// contact of the kind the channel takes (--contact), unique per message within the run.
// The time of each request (send to full answer) is recorded; the run prints one result line:
// requests, messages, wall seconds, requests/s, messages/s and p50/p90/p99/max latency in ms.
// Every answer must be a 202 that accepted every message; anything else is counted by status, reported
// on stderr and makes the exit status 1.
#include <curl/curl.h>

#include <unistd.h>
#include <algorithm>
#include <atomic>
#include <barrier>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;
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
    "  --purpose P        transactional (default) or marketing (consent, quiet hours and caps apply)\n"
    "  --same-content     every message says the same (a batching channel may carry them in one request)\n"
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
  std::string purpose = "transactional";
  bool same_content = false;
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
    else if (a == "--purpose")
      o.purpose = value();
    else if (a == "--same-content")
      o.same_content = true;
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
std::string hex_from(uint64_t n, int count) {
  std::string out;
  char word[17];
  for (int i = 0; i < count; ++i) {
    uint64_t z = n + static_cast<uint64_t>(i) * 0x9e3779b97f4a7c15ULL;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    std::snprintf(word, sizeof word, "%016llx", static_cast<unsigned long long>(z ^ (z >> 31)));
    out += word;
  }
  return out;
}

// The recipient's contacts: one of `kind`, unique to message number `n` of the run, in the shape each
// channel plugin accepts (E.164 phone, LINE user id "U" + 32 hex, APNs device token of 64 hex).
json contacts(const std::string& kind, long n, const std::string& r) {
  auto u = static_cast<uint64_t>(n);
  if (kind == "phone") {
    char phone[24];
    std::snprintf(phone, sizeof phone, "+8190%08ld", n % 100'000'000);
    return {{"phone", phone}};
  }
  if (kind == "line") return {{"line", "U" + hex_from(u, 2)}};
  if (kind == "push.fcm") return {{"push", json::array({{{"platform", "fcm"}, {"token", "load:" + hex_from(u, 2)}}})}};
  if (kind == "push.apns") return {{"push", json::array({{{"platform", "apns"}, {"token", hex_from(u, 4)}}})}};
  return {{"email", "user-" + r + "@example.jp"}};
}

// A typical message (transactional unless --purpose says otherwise), about 400 bytes. The content has every field some channel plugin needs:
// subject and text (email), text (SMS, LINE), title and body (FCM, APNs), so one shape suits every channel.
json message(const Options& o, const std::string& id, long n) {
  std::string r = std::to_string(n % 100'000);
  std::string text = o.same_content ? std::string("Your order is on its way and should arrive within two days.")
                                    : "Order " + r + " is on its way and should arrive within two days.";
  return {
      {"id", id},
      {"recipient", {{"id", "user-" + r}, {"locale", "ja-JP"}, {"contacts", contacts(o.contact, n, r)}}},
      {"purpose", o.purpose},
      {"category", "order"},
      {"channels", json::array({o.channel})},
      {"content", {{"subject", "Your order has shipped"}, {"text", text}, {"title", "Shipped"}, {"body", text}}},
      {"metadata", {{"source", "tayori_load"}}}};
}

// The body of request number `request` of `phase`: the message object itself, or {"messages":[...]}.
// Messages are numbered across the run, warm-up first, so no two share a contact.
std::string make_body(const Options& o, const char* phase, long request) {
  auto id = [&](int k) { return o.id_prefix + "-" + phase + std::to_string(request) + "-" + std::to_string(k); };
  long first = (phase[0] == 'w' ? 0 : o.warmup * o.batch) + request * o.batch;
  if (o.batch == 1) return message(o, id(0), first).dump();
  json messages = json::array();
  for (int k = 0; k < o.batch; ++k) messages.push_back(message(o, id(k), first + k));
  return json{{"messages", std::move(messages)}}.dump();
}

size_t collect(char* data, size_t size, size_t n, void* user) {
  static_cast<std::string*>(user)->append(data, size * n);
  return size * n;
}

// How many of the request's messages the answer says were accepted (a duplicate means the id prefix was reused).
long accepted_in(const std::string& answer, int batch) {
  if (batch == 1) return answer.find("\"status\":\"accepted\"") != std::string::npos ? 1 : 0;
  // The batch answer's top-level "accepted": N (the per-item statuses are values, never keys).
  auto at = answer.find("\"accepted\":");
  if (at == std::string::npos) return 0;
  return std::strtol(answer.c_str() + at + 11, nullptr, 10);
}

struct Failure {
  long count = 0;
  std::string sample;  // the first answer (or curl error) seen with this key
};

struct WorkerResult {
  std::vector<double> latencies_ms;
  std::map<std::string, Failure> failures;  // "503", "curl: Couldn't connect", "202 not accepted"
  long failed_requests = 0;
  long messages_not_accepted = 0;
};

class Worker {
 public:
  Worker(const Options& o) : options_(o) {
    handle_ = curl_easy_init();
    if (!handle_) throw std::runtime_error("curl_easy_init failed");
    headers_ = curl_slist_append(headers_, "Content-Type: application/json");
    headers_ = curl_slist_append(headers_, ("Authorization: Bearer " + o.key).c_str());
    headers_ = curl_slist_append(headers_, "Expect:");  // no 100-continue round trip for large bodies
    url_ = o.url + "/v1/messages";
    curl_easy_setopt(handle_, CURLOPT_URL, url_.c_str());
    curl_easy_setopt(handle_, CURLOPT_HTTPHEADER, headers_);
    curl_easy_setopt(handle_, CURLOPT_POST, 1L);
    curl_easy_setopt(handle_, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(handle_, CURLOPT_TCP_NODELAY, 1L);
    curl_easy_setopt(handle_, CURLOPT_TIMEOUT_MS, o.timeout_ms);
    curl_easy_setopt(handle_, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(handle_, CURLOPT_WRITEDATA, &answer_);
  }
  ~Worker() {
    curl_easy_cleanup(handle_);
    curl_slist_free_all(headers_);
  }
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  // Sends request number `n` of `phase` ("w" warm-up, "m" measured); records it when `measured`.
  void send(const char* phase, long n, bool measured) {
    std::string body = make_body(options_, phase, n);
    answer_.clear();
    curl_easy_setopt(handle_, CURLOPT_POSTFIELDS, body.data());
    curl_easy_setopt(handle_, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body.size()));
    auto start = Clock::now();
    CURLcode rc = curl_easy_perform(handle_);
    auto end = Clock::now();
    long status = 0;
    if (rc == CURLE_OK) curl_easy_getinfo(handle_, CURLINFO_RESPONSE_CODE, &status);
    if (measured) result.latencies_ms.push_back(std::chrono::duration<double, std::milli>(end - start).count());

    std::string failure;
    if (rc != CURLE_OK) {
      failure = std::string("curl: ") + curl_easy_strerror(rc);
    } else if (status != 202) {
      failure = std::to_string(status);
    } else if (long accepted = accepted_in(answer_, options_.batch); accepted != options_.batch) {
      failure = "202 not accepting every message";
      result.messages_not_accepted += options_.batch - accepted;
    }
    if (!failure.empty()) {
      ++result.failed_requests;
      Failure& f = result.failures[failure];
      if (f.count++ == 0) f.sample = rc != CURLE_OK ? failure : answer_.substr(0, 400);
    }
  }

  WorkerResult result;

 private:
  const Options& options_;
  std::string url_;
  CURL* handle_ = nullptr;
  curl_slist* headers_ = nullptr;
  std::string answer_;
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
  if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
    std::cerr << "tayori_load: curl_global_init failed\n";
    return 2;
  }
  int threads = static_cast<int>(std::min<long>(o.concurrency, std::max(o.requests, o.warmup)));
  std::vector<std::unique_ptr<Worker>> workers;
  for (int i = 0; i < threads; ++i) workers.push_back(std::make_unique<Worker>(o));

  std::atomic<long> next_warmup{0}, next_request{0};
  Clock::time_point started;
  // Every thread finishes its warm-up before the clock starts, so the measured phase begins at full concurrency.
  std::barrier ready(threads, [&]() noexcept { started = Clock::now(); });
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&, t] {
      Worker& w = *workers[t];
      for (long n; (n = next_warmup.fetch_add(1)) < o.warmup;) w.send("w", n, false);
      ready.arrive_and_wait();
      for (long n; (n = next_request.fetch_add(1)) < o.requests;) w.send("m", n, true);
    });
  }
  for (auto& th : pool) th.join();
  double seconds = std::chrono::duration<double>(Clock::now() - started).count();

  std::vector<double> latencies;
  std::map<std::string, Failure> failures;
  long failed = 0, not_accepted = 0;
  for (auto& w : workers) {
    latencies.insert(latencies.end(), w->result.latencies_ms.begin(), w->result.latencies_ms.end());
    for (auto& [k, f] : w->result.failures) {
      Failure& total = failures[k];
      if (total.count == 0) total.sample = f.sample;
      total.count += f.count;
    }
    failed += w->result.failed_requests;
    not_accepted += w->result.messages_not_accepted;
  }
  workers.clear();
  curl_global_cleanup();
  std::sort(latencies.begin(), latencies.end());

  long messages = o.requests * o.batch;
  double rps = seconds > 0 ? static_cast<double>(o.requests) / seconds : 0;
  double mps = seconds > 0 ? static_cast<double>(messages) / seconds : 0;
  double p50 = percentile(latencies, 0.50), p90 = percentile(latencies, 0.90), p99 = percentile(latencies, 0.99);
  double max = latencies.empty() ? 0 : latencies.back();

  if (o.json) {
    json by_kind = json::object();
    for (auto& [k, f] : failures) by_kind[k] = f.count;
    nlohmann::ordered_json result = {
        {"requests", o.requests},
        {"messages", messages},
        {"batch", o.batch},
        {"concurrency", threads},
        {"warmup", o.warmup},
        {"seconds", rounded(seconds, 3)},
        {"requests_per_s", rounded(rps, 1)},
        {"messages_per_s", rounded(mps, 1)},
        {"latency_ms",
         {{"p50", rounded(p50, 3)}, {"p90", rounded(p90, 3)}, {"p99", rounded(p99, 3)}, {"max", rounded(max, 3)}}},
        {"failed_requests", failed},
        {"failures", by_kind}};
    // Failure kinds are curl's messages and status codes; replace anything that is not UTF-8 rather than throw.
    std::cout << result.dump(-1, ' ', false, json::error_handler_t::replace) << "\n";
  } else {
    char line[512];
    std::snprintf(line, sizeof line,
                  "tayori_load: requests=%ld messages=%ld batch=%d concurrency=%d seconds=%.3f req_per_s=%.1f "
                  "msg_per_s=%.1f p50_ms=%.3f p90_ms=%.3f p99_ms=%.3f max_ms=%.3f failed=%ld\n",
                  o.requests, messages, o.batch, threads, seconds, rps, mps, p50, p90, p99, max, failed);
    std::cout << line;
  }
  std::cout.flush();

  if (failed > 0) {
    std::cerr << "tayori_load: " << failed << " requests failed (warm-up included)";
    if (not_accepted) std::cerr << " (" << not_accepted << " messages answered duplicate/rejected: reuse of --id-prefix?)";
    std::cerr << "\n";
    for (auto& [k, f] : failures)
      std::cerr << "  " << k << " x" << f.count << (f.sample == k ? "" : ": " + f.sample) << "\n";
    return 1;
  }
  return 0;
}
