#include "transport/http_transport.hpp"
#include "common/thread_name.hpp"

#include <curl/curl.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <stdexcept>
#include <cctype>
#include <chrono>
#include <deque>
#include <map>
#include <mutex>
#include <thread>
#include <unordered_map>

namespace tayori::transport {

namespace {

constexpr const char* kShutdownText = "transport shut down";

int64_t steady_now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

std::string lower(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r' || s.back() == '\n'))
    s.remove_suffix(1);
  return s;
}

bool has_crlf(std::string_view s) { return s.find_first_of("\r\n") != std::string_view::npos; }

long curl_version_option(HttpVersion v) {
  switch (v) {
    case HttpVersion::Http1_1: return CURL_HTTP_VERSION_1_1;
    case HttpVersion::Http2Tls: return CURL_HTTP_VERSION_2TLS;
    case HttpVersion::Http2PriorKnowledge: return CURL_HTTP_VERSION_2_PRIOR_KNOWLEDGE;
    case HttpVersion::Default: break;
  }
  return CURL_HTTP_VERSION_NONE;
}

std::string version_text(long v) {
  switch (v) {
    case CURL_HTTP_VERSION_1_0: return "1.0";
    case CURL_HTTP_VERSION_1_1: return "1.1";
    case CURL_HTTP_VERSION_2_0: return "2";
    case CURL_HTTP_VERSION_3: return "3";
    default: return "";
  }
}

bool h2c_reuse_works() {
  static const bool works = curl_version_info(CURLVERSION_NOW)->version_num >= 0x080000;
  return works;
}

void global_init_once() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

// One transfer: the request, its completion, and the libcurl state while it runs. This is the only place
// that knows which protocol a transfer speaks: each kind has its own checks, easy-handle setup and result
// mapping; everything outside (queue, pools, rate limits, worker) treats transfers alike.
struct Transfer {
  Request request;
  Completion done;
  std::string pool;
  Response response;
  CURL* easy = nullptr;
  curl_slist* header_list = nullptr;  // HTTP request headers
  curl_slist* rcpt_list = nullptr;    // SMTP envelope recipients
  char errbuf[CURL_ERROR_SIZE] = {0};
  CURLcode setup_rc = CURLE_OK;  // the first curl_easy_setopt failure while setting up
  int64_t max_bytes = 0;
  bool too_large = false;
  size_t upload_offset = 0;              // SMTP: bytes of the message handed to libcurl so far
  std::deque<std::string> smtp_replies;  // SMTP: the last few complete server replies, oldest first
  std::string smtp_partial;              // SMTP: the lines so far of a multi-line reply
  int attempts = 0;                      // HTTP: times libcurl was about to send the request (on_prereq)
  bool resend_refused = false;           // HTTP: on_prereq stopped a re-send (see there)

  static constexpr size_t kKeptReplies = 4;
  static constexpr size_t kMaxReplyBytes = 2048;

  ~Transfer() {
    if (easy) curl_easy_cleanup(easy);
    if (header_list) curl_slist_free_all(header_list);
    if (rcpt_list) curl_slist_free_all(rcpt_list);
  }

  // Returns CURLE_OK, or the error that prevents the transfer from starting (errbuf says why).
  CURLcode setup(const TransportOptions& o) {
    const bool smtp = request.kind == RequestKind::Smtp;
    if (CURLcode rc = smtp ? check_smtp() : check_http(); rc != CURLE_OK) return rc;
    easy = curl_easy_init();
    if (!easy) return CURLE_OUT_OF_MEMORY;

    set(CURLOPT_PRIVATE, static_cast<void*>(this));
    set(CURLOPT_ERRORBUFFER, errbuf);
    set(CURLOPT_NOSIGNAL, 1L);
    set(CURLOPT_URL, request.url.c_str());
    set(CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(o.connect_timeout_ms));
    set(CURLOPT_TIMEOUT_MS, static_cast<long>(request.timeout_ms > 0 ? request.timeout_ms : o.default_timeout_ms));
    // Applies to https://, smtps:// and the STARTTLS upgrade of smtp:// alike.
    set(CURLOPT_SSL_VERIFYPEER, o.verify_tls ? 1L : 0L);
    set(CURLOPT_SSL_VERIFYHOST, o.verify_tls ? 2L : 0L);
    if (!o.ca_file.empty()) set(CURLOPT_CAINFO, o.ca_file.c_str());
    if (setup_rc == CURLE_OK) setup_rc = smtp ? setup_smtp() : setup_http(o);
    return setup_rc;
  }

  template <class V>
  void set(CURLoption opt, V value) {
    if (setup_rc == CURLE_OK) setup_rc = curl_easy_setopt(easy, opt, value);
  }

  CURLcode refuse(CURLcode code, const char* why) {
    std::snprintf(errbuf, sizeof errbuf, "%s", why);
    return code;
  }

  void finish(CURLcode code) {
    if (request.kind == RequestKind::Smtp)
      finish_smtp(code);
    else
      finish_http(code);
  }

  void fail(int code, std::string text) {
    response = Response{};
    response.transport_error = code;
    response.error_text = std::move(text);
  }

  void complete() {
    Completion cb = std::move(done);
    done = nullptr;
    if (!cb) return;
    try {
      cb(std::move(response));
    } catch (...) {
      // A completion must not take the transport thread down.
    }
  }

  // ---- HTTP ----

  CURLcode check_http() {
    for (const auto& [k, v] : request.headers)
      if (k.empty() || has_crlf(k) || has_crlf(v) || k.find(':') != std::string::npos)
        return refuse(CURLE_BAD_FUNCTION_ARGUMENT, "invalid request header name or value");
    if (request.method.empty() || has_crlf(request.method) || request.method.find(' ') != std::string::npos)
      return refuse(CURLE_BAD_FUNCTION_ARGUMENT, "invalid request method");
    return CURLE_OK;
  }

  static size_t on_body(char* data, size_t size, size_t n, void* user) {
    auto* t = static_cast<Transfer*>(user);
    const size_t len = size * n;
    if (static_cast<int64_t>(t->response.body.size() + len) > t->max_bytes) {
      t->too_large = true;
      return 0;  // aborts with CURLE_WRITE_ERROR
    }
    t->response.body.append(data, len);
    return len;
  }

  static size_t on_header(char* data, size_t size, size_t n, void* user) {
    auto* t = static_cast<Transfer*>(user);
    const size_t len = size * n;
    std::string_view line(data, len);
    if (line.substr(0, 5) == "HTTP/") {
      t->response.headers.clear();  // a new response (after 1xx): keep only the final one's headers
      return len;
    }
    line = trim(line);
    if (line.empty()) return len;
    const auto colon = line.find(':');
    if (colon == std::string_view::npos) return len;
    t->response.headers.emplace_back(lower(std::string(trim(line.substr(0, colon)))),
                                     std::string(trim(line.substr(colon + 1))));
    return len;
  }

  // libcurl (7.88, Curl_retry_request) silently sends a request again, on another connection and up to 5
  // times, when the kept connection it went out on closed or was reset before any byte of the answer came
  // back. The server may well have received and acted on it (a push delivered, a message sent): for a
  // delivery gateway that is a duplicate behind the caller's back. RFC 9110 §9.2.2 lets a client repeat
  // only idempotent requests on its own, so anything but GET and HEAD fails instead, with
  // CURLE_GOT_NOTHING, and the caller decides (a plugin retries with the provider's de-dup key). libcurl
  // 7.88 has no option to turn the re-send off, but calls CURLOPT_PREREQFUNCTION right before every
  // attempt sends its request, so a second call for one transfer is the re-send, stopped before it goes
  // out. Its safe cousin -- an HTTP/2 REFUSED_STREAM, or a stream above a GOAWAY's last-stream-id, which
  // the server guarantees it did not process (RFC 9113 §8.7) -- takes the same path inside libcurl and
  // cannot be told apart from outside, so it fails too: costly only in a retry, never in a duplicate.
  static int on_prereq(void* user, char*, char*, int, int) {
    auto* t = static_cast<Transfer*>(user);
    if (++t->attempts > 1 && t->request.method != "GET" && t->request.method != "HEAD") {
      t->resend_refused = true;
      return CURL_PREREQFUNC_ABORT;
    }
    return CURL_PREREQFUNC_OK;
  }

  CURLcode setup_http(const TransportOptions& o) {
    max_bytes = o.max_response_bytes;
    set(CURLOPT_PREREQFUNCTION, &Transfer::on_prereq);
    set(CURLOPT_PREREQDATA, static_cast<void*>(this));
    set(CURLOPT_PROTOCOLS_STR, "http,https");
    set(CURLOPT_FOLLOWLOCATION, 0L);
    set(CURLOPT_HTTP_VERSION, curl_version_option(request.http_version));
    if (request.http_version == HttpVersion::Http2PriorKnowledge && !h2c_reuse_works()) {
      // libcurl < 8.0.0 (Debian 12 has 7.88.1) breaks a reused h2c prior-knowledge connection with
      // CURLE_HTTP2 "Error in the HTTP2 framing layer" (curl/curl#10634, fixed by #10643 in 8.0.0).
      // h2c is for tests only, so give each such transfer its own connection there.
      set(CURLOPT_FRESH_CONNECT, 1L);
      set(CURLOPT_FORBID_REUSE, 1L);
    } else if (request.http_version == HttpVersion::Http2PriorKnowledge ||
               (request.url.rfind("https://", 0) == 0 && request.http_version != HttpVersion::Http1_1)) {
      // Wait for a pending connection to confirm multiplexing rather than opening another. Only where
      // HTTP/2 can be negotiated: over plain http:// (HTTP/1.1) it would queue concurrent requests behind
      // one connection's answer (measured: 3 deliveries to a 3 s provider took 9 s, not 3).
      set(CURLOPT_PIPEWAIT, 1L);
    }
    if (!o.user_agent.empty()) set(CURLOPT_USERAGENT, o.user_agent.c_str());
    set(CURLOPT_WRITEFUNCTION, &Transfer::on_body);
    set(CURLOPT_WRITEDATA, static_cast<void*>(this));
    set(CURLOPT_HEADERFUNCTION, &Transfer::on_header);
    set(CURLOPT_HEADERDATA, static_cast<void*>(this));

    const std::string& m = request.method;
    bool sends_body = false;
    if (m == "GET" && request.body.empty()) {
      set(CURLOPT_HTTPGET, 1L);
    } else if (m == "HEAD") {
      set(CURLOPT_NOBODY, 1L);
    } else {
      if (!request.body.empty() || m == "POST" || m == "PUT" || m == "PATCH") {
        sends_body = true;
        set(CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(request.body.size()));
        set(CURLOPT_POSTFIELDS, request.body.data());
      }
      if (m != "POST") set(CURLOPT_CUSTOMREQUEST, m.c_str());
    }

    bool has_content_type = false, has_expect = false;
    for (const auto& [k, v] : request.headers) {
      const std::string lk = lower(k);
      has_content_type |= lk == "content-type";
      has_expect |= lk == "expect";
      // "Name;" is libcurl's way of sending a header with an empty value.
      const std::string line = v.empty() ? k + ";" : k + ": " + v;
      curl_slist* next = curl_slist_append(header_list, line.c_str());
      if (!next) return CURLE_OUT_OF_MEMORY;
      header_list = next;
    }
    // Send exactly what the caller gave: no implicit form content type, no 100-continue round trip.
    if (sends_body && !has_content_type) header_list = curl_slist_append(header_list, "Content-Type:");
    if (!has_expect) header_list = curl_slist_append(header_list, "Expect:");
    set(CURLOPT_HTTPHEADER, header_list);
    return setup_rc;
  }

  void finish_http(CURLcode code) {
    if (easy) {
      long status = 0, version = 0, connects = 0;
      curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status);
      curl_easy_getinfo(easy, CURLINFO_HTTP_VERSION, &version);
      curl_easy_getinfo(easy, CURLINFO_NUM_CONNECTS, &connects);
      response.status = static_cast<int>(status);
      response.http_version_used = status != 0 ? version_text(version) : "";
      response.new_connections = connects;
    }
    if (resend_refused) {
      response.status = 0;
      response.http_version_used.clear();
      response.headers.clear();
      response.transport_error = CURLE_GOT_NOTHING;
      response.error_text =
          "connection closed before any response; not re-sent, as the server may have received the request";
    } else if (too_large) {
      response.transport_error = CURLE_WRITE_ERROR;
      response.error_text = "response body exceeds max_response_bytes";
    } else if (code != CURLE_OK) {
      response.transport_error = code;
      response.error_text = errbuf[0] ? std::string(errbuf) : std::string(curl_easy_strerror(code));
    }
  }

  // ---- SMTP submission (RFC 5321) ----

  // An envelope address goes verbatim into a MAIL FROM / RCPT TO command line: CR or LF would end that
  // command and start another (RFC 5321 §2.3.8), and a NUL would silently cut the address short.
  static bool unsafe_address(std::string_view a) { return a.find_first_of(std::string_view("\r\n\0", 3)) != a.npos; }

  // True when every CR and LF in `s` is part of a CRLF pair (RFC 5321 §2.3.8, RFC 5322 §2.1).
  static bool crlf_only(std::string_view s) {
    for (size_t i = 0; i < s.size(); ++i) {
      if (s[i] == '\r') {
        if (i + 1 == s.size() || s[i + 1] != '\n') return false;
        ++i;
      } else if (s[i] == '\n') {
        return false;
      }
    }
    return true;
  }

  CURLcode check_smtp() {
    const std::string scheme = lower(request.url.substr(0, request.url.find("://")));
    if (request.url.find("://") == std::string::npos || (scheme != "smtp" && scheme != "smtps"))
      return refuse(CURLE_UNSUPPORTED_PROTOCOL, "an smtp request needs an smtp:// or smtps:// URL");
    if (!request.headers.empty())
      return refuse(CURLE_BAD_FUNCTION_ARGUMENT, "an smtp request has no headers: they belong in the message body");
    if (unsafe_address(request.mail_from))
      return refuse(CURLE_BAD_FUNCTION_ARGUMENT, "mail_from contains CR, LF or NUL (SMTP command injection)");
    if (request.mail_rcpt.empty()) return refuse(CURLE_BAD_FUNCTION_ARGUMENT, "an smtp request needs a mail_rcpt");
    for (const auto& rcpt : request.mail_rcpt)
      if (rcpt.empty() || unsafe_address(rcpt))
        return refuse(CURLE_BAD_FUNCTION_ARGUMENT,
                      "a mail_rcpt is empty or contains CR, LF or NUL (SMTP command injection)");
    // libcurl dot-stuffs only after CRLF; a bare LF followed by "." would reach the server unescaped, and
    // a lenient receiver that ends data at "<LF>.<CR><LF>" would take what follows as a new transaction.
    if (!crlf_only(request.body))
      return refuse(CURLE_BAD_FUNCTION_ARGUMENT,
                    "the smtp message has a bare CR or LF: lines must end in CRLF (RFC 5321 §2.3.8)");
    return CURLE_OK;
  }

  static size_t on_upload(char* buffer, size_t size, size_t n, void* user) {
    auto* t = static_cast<Transfer*>(user);
    const size_t len = std::min(size * n, t->request.body.size() - t->upload_offset);
    std::memcpy(buffer, t->request.body.data() + t->upload_offset, len);
    t->upload_offset += len;
    return len;  // 0 at the end: libcurl then sends "<CRLF>.<CRLF>"
  }

  // Lets libcurl rewind the message should it need to send it again (it may retry a transfer on a fresh
  // connection when a kept one turns out to be closed); without it such a retry fails.
  static int on_seek(void* user, curl_off_t offset, int origin) {
    auto* t = static_cast<Transfer*>(user);
    if (origin != SEEK_SET || offset < 0 || static_cast<uint64_t>(offset) > t->request.body.size())
      return CURL_SEEKFUNC_CANTSEEK;
    t->upload_offset = static_cast<size_t>(offset);
    return CURL_SEEKFUNC_OK;
  }

  // libcurl hands every server reply line to the header callback. A reply is one or more lines sharing a
  // code; "NNN-" continues it and "NNN " (or a bare "NNN") ends it (RFC 5321 §4.2.1).
  static size_t on_smtp_reply(char* data, size_t size, size_t n, void* user) {
    auto* t = static_cast<Transfer*>(user);
    const size_t len = size * n;
    const std::string_view line = trim(std::string_view(data, len));
    if (t->smtp_partial.size() < kMaxReplyBytes) {
      if (!t->smtp_partial.empty()) t->smtp_partial += '\n';
      t->smtp_partial.append(line.substr(0, kMaxReplyBytes - t->smtp_partial.size()));
    }
    if (line.size() < 4 || line[3] != '-') {
      t->smtp_replies.push_back(std::move(t->smtp_partial));
      t->smtp_partial.clear();
      if (t->smtp_replies.size() > kKeptReplies) t->smtp_replies.pop_front();
    }
    return len;
  }

  CURLcode setup_smtp() {
    const bool implicit_tls = lower(request.url).rfind("smtps://", 0) == 0;
    set(CURLOPT_PROTOCOLS_STR, "smtp,smtps");
    // RFC 3207 §6: an attacker on the path can delete "250-STARTTLS" from the EHLO reply, so a client
    // that needs TLS must stop when it is missing or refused. CURLUSESSL_ALL does; CURLUSESSL_TRY would
    // go on in plaintext without a word. smtps:// is TLS from the first byte (RFC 8314 §3.3) regardless.
    const bool plaintext = request.allow_plaintext && !implicit_tls;
    set(CURLOPT_USE_SSL, static_cast<long>(plaintext ? CURLUSESSL_NONE : CURLUSESSL_ALL));
    if (plaintext) {
      // libcurl may hand a cached smtp:// connection to a later request to the same host; a plaintext
      // one must never be what a TLS-requiring request gets, so it is not cached at all.
      set(CURLOPT_FRESH_CONNECT, 1L);
      set(CURLOPT_FORBID_REUSE, 1L);
    }
    set(CURLOPT_MAIL_FROM, request.mail_from.c_str());
    for (const auto& rcpt : request.mail_rcpt) {
      curl_slist* next = curl_slist_append(rcpt_list, rcpt.c_str());
      if (!next) return CURLE_OUT_OF_MEMORY;
      rcpt_list = next;
    }
    set(CURLOPT_MAIL_RCPT, rcpt_list);
    if (!request.username.empty()) {
      set(CURLOPT_USERNAME, request.username.c_str());
      set(CURLOPT_PASSWORD, request.password.c_str());
    }
    set(CURLOPT_UPLOAD, 1L);
    set(CURLOPT_INFILESIZE_LARGE, static_cast<curl_off_t>(request.body.size()));
    set(CURLOPT_READFUNCTION, &Transfer::on_upload);
    set(CURLOPT_READDATA, static_cast<void*>(this));
    set(CURLOPT_SEEKFUNCTION, &Transfer::on_seek);
    set(CURLOPT_SEEKDATA, static_cast<void*>(this));
    set(CURLOPT_HEADERFUNCTION, &Transfer::on_smtp_reply);
    set(CURLOPT_HEADERDATA, static_cast<void*>(this));
    return setup_rc;
  }

  // The most recent complete reply carrying `code`, or "".
  std::string reply_with(long code) const {
    const std::string prefix = std::to_string(code);
    for (auto it = smtp_replies.rbegin(); it != smtp_replies.rend(); ++it)
      if (it->rfind(prefix, 0) == 0) return *it;
    return {};
  }

  // See Response in the header: a reply >= 400 that ended the transaction is the server's verdict
  // (status, transport_error 0); a failure without one is a transport error with status 0.
  void finish_smtp(CURLcode code) {
    long reply_code = 0, connects = 0;
    curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &reply_code);  // the last reply, QUIT's excluded
    curl_easy_getinfo(easy, CURLINFO_NUM_CONNECTS, &connects);
    response.new_connections = connects;
    const std::string what = errbuf[0] ? std::string(errbuf) : std::string(curl_easy_strerror(code));
    if (code == CURLE_OK) {
      response.status = static_cast<int>(reply_code);
      response.body = reply_with(reply_code);
    } else if (reply_code >= 400 && reply_code < 600) {
      response.status = static_cast<int>(reply_code);
      response.body = reply_with(reply_code);
      response.error_text = response.body.empty() ? what : what + " (server: " + response.body + ")";
    } else {
      response.transport_error = code;
      response.error_text = what;
    }
  }
};

struct Pool {
  std::deque<std::unique_ptr<Transfer>> pending;
  int active = 0;
};

}  // namespace

struct HttpTransport::Impl {
  TransportOptions options;
  CURLM* multi = nullptr;

  std::mutex mu;  // guards the fields up to `worker`
  std::vector<std::unique_ptr<Transfer>> incoming;
  std::map<std::string, PoolOptions> pool_config;
  uint64_t config_version = 0;
  bool stopping = false;

  std::mutex shutdown_mu;
  std::thread worker;

  // Connections opened (CURLINFO_NUM_CONNECTS), per pool key; written by the worker, read by any thread.
  mutable std::mutex stats_mu;
  std::map<std::string, uint64_t> opened_by_pool;

  // Worker-thread state.
  std::map<std::string, PoolOptions> config_copy;
  uint64_t config_seen = ~uint64_t{0};
  std::map<std::string, Pool> pools;
  std::unordered_map<Transfer*, std::unique_ptr<Transfer>> running;
  long cache_size = 0;  // the CURLMOPT_MAXCONNECTS last set

  int max_concurrent(const PoolOptions* p) const {
    const int n = p && p->max_concurrent > 0 ? p->max_concurrent : options.default_max_concurrent;
    return std::max(1, n);
  }

  int max_concurrent(const std::string& pool_key) const {
    auto it = config_copy.find(pool_key);
    return max_concurrent(it == config_copy.end() ? nullptr : &it->second);
  }

  void count_connections(const Transfer& t, long opened) {
    if (opened <= 0) return;
    std::lock_guard lock(stats_mu);
    opened_by_pool[t.pool] += static_cast<uint64_t>(opened);
  }

  // libcurl keeps at most CURLMOPT_MAXCONNECTS idle connections; unset, that is 4 x the easy handles
  // currently added (7.88 conncache.c), and this transport removes each handle when its transfer ends, so
  // after a burst the cache shrinks with the load and kept connections are closed, to be opened again by
  // the next burst. Every pool may run its max_concurrent transfers on connections of its own (HTTP/1.1),
  // so the cache holds that many for every pool known so far.
  void size_connection_cache() {
    long total = 0;
    for (const auto& [key, pool] : pools) total += max_concurrent(key);
    for (const auto& [key, cfg] : config_copy)
      if (!pools.count(key)) total += max_concurrent(&cfg);
    if (total != cache_size) {
      cache_size = total;
      curl_multi_setopt(multi, CURLMOPT_MAXCONNECTS, std::max(1L, total));
    }
  }

  // Starts what the pool limits allow; returns ms until a rate-limited pool may start (-1 = none waits).
  int64_t start_ready() {
    int64_t wait = -1;
    const int64_t now = steady_now_ms();
    for (auto& [key, pool] : pools) {
      auto cfg_it = config_copy.find(key);
      const PoolOptions* cfg = cfg_it == config_copy.end() ? nullptr : &cfg_it->second;
      const int limit = max_concurrent(cfg);
      while (!pool.pending.empty() && pool.active < limit) {
        if (cfg && cfg->rate_limiter && !cfg->rate_limiter->try_acquire(now)) {
          const int64_t w = std::max<int64_t>(1, cfg->rate_limiter->next_available(now) - now);
          wait = wait < 0 ? w : std::min(wait, w);
          break;
        }
        std::unique_ptr<Transfer> t = std::move(pool.pending.front());
        pool.pending.pop_front();
        CURLcode rc = t->setup(options);
        if (rc == CURLE_OK) {
          CURLMcode mrc = curl_multi_add_handle(multi, t->easy);
          if (mrc != CURLM_OK) {
            t->fail(CURLE_FAILED_INIT, std::string("curl_multi_add_handle: ") + curl_multi_strerror(mrc));
            t->complete();
            continue;
          }
          ++pool.active;
          Transfer* raw = t.get();
          running.emplace(raw, std::move(t));
        } else {
          std::string text = t->errbuf[0] ? std::string(t->errbuf) : std::string(curl_easy_strerror(rc));
          t->fail(rc, std::move(text));
          t->complete();
        }
      }
    }
    return wait;
  }

  // Completes finished transfers; returns how many.
  int drain_done() {
    int n = 0;
    int left = 0;
    while (CURLMsg* msg = curl_multi_info_read(multi, &left)) {
      if (msg->msg != CURLMSG_DONE) continue;
      CURL* easy = msg->easy_handle;
      const CURLcode code = msg->data.result;
      void* priv = nullptr;
      curl_easy_getinfo(easy, CURLINFO_PRIVATE, &priv);
      curl_multi_remove_handle(multi, easy);
      auto it = running.find(static_cast<Transfer*>(priv));
      if (it == running.end()) continue;
      std::unique_ptr<Transfer> t = std::move(it->second);
      running.erase(it);
      if (auto p = pools.find(t->pool); p != pools.end()) --p->second.active;
      t->finish(code);
      count_connections(*t, static_cast<long>(t->response.new_connections));
      t->complete();
      ++n;
    }
    return n;
  }

  void run() {
    for (;;) {
      std::vector<std::unique_ptr<Transfer>> batch;
      bool resize = false;
      {
        std::lock_guard lock(mu);
        if (stopping) break;
        batch.swap(incoming);
        if (config_seen != config_version) {
          config_copy = pool_config;
          config_seen = config_version;
          resize = true;
        }
      }
      for (auto& t : batch) {
        auto [it, added] = pools.try_emplace(t->pool);
        resize |= added;
        it->second.pending.push_back(std::move(t));
      }
      if (resize) size_connection_cache();

      const int64_t rate_wait = start_ready();
      int still_running = 0;
      curl_multi_perform(multi, &still_running);
      if (drain_done() > 0) continue;  // freed slots: start more before sleeping

      int timeout = 1000;
      if (rate_wait >= 0) timeout = static_cast<int>(std::min<int64_t>(timeout, rate_wait));
      curl_multi_poll(multi, nullptr, 0, timeout, nullptr);
    }
    fail_everything();
  }

  void fail_everything() {
    for (auto& [raw, t] : running) {
      long opened = 0;
      curl_easy_getinfo(t->easy, CURLINFO_NUM_CONNECTS, &opened);
      count_connections(*t, opened);
      curl_multi_remove_handle(multi, t->easy);
      t->fail(CURLE_ABORTED_BY_CALLBACK, kShutdownText);
      t->complete();
    }
    running.clear();
    for (auto& [key, pool] : pools)
      for (auto& t : pool.pending) {
        t->fail(CURLE_ABORTED_BY_CALLBACK, kShutdownText);
        t->complete();
      }
    pools.clear();
    std::vector<std::unique_ptr<Transfer>> batch;
    {
      std::lock_guard lock(mu);  // stopping is set: nothing more arrives
      batch.swap(incoming);
    }
    for (auto& t : batch) {
      t->fail(CURLE_ABORTED_BY_CALLBACK, kShutdownText);
      t->complete();
    }
  }
};

HttpTransport::HttpTransport(TransportOptions options) : impl_(std::make_unique<Impl>()) {
  global_init_once();
  if (options.smtp_on_own_worker) {
    TransportOptions lane = options;
    lane.smtp_on_own_worker = false;
    smtp_lane_ = std::make_unique<HttpTransport>(std::move(lane));
  }
  impl_->options = std::move(options);
  impl_->multi = curl_multi_init();
  if (!impl_->multi) throw std::runtime_error("curl_multi_init failed");
  curl_multi_setopt(impl_->multi, CURLMOPT_PIPELINING, static_cast<long>(CURLPIPE_MULTIPLEX));
  if (impl_->options.max_connections_per_host > 0)
    curl_multi_setopt(impl_->multi, CURLMOPT_MAX_HOST_CONNECTIONS, impl_->options.max_connections_per_host);
  impl_->worker = std::thread([impl = impl_.get()] {
    name_this_thread("tayori-transp");
    impl->run();
  });
}

HttpTransport::~HttpTransport() {
  shutdown();
  if (impl_->multi) curl_multi_cleanup(impl_->multi);
}

void HttpTransport::configure_pool(const std::string& pool_key, PoolOptions pool) {
  if (smtp_lane_) smtp_lane_->configure_pool(pool_key, pool);
  {
    std::lock_guard lock(impl_->mu);
    impl_->pool_config[pool_key] = std::move(pool);
    ++impl_->config_version;
  }
  curl_multi_wakeup(impl_->multi);
}

void HttpTransport::submit(Request request, Completion done) {
  if (request.kind == RequestKind::Smtp && smtp_lane_) {
    smtp_lane_->submit(std::move(request), std::move(done));
    return;
  }
  auto t = std::make_unique<Transfer>();
  t->pool = pool_key_for(request);
  t->request = std::move(request);
  t->done = std::move(done);
  {
    std::lock_guard lock(impl_->mu);
    if (!impl_->stopping) {
      impl_->incoming.push_back(std::move(t));
      t = nullptr;
    }
  }
  if (t) {  // already shutting down: complete here, on the caller's thread
    t->fail(CURLE_ABORTED_BY_CALLBACK, kShutdownText);
    t->complete();
    return;
  }
  curl_multi_wakeup(impl_->multi);
}

void HttpTransport::shutdown() {
  if (smtp_lane_) smtp_lane_->shutdown();
  std::lock_guard join_lock(impl_->shutdown_mu);
  {
    std::lock_guard lock(impl_->mu);
    impl_->stopping = true;
  }
  curl_multi_wakeup(impl_->multi);
  if (impl_->worker.joinable()) impl_->worker.join();
}

uint64_t HttpTransport::connections_opened() const {
  uint64_t n = smtp_lane_ ? smtp_lane_->connections_opened() : 0;
  std::lock_guard lock(impl_->stats_mu);
  for (const auto& [key, opened] : impl_->opened_by_pool) n += opened;
  return n;
}

uint64_t HttpTransport::connections_opened(const std::string& pool_key) const {
  uint64_t n = smtp_lane_ ? smtp_lane_->connections_opened(pool_key) : 0;
  std::lock_guard lock(impl_->stats_mu);
  if (auto it = impl_->opened_by_pool.find(pool_key); it != impl_->opened_by_pool.end()) n += it->second;
  return n;
}

std::string HttpTransport::pool_key_for(const Request& request) {
  if (!request.pool_key.empty()) return request.pool_key;
  const std::string url = lower(request.url);
  const auto sep = url.find("://");
  if (sep == std::string::npos) return url;
  const std::string scheme = url.substr(0, sep);
  std::string authority = url.substr(sep + 3, url.find_first_of("/?#", sep + 3) - (sep + 3));
  if (auto at = authority.rfind('@'); at != std::string::npos) authority = authority.substr(at + 1);
  const auto close_bracket = authority.rfind(']');
  const auto colon = authority.rfind(':');
  const bool has_port = colon != std::string::npos && (close_bracket == std::string::npos || colon > close_bracket);
  if (!has_port) {
    static const std::map<std::string, std::string> kDefaultPort = {
        {"http", ":80"}, {"https", ":443"}, {"smtp", ":25"}, {"smtps", ":465"}};
    if (auto it = kDefaultPort.find(scheme); it != kDefaultPort.end()) authority += it->second;
  }
  return scheme + "://" + authority;
}

}  // namespace tayori::transport
