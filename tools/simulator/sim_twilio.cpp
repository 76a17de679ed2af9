// Twilio Programmable Messaging: Create a Message, status callbacks and the signed webhook sender.
// Wire facts: docs/providers.md "Twilio".
//
//   POST /2010-04-01/Accounts/{AccountSid}/Messages.json   HTTP Basic AccountSid:AuthToken, form-urlencoded
//     To, From | MessagingServiceSid, Body, StatusCallback, ValidityPeriod
//   -> 201 the Message resource (sid "SM" + 32 hex, status "queued"/"accepted")
//   -> {code, message, more_info, status} errors
//
// Outcomes follow Twilio's test-credential magic numbers (twilio.com/docs/iam/test-credentials): To
// +15005550001 invalid (21211), +15005550002 unroutable (21612), +15005550003 no geo permission (21408),
// +15005550004 blocked / opted out (21610), +15005550009 not SMS-capable (21614); From +15005550001 invalid
// (21212), +15005550007 not owned (21606), +15005550008 queue full (21611), +15005550006 valid.
#include <algorithm>
#include <map>

#include "sim_outbound.hpp"
#include "sim_providers.hpp"
#include "sim_util.hpp"
#include "crypto/crypto.hpp"

namespace tayori::sim {
namespace {

SimResponse twilio_error(int status, int code, const std::string& message) {
  return json_response(status, {{"code", code},
                                {"message", message},
                                {"more_info", "https://www.twilio.com/docs/errors/" + std::to_string(code)},
                                {"status", status}});
}

// Error codes a contact can be given in the fault table, with their HTTP statuses and messages. 3xxxx codes
// are delivery failures: the send is accepted and the failure arrives by status callback.
struct CodeInfo {
  int status;
  const char* message;
};
const std::map<int, CodeInfo> kCodes = {
    {21211, {400, "Invalid 'To' Phone Number"}},
    {21408, {400, "Permission to send an SMS has not been enabled for the region indicated by the 'To' number"}},
    {21610, {400, "Attempt to send to unsubscribed recipient"}},
    {21612, {400, "The 'To' phone number is not currently reachable via SMS"}},
    {21614, {400, "'To' number is not a valid mobile number"}},
    {20429, {429, "Too Many Requests"}},
    {30003, {0, "Unreachable destination handset"}},
    {30004, {0, "Message blocked"}},
    {30005, {0, "Unknown destination handset"}},
    {30006, {0, "Landline or unreachable carrier"}},
    {30007, {0, "Message filtered"}},
    {30008, {0, "Unknown error"}},
};

// E.164: '+', a non-zero digit, at most 15 digits in all (ITU-T E.164 §6).
bool is_e164(std::string_view s) {
  if (s.size() < 3 || s.size() > 16 || s[0] != '+' || s[1] == '0') return false;
  for (size_t i = 1; i < s.size(); ++i)
    if (s[i] < '0' || s[i] > '9') return false;
  return true;
}

// An alphanumeric sender id: 1..11 characters, letters, digits and spaces, at least one letter.
bool is_alphanumeric_sender(std::string_view s) {
  if (s.empty() || s.size() > 11) return false;
  bool letter = false;
  for (char c : s) {
    if (std::isalpha(static_cast<unsigned char>(c)))
      letter = true;
    else if (!std::isdigit(static_cast<unsigned char>(c)) && c != ' ')
      return false;
  }
  return letter;
}

bool is_sid(std::string_view s, std::string_view prefix) {
  return s.size() == 34 && s.substr(0, 2) == prefix && is_hex(s.substr(2));
}

bool is_http_url(std::string_view s) {
  for (std::string_view scheme : {"http://", "https://"})
    if (s.rfind(scheme, 0) == 0 && s.size() > scheme.size() && s.size() <= 4000) return true;
  return false;
}

// Segments as Twilio bills them: GSM-7 text in 160 (153 when concatenated), otherwise UCS-2 in 70 (67).
// Approximation: ASCII counts as GSM-7.
int segments(std::string_view body) {
  bool ascii = true;
  for (unsigned char c : body) ascii = ascii && c < 0x80;
  size_t n = ascii ? body.size() : utf16_units(body);
  size_t single = ascii ? 160 : 70, multi = ascii ? 153 : 67;
  return n <= single ? 1 : static_cast<int>((n + multi - 1) / multi);
}

// X-Twilio-Signature = base64(HMAC-SHA1(auth token, URL + each POST parameter sorted by name: name + value)).
std::string twilio_signature(const std::string& auth_token, const std::string& url, Params params) {
  std::stable_sort(params.begin(), params.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  std::string data = url;
  for (const auto& [k, v] : params) data += k + v;
  auto mac = crypto::hmac_sha1(auth_token, data);
  return mac ? crypto::base64_encode(mac.value()) : "";
}

// Sends a signed form POST the way Twilio's webhooks arrive, and reports what the receiver answered.
SimResponse send_signed_form(const std::string& url, const std::string& auth_token, Params params) {
  std::stable_sort(params.begin(), params.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  std::string body = form_encode(params);
  std::vector<std::pair<std::string, std::string>> headers = {
      {"Content-Type", "application/x-www-form-urlencoded"},
      {"User-Agent", "TwilioProxy/1.1"},
      {"X-Twilio-Signature", twilio_signature(auth_token, url, params)}};
  std::vector<std::string> lines;
  for (const auto& [k, v] : headers) lines.push_back(k + ": " + v);
  return webhook_report(http_post(url, body, lines), url, headers, body);
}

class Twilio final : public Provider {
 public:
  explicit Twilio(TwilioConfig c) : config_(std::move(c)) {}

  const char* name() const override { return "twilio"; }
  bool owns(std::string_view path) const override { return path.rfind("/2010-04-01/", 0) == 0; }

  SimResponse handle(const SimRequest& req, ProviderContext& ctx) override {
    if (!authenticated(req.header("authorization"))) return twilio_error(401, 20003, "Authenticate");
    const std::string messages_path = "/2010-04-01/Accounts/" + config_.account_sid + "/Messages.json";
    if (req.path != messages_path)
      return twilio_error(404, 20404, "The requested resource " + req.path + " was not found");
    if (req.method != "POST") return twilio_error(405, 20004, "Method not allowed");

    Params form = form_decode(req.body);
    std::string to = param(form, "To").value_or("");
    std::string from = param(form, "From").value_or("");
    std::string service = param(form, "MessagingServiceSid").value_or("");
    std::string text = param(form, "Body").value_or("");
    std::string callback = param(form, "StatusCallback").value_or("");
    auto validity = param(form, "ValidityPeriod");

    if (to.empty()) return twilio_error(400, 21604, "A 'To' phone number is required.");
    if (from.empty() && service.empty()) return twilio_error(400, 21603, "A 'From' phone number is required.");
    if (text.empty() && !param(form, "MediaUrl")) return twilio_error(400, 21602, "Message body is required.");
    if (!service.empty() && !is_sid(service, "MG"))
      return twilio_error(400, 21705, "The Messaging Service Sid " + service + " is invalid.");
    if (!from.empty()) {
      if (from == "+15005550001" || (!is_e164(from) && !is_alphanumeric_sender(from)))
        return twilio_error(
            400, 21212,
            "The 'From' number " + from + " is not a valid phone number, shortcode, or alphanumeric sender ID.");
      bool owned =
          from == "+15005550006" || config_.from_numbers.empty() ||
          std::find(config_.from_numbers.begin(), config_.from_numbers.end(), from) != config_.from_numbers.end();
      if (from == "+15005550007" || !owned)
        return twilio_error(400, 21606,
                            "The 'From' phone number provided (" + from +
                                ") is not a valid message-capable Twilio phone number for this destination.");
      if (from == "+15005550008")
        return twilio_error(400, 21611, "This 'From' number has exceeded the maximum number of queued messages");
    }
    if (!is_e164(to) || to == "+15005550001")
      return twilio_error(400, 21211, "The 'To' number " + to + " is not a valid phone number.");
    if (to == "+15005550002") return named(21612);
    if (to == "+15005550003") return named(21408);
    if (to == "+15005550004") return named(21610);
    if (to == "+15005550009") return named(21614);
    if (utf8_code_points(text) > 1600)
      return twilio_error(400, 21617, "The concatenated message body exceeds the 1600 character limit.");
    if (!callback.empty() && !is_http_url(callback))
      return twilio_error(400, 21609, "The StatusCallback URL " + callback + " is not a valid URL.");
    if (validity) {
      auto v = parse_int(*validity);
      if (!v || *v < 1 || *v > 36000)
        return twilio_error(400, 21624, "Validity period can only be set to integers between 1 and 36000 seconds.");
    }

    // A contact in the fault table: an immediate error, or (3xxxx) a later failure by status callback.
    int later_failure = 0;
    if (auto code = ctx.contact_code(*this, to)) {
      if (*code == "unregistered") return named(21610);
      int n = static_cast<int>(parse_int(*code).value_or(0));
      if (kCodes.count(n) && kCodes.at(n).status != 0) return named(n);
      later_failure = n;
    }

    const std::string sid = "SM" + random_hex(32);
    const std::string date = rfc2822_date(ctx.now_ms());
    const std::string uri = "/2010-04-01/Accounts/" + config_.account_sid + "/Messages/" + sid;
    if (!callback.empty()) schedule_callback(ctx, callback, sid, from, to, later_failure);
    // The Message resource, members in the order json_response would write them.
    return JsonObjectText()
        .text("account_sid", config_.account_sid)
        .text("api_version", "2010-04-01")
        .text("body", text)
        .text("date_created", date)
        .null("date_sent")
        .text("date_updated", date)
        .text("direction", "outbound-api")
        .null("error_code")
        .null("error_message")
        .text_or_null("from", from)
        .text_or_null("messaging_service_sid", service)
        .text("num_media", "0")
        .text("num_segments", std::to_string(segments(text)))
        .null("price")
        .text("price_unit", "USD")
        .text("sid", sid)
        // With a Messaging Service and no From, the sender is chosen later: "accepted".
        .text("status", from.empty() ? "accepted" : "queued")
        .raw("subresource_uris", JsonObjectText().text("media", uri + "/Media.json").done())
        .text("to", to)
        .text("uri", uri + ".json")
        .response(201);
  }

  SimResponse error_for_status(int status) const override {
    switch (status) {
      case 401:
        return twilio_error(401, 20003, "Authenticate");
      case 404:
        return twilio_error(404, 20404, "The requested resource was not found");
      case 429:
        return twilio_error(429, 20429, "Too Many Requests");
      case 500:
        return twilio_error(500, 20500, "Internal Server Error");
      case 503:
        return twilio_error(503, 20503, "Service Unavailable");
      default:
        return twilio_error(status, status >= 500 ? 20500 : 20001,
                            status >= 500 ? "Internal Server Error" : "Bad Request");
    }
  }

  std::optional<SimResponse> contact_error(std::string_view code, int64_t) const override {
    if (code == "unregistered") return named(21610);
    auto n = parse_int(code);
    if (!n || !kCodes.count(static_cast<int>(*n))) return std::nullopt;
    if (kCodes.at(static_cast<int>(*n)).status == 0) return json_response(201, Json::object());  // fails later
    return named(static_cast<int>(*n));
  }

  // POST /_sim/webhooks/twilio {url, auth_token?, params:{name: value}}: an inbound-SMS (or any) webhook.
  std::optional<WebhookJob> webhook(const SimRequest& control) override {
    Json doc = Json::parse(control.body, nullptr, false);
    auto bad = [](const std::string& why) { return WebhookJob{json_response(400, {{"error", why}}), {}}; };
    if (!doc.is_object() || !doc.contains("url") || !doc["url"].is_string())
      return bad("expected {\"url\":..., \"auth_token\":..., \"params\":{...}}");
    std::string token = doc.value("auth_token", config_.auth_token);
    Params params;
    if (doc.contains("params")) {
      if (!doc["params"].is_object()) return bad("\"params\" must be an object of strings");
      for (const auto& [k, v] : doc["params"].items()) {
        if (!v.is_string()) return bad("\"params\" values must be strings (form fields are text)");
        params.emplace_back(k, v.get<std::string>());
      }
    }
    std::string url = doc["url"].get<std::string>();
    return WebhookJob{std::nullopt, [url, token, params] { return send_signed_form(url, token, params); }};
  }

 private:
  bool authenticated(std::string_view authorization) const {
    static constexpr std::string_view basic = "Basic ";
    if (authorization.rfind(basic, 0) != 0) return false;
    auto decoded = crypto::base64_decode(authorization.substr(basic.size()));
    if (!decoded) return false;
    size_t colon = decoded.value().find(':');
    if (colon == std::string::npos) return false;
    bool user = crypto::constant_time_equal(std::string_view(decoded.value()).substr(0, colon), config_.account_sid);
    bool pass = crypto::constant_time_equal(std::string_view(decoded.value()).substr(colon + 1), config_.auth_token);
    return user && pass;
  }

  static SimResponse named(int code) {
    const CodeInfo& info = kCodes.at(code);
    return twilio_error(info.status, code, info.message);
  }

  // The final status of the message, POSTed to its StatusCallback like Twilio does (delivered, or undelivered
  // with ErrorCode for a contact given a 3xxxx code), signed with the account's auth token.
  void schedule_callback(ProviderContext& ctx, const std::string& url, const std::string& sid, const std::string& from,
                         const std::string& to, int failure) {
    std::string status = failure ? "undelivered" : "delivered";
    Params params = {{"AccountSid", config_.account_sid},
                     {"ApiVersion", "2010-04-01"},
                     {"From", from},
                     {"MessageSid", sid},
                     {"MessageStatus", status},
                     {"SmsSid", sid},
                     {"SmsStatus", status},
                     {"To", to}};
    if (failure) params.emplace_back("ErrorCode", std::to_string(failure));
    std::string token = config_.auth_token;
    ctx.run_later(config_.callback_delay_ms, [url, token, params] { send_signed_form(url, token, params); });
  }

  TwilioConfig config_;
};

}  // namespace

std::unique_ptr<Provider> make_twilio(TwilioConfig config) { return std::make_unique<Twilio>(std::move(config)); }

}  // namespace tayori::sim
