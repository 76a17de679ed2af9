// HTTP transfers: how a provider request a channel plugin built (an APNs push, an FCM send, a LINE or
// Twilio API call, an OAuth grant) becomes a libcurl easy handle, and how the answer comes back as a
// Response for the plugin to classify. The multi loop (outbound_transport.cpp) runs it; this file holds
// what only HTTP needs: request checks, the method and headers sent exactly as given, HTTP/2 choices,
// response size limits, and refusing the silent re-send of a request the server may already have acted on.
#include <cstring>

#include <tayori/text.hpp>

#include "transport/transfer.hpp"

namespace tayori::transport {

namespace {

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

class HttpTransfer final : public Transfer {
  int64_t max_bytes = 0;
  bool too_large = false;
  int attempts = 0;             // times libcurl was about to send the request (on_prereq)
  bool resend_refused = false;  // on_prereq stopped a re-send (see there)

  CURLcode check() override {
    for (const auto& [k, v] : request.headers)
      if (k.empty() || has_crlf(k) || has_crlf(v) || k.find(':') != std::string::npos)
        return refuse(CURLE_BAD_FUNCTION_ARGUMENT, "invalid request header name or value");
    if (request.method.empty() || has_crlf(request.method) || request.method.find(' ') != std::string::npos)
      return refuse(CURLE_BAD_FUNCTION_ARGUMENT, "invalid request method");
    return CURLE_OK;
  }

  static size_t on_body(char* data, size_t size, size_t n, void* user) {
    auto* t = static_cast<HttpTransfer*>(user);
    const size_t len = size * n;
    if (static_cast<int64_t>(t->response.body.size() + len) > t->max_bytes) {
      t->too_large = true;
      return 0;  // aborts with CURLE_WRITE_ERROR
    }
    t->response.body.append(data, len);
    return len;
  }

  static size_t on_header(char* data, size_t size, size_t n, void* user) {
    auto* t = static_cast<HttpTransfer*>(user);
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
    t->response.headers.emplace_back(text::ascii_lower(std::string(trim(line.substr(0, colon)))),
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
    auto* t = static_cast<HttpTransfer*>(user);
    if (++t->attempts > 1 && t->request.method != "GET" && t->request.method != "HEAD") {
      t->resend_refused = true;
      return CURL_PREREQFUNC_ABORT;
    }
    return CURL_PREREQFUNC_OK;
  }

  CURLcode configure(const TransportOptions& o) override {
    max_bytes = o.max_response_bytes;
    set(CURLOPT_PREREQFUNCTION, &HttpTransfer::on_prereq);
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
    set(CURLOPT_WRITEFUNCTION, &HttpTransfer::on_body);
    set(CURLOPT_WRITEDATA, static_cast<void*>(this));
    set(CURLOPT_HEADERFUNCTION, &HttpTransfer::on_header);
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
      const std::string lk = text::ascii_lower(k);
      has_content_type |= lk == "content-type";
      has_expect |= lk == "expect";
      // "Name;" is libcurl's way of sending a header with an empty value.
      const std::string line = v.empty() ? k + ";" : k + ": " + v;
      curl_slist* next = curl_slist_append(list, line.c_str());
      if (!next) return CURLE_OUT_OF_MEMORY;
      list = next;
    }
    // Send exactly what the caller gave: no implicit form content type, no 100-continue round trip.
    if (sends_body && !has_content_type) list = curl_slist_append(list, "Content-Type:");
    if (!has_expect) list = curl_slist_append(list, "Expect:");
    set(CURLOPT_HTTPHEADER, list);
    return setup_rc;
  }

  void finish(CURLcode code) override {
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
      response.error_text = kNotResentText;
    } else if (too_large) {
      response.transport_error = CURLE_WRITE_ERROR;
      response.error_text = "response body exceeds max_response_bytes";
    } else if (code != CURLE_OK) {
      response.transport_error = code;
      response.error_text = errbuf[0] ? std::string(errbuf) : std::string(curl_easy_strerror(code));
    }
  }
};

}  // namespace

std::unique_ptr<Transfer> make_http_transfer() { return std::make_unique<HttpTransfer>(); }

}  // namespace tayori::transport
