// Outbound HTTP from the simulator (signed webhooks, Twilio status callbacks) over libcurl, plus the shared
// control answer that reports what the receiver said.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "sim_util.hpp"

namespace tayori::sim {

struct OutboundResult {
  bool ok = false;  // false: no HTTP answer (connection refused, timeout...); `error` says why
  long status = 0;
  std::string body;
  std::string content_type;
  std::string error;
};

// POSTs `body` to `url` with the given header lines ("Name: value"). Blocking, with a 10 s overall timeout;
// call it from a worker thread. http:// and https:// (system CAs, or TAYORI_SIM_CA_FILE when set).
OutboundResult http_post(const std::string& url, const std::string& body, const std::vector<std::string>& headers);

// The control API's answer after sending a webhook: 200 {"status","body","content_type","sent":{url, headers,
// body}} with the receiver's status and body, or 502 {"error", "sent"} when the receiver did not answer.
SimResponse webhook_report(const OutboundResult& result, const std::string& url,
                           const std::vector<std::pair<std::string, std::string>>& sent_headers,
                           const std::string& sent_body);

}  // namespace tayori::sim
