// Outbound HTTP over libcurl (see sim_outbound.hpp).
#include "sim_outbound.hpp"

#include <curl/curl.h>

#include <cstdlib>
#include <memory>

namespace tayori::sim {

namespace {

size_t append_body(char* p, size_t size, size_t n, void* ud) {
  static_cast<std::string*>(ud)->append(p, size * n);
  return size * n;
}

struct CurlFree {
  void operator()(CURL* c) const { curl_easy_cleanup(c); }
};
struct SlistFree {
  void operator()(curl_slist* l) const { curl_slist_free_all(l); }
};

}  // namespace

OutboundResult http_post(const std::string& url, const std::string& body, const std::vector<std::string>& headers) {
  OutboundResult result;
  std::unique_ptr<CURL, CurlFree> curl(curl_easy_init());
  if (!curl) {
    result.error = "curl_easy_init failed";
    return result;
  }
  std::unique_ptr<curl_slist, SlistFree> list;
  for (const auto& h : headers) list.reset(curl_slist_append(list.release(), h.c_str()));
  // libcurl adds "Expect: 100-continue" to large POSTs; webhook senders do not, so neither do we.
  list.reset(curl_slist_append(list.release(), "Expect:"));
  CURL* c = curl.get();
  curl_easy_setopt(c, CURLOPT_URL, url.c_str());
  curl_easy_setopt(c, CURLOPT_POST, 1L);
  curl_easy_setopt(c, CURLOPT_POSTFIELDS, body.data());
  curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body.size()));
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, list.get());
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 10'000L);
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);  // worker threads: no SIGALRM-based DNS timeouts
  curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
  if (const char* ca = std::getenv("TAYORI_SIM_CA_FILE"); ca && *ca) curl_easy_setopt(c, CURLOPT_CAINFO, ca);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, append_body);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &result.body);
  CURLcode rc = curl_easy_perform(c);
  if (rc != CURLE_OK) {
    result.error = curl_easy_strerror(rc);
    return result;
  }
  result.ok = true;
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &result.status);
  char* ct = nullptr;
  if (curl_easy_getinfo(c, CURLINFO_CONTENT_TYPE, &ct) == CURLE_OK && ct) result.content_type = ct;
  return result;
}

SimResponse webhook_report(const OutboundResult& result, const std::string& url,
                           const std::vector<std::pair<std::string, std::string>>& sent_headers,
                           const std::string& sent_body) {
  Json headers = Json::object();
  for (const auto& [k, v] : sent_headers) headers[k] = v;
  Json sent = {{"url", url}, {"headers", headers}, {"body", sent_body}};
  if (!result.ok)
    return json_response(502, {{"error", "the receiver did not answer: " + result.error}, {"sent", sent}});
  Json body = is_valid_utf8(result.body) ? Json(result.body) : Json("(not UTF-8)");
  return json_response(
      200, {{"status", result.status}, {"body", body}, {"content_type", result.content_type}, {"sent", sent}});
}

}  // namespace tayori::sim
