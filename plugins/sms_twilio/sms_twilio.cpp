// sms_twilio — SMS through Twilio Programmable Messaging (PROVIDERS.md "Twilio"): one Create Message request
// per delivery, sans-I/O (the host sends it and hands the answer back to classify()).
//
//   POST {base_url}/2010-04-01/Accounts/{AccountSid}/Messages.json
//   Authorization: Basic base64(AccountSid:AuthToken), Content-Type: application/x-www-form-urlencoded
//   To, From | MessagingServiceSid, Body, StatusCallback?, ValidityPeriod?
//
// Twilio has no idempotency key for Create Message: a request that timed out after Twilio accepted it is
// retried like any transport failure and may reach the handset twice. The host's backoff keeps this rare.
#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <tayori/plugin.hpp>

namespace {

using tayori::sdk::Delivery;
using tayori::sdk::Error;
using tayori::sdk::Outcome;

constexpr size_t kMaxBodyChars = 1600;         // Twilio error 21617: "exceeds the 1600 character limit"
constexpr int64_t kMinValiditySeconds = 1;      // Twilio error 21624/90007: ValidityPeriod 1..36000 s
constexpr int64_t kMaxValiditySeconds = 36000;

bool is_digit(char c) { return c >= '0' && c <= '9'; }

// A Twilio SID: two-letter type prefix + 32 hex digits ("AC…" account, "MG…" messaging service).
bool is_sid(std::string_view s, std::string_view prefix) {
  if (s.size() != 34 || s.substr(0, 2) != prefix) return false;
  for (char c : s.substr(2))
    if (!tayori::sdk::is_hex(c)) return false;
  return true;
}

// E.164 (ITU-T E.164 §6): '+', a country code that does not start with 0, at most 15 digits in all.
bool is_e164(std::string_view s) {
  if (s.size() < 3 || s.size() > 16 || s[0] != '+' || s[1] == '0') return false;
  for (char c : s.substr(1))
    if (!is_digit(c)) return false;
  return true;
}

// application/x-www-form-urlencoded serialisation of UTF-8 text (WHATWG URL "urlencoded serializer"):
// ALPHA / DIGIT / "*-._" stay, space becomes '+', every other byte is %XX. '+' in an E.164 number is
// therefore sent as %2B, as it must be, and Japanese text as its percent-encoded UTF-8 bytes.
std::string form_encode(std::string_view s) {
  static const char* hex = "0123456789ABCDEF";
  std::string out;
  out.reserve(s.size() * 3);
  for (unsigned char c : s) {
    if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || is_digit(static_cast<char>(c)) || c == '*' || c == '-' ||
        c == '.' || c == '_') {
      out += static_cast<char>(c);
    } else if (c == ' ') {
      out += '+';
    } else {
      out += '%';
      out += hex[c >> 4];
      out += hex[c & 0xF];
    }
  }
  return out;
}

// Twilio errors are `{code, message, more_info, status}`; code is Twilio's own five-digit error number.
struct TwilioError {
  int code = 0;
  std::string message;
};

TwilioError parse_error(std::string_view body) {
  TwilioError e;
  auto j = nlohmann::json::parse(body, nullptr, false);
  if (!j.is_object()) return e;
  if (j.contains("code") && j["code"].is_number_integer()) e.code = j["code"].get<int>();
  if (j.contains("message") && j["message"].is_string()) e.message = j["message"].get<std::string>();
  return e;
}

class SmsTwilio {
 public:
  SmsTwilio(const tayori::sdk::Host& host, const tayori::sdk::Settings& settings)
      : host_(host),
        base_url_(tayori::sdk::without_trailing_slashes(settings.get("base_url"))),
        account_sid_(settings.get("account_sid")),
        auth_token_(settings.get("auth_token")),
        from_(settings.find("from").value_or("")),
        messaging_service_sid_(settings.find("messaging_service_sid").value_or("")),
        status_callback_(settings.get_bool("status_callback")) {
    if (!is_sid(account_sid_, "AC"))
      throw Error("account_sid: must be \"AC\" followed by 32 hex digits (the Account SID in the Twilio console)");
    if (auth_token_.empty()) throw Error("auth_token: is empty");
    if (from_.empty() == messaging_service_sid_.empty())
      throw Error("from, messaging_service_sid: give exactly one (a Twilio number to send from, or a Messaging "
                  "Service whose sender pool picks one)");
    if (!from_.empty() && !is_e164(from_))
      throw Error("from: must be an E.164 number like +15017122661 (short codes and alphanumeric senders go "
                  "through messaging_service_sid)");
    if (!messaging_service_sid_.empty() && !is_sid(messaging_service_sid_, "MG"))
      throw Error("messaging_service_sid: must be \"MG\" followed by 32 hex digits");
    if (auto v = settings.find("validity_period")) {
      int64_t ms = settings.get_int("validity_period");
      if (ms % 1000 != 0 || ms / 1000 < kMinValiditySeconds || ms / 1000 > kMaxValiditySeconds)
        throw Error("validity_period: Twilio accepts whole seconds from 1s to 36000s (10h), got " + *v + "ms");
      validity_seconds_ = ms / 1000;
    }
    // Basic credentials (RFC 7617) are fixed for the instance: encode them once.
    authorization_ = "Basic " + host_.base64(account_sid_ + ":" + auth_token_);
  }

  void build(const Delivery& d, tayori::sdk::RequestSink& sink) {
    if (!is_e164(d.contact()))
      throw Error("contact: \"" + std::string(d.contact()) + "\" is not an E.164 number (+ country code, up to 15 digits)");
    auto text = d.content("text");
    if (!text || text->empty()) text = d.content("body");
    if (!text || text->empty()) throw Error("text: an SMS needs content \"text\" (or \"body\")");
    if (size_t chars = tayori::sdk::utf8_code_points(*text); chars > kMaxBodyChars)
      throw Error("text: longer than Twilio's 1600 characters (" + std::to_string(chars) + ")");

    std::string form = "To=" + form_encode(d.contact());
    form += !from_.empty() ? "&From=" + form_encode(from_) : "&MessagingServiceSid=" + form_encode(messaging_service_sid_);
    form += "&Body=" + form_encode(*text);
    if (status_callback_ && !d.callback_url().empty()) form += "&StatusCallback=" + form_encode(d.callback_url());
    if (auto seconds = validity_for(d)) form += "&ValidityPeriod=" + std::to_string(*seconds);

    tayori::sdk::Request r;
    r.url = base_url_ + "/2010-04-01/Accounts/" + account_sid_ + "/Messages.json";
    r.headers = {{"Authorization", authorization_},
                 {"Content-Type", "application/x-www-form-urlencoded"},
                 {"Accept", "application/json"}};
    r.body = std::move(form);
    sink.add(r);
  }

  Outcome classify(const Delivery&, const tayori::sdk::Response& r) {
    if (r.transport_failed()) return Outcome::retry("twilio.transport: " + std::string(r.transport_error_text()));
    const int status = r.status();
    if (status == 200 || status == 201) {
      auto j = nlohmann::json::parse(r.body(), nullptr, false);
      std::string sid;
      if (j.is_object() && j.contains("sid") && j["sid"].is_string()) sid = j["sid"].get<std::string>();
      return Outcome::delivered(sid);
    }
    const TwilioError e = parse_error(r.body());
    const std::string reason = "twilio." + std::to_string(e.code != 0 ? e.code : status) +
                               (e.message.empty() ? "" : ": " + e.message);
    switch (e.code) {
      case 21211:  // invalid 'To' number: it will never be one
      case 21614:  // 'To' is not SMS-capable (a landline): no SMS will ever reach it
        return Outcome::permanent(reason, true);
      case 21610:
        // The recipient replied STOP: Twilio refuses every message until they send START. The bare code is
        // the reason so the host can match it; deactivating suppresses the number (the inbound webhook
        // will record the opt-out itself once it exists).
        return Outcome::permanent("twilio.21610", true);
      case 20429:
        return Outcome::retry(reason, tayori::sdk::retry_after_ms(r, host_.now_ms()));
      case 20003:  // "Authenticate": the account SID or auth token is wrong
        return Outcome::permanent(reason);
      default:
        break;
    }
    if (status == 429 || status >= 500) return Outcome::retry(reason, tayori::sdk::retry_after_ms(r, host_.now_ms()));
    return Outcome::permanent(reason);  // 401/403 (configuration) and every other 4xx: sending again will not help
  }

 private:
  // ValidityPeriod: the configured one, shortened to the message's remaining lifetime when that is sooner.
  // Without a setting, a lifetime longer than Twilio's maximum sends nothing, so a Messaging Service's own
  // validity period still applies.
  std::optional<int64_t> validity_for(const Delivery& d) const {
    std::optional<int64_t> seconds = validity_seconds_;
    if (d.expires_at_ms() > 0) {
      int64_t remaining_ms = d.expires_at_ms() - host_.now_ms();
      if (remaining_ms <= 0) throw Error("expires_at: the message expired before it could be sent");
      int64_t remaining = remaining_ms / 1000;
      if (remaining < kMaxValiditySeconds && (!seconds || remaining < *seconds))
        seconds = remaining < kMinValiditySeconds ? kMinValiditySeconds : remaining;
    }
    return seconds;
  }

  tayori::sdk::Host host_;
  std::string base_url_;
  std::string account_sid_;
  std::string auth_token_;
  std::string from_;
  std::string messaging_service_sid_;
  bool status_callback_;
  std::optional<int64_t> validity_seconds_;
  std::string authorization_;
};

const tayori_setting_spec kSettings[] = {
    {"base_url", TAYORI_SETTING_URL, 0, "https://api.twilio.com", "Twilio API base URL (the simulator in tests)"},
    {"account_sid", TAYORI_SETTING_STRING, 1, nullptr, "Account SID, AC + 32 hex digits"},
    {"auth_token", TAYORI_SETTING_SECRET, 1, nullptr, "auth token (YAML: auth_token_env)"},
    {"from", TAYORI_SETTING_STRING, 0, nullptr, "E.164 sender number (or messaging_service_sid)"},
    {"messaging_service_sid", TAYORI_SETTING_STRING, 0, nullptr, "Messaging Service SID, MG + 32 hex (or from)"},
    {"validity_period", TAYORI_SETTING_DURATION, 0, nullptr, "ValidityPeriod, 1s..10h: drop if still queued after it"},
    {"status_callback", TAYORI_SETTING_BOOL, 0, "true", "ask Twilio for delivery receipts at the inbound URL"},
};

}  // namespace

TAYORI_PLUGIN(SmsTwilio, "sms_twilio", "0.1.0", "Twilio Programmable Messaging: SMS", "phone", kSettings,
              sizeof kSettings / sizeof kSettings[0])
