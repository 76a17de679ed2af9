// sms_twilio — SMS through Twilio Programmable Messaging (docs/providers.md "Twilio"): one Create Message request
// per delivery, sans-I/O (the host sends it and hands the answer back to classify()).
//
//   POST {base_url}/2010-04-01/Accounts/{AccountSid}/Messages.json
//   Authorization: Basic base64(AccountSid:AuthToken), Content-Type: application/x-www-form-urlencoded
//   To, From | MessagingServiceSid, Body, StatusCallback?, ValidityPeriod?
//
// Twilio has no idempotency key for Create Message: a request that timed out after Twilio accepted it is
// retried like any transport failure and may reach the handset twice. The host's backoff keeps this rare.
//
// Two-way: response options are appended to the text as numbered choices ("1 気になる / 2 あとで"). Twilio's
// webhooks (incoming messages and status callbacks, POST /inbound/sms_twilio/<channel>) are verified by
// X-Twilio-Signature and normalised: STOP family -> opted_out, START family -> opted_in, "1".."9" -> a
// numbered reply, other text -> replied; MessageStatus delivered -> delivered, failed/undelivered -> failed.
#include <cstdint>
#include <nlohmann/json.hpp>
#include <algorithm>
#include <optional>
#include <string>
#include <vector>
#include <tayori/plugin.hpp>
#include <tayori/provider_helpers.hpp>

namespace {

// The Message resource's top-level "sid" ("" when the answer has none, or is cut short). The resource has
// some twenty members and only the sid is wanted, so the body is walked once, without a JSON parser: a parse
// (even as SAX events, which build nothing) was a sixth of the transport thread's CPU in the e2e bench,
// because its lexer decodes every member. The walk tracks strings (with their escapes) and nesting only: a
// "sid" key counts at depth 1, and the answer counts only once its top-level object closes (an answer cut
// short gives no sid, as a failed parse did). Anything else malformed is the HTTP layer's concern: a 2xx
// body that arrived whole from Twilio is its JSON.
std::string top_level_sid(std::string_view body) {
  auto is_space = [](char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; };  // RFC 8259 §2
  auto skip_space = [&](size_t i) {
    while (i < body.size() && is_space(body[i])) ++i;
    return i;
  };
  size_t i = skip_space(0);
  if (i == body.size() || body[i] != '{') return "";
  std::string sid;
  int depth = 0;
  bool at_sid = false;  // the last key read was the top level's "sid", and its value is next
  while (i < body.size()) {
    const char c = body[i];
    if (c == '"') {
      const size_t begin = ++i;
      bool escaped = false;
      for (; i < body.size() && body[i] != '"'; ++i) {
        if (body[i] == '\\') {
          escaped = true;
          ++i;  // the escaped character, which may be a quote
        }
      }
      if (i >= body.size()) return "";
      const std::string_view text = body.substr(begin, i - begin);
      i = skip_space(i + 1);
      if (i < body.size() && body[i] == ':') {
        at_sid = depth == 1 && text == "sid";
        ++i;
      } else {
        // A sid is "SM" and 32 hex digits; one written with escapes is decoded by the JSON library.
        if (at_sid && sid.empty()) {
          if (!escaped) {
            sid = text;
          } else if (auto decoded = nlohmann::json::parse("\"" + std::string(text) + "\"", nullptr, false);
                     decoded.is_string()) {
            sid = decoded.get<std::string>();
          }
        }
        at_sid = false;
      }
      continue;
    }
    if (c == '{' || c == '[') {
      ++depth;
    } else if (c == '}' || c == ']') {
      if (--depth == 0) return skip_space(i + 1) == body.size() ? sid : "";
    }
    if (!is_space(c)) at_sid = false;  // a value that is not a string
    ++i;
  }
  return "";
}

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

// Twilio's opt-out and opt-in keywords (Twilio "Advanced Opt-Out": the default keyword lists), matched on
// the whole trimmed body, case-insensitively. HELP and INFO are left as replies.
constexpr std::string_view kStopWords[] = {"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT"};
constexpr std::string_view kStartWords[] = {"START", "YES", "UNSTOP"};

// The answer Twilio expects from a messaging webhook: TwiML with nothing to do (no auto-reply).
constexpr std::string_view kEmptyTwiml = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response/>";

std::string_view trimmed(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t' || s.front() == '\r' || s.front() == '\n')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r' || s.back() == '\n')) s.remove_suffix(1);
  return s;
}

template <size_t N>
bool is_one_of(std::string_view word, const std::string_view (&words)[N]) {
  return std::any_of(std::begin(words), std::end(words), [&](std::string_view w) { return tayori::sdk::iequals(word, w); });
}

// Error codes of a failed or undelivered message that say the number itself cannot receive SMS
// (Twilio error dictionary: 30005 unknown or inactive destination, 30006 landline or unreachable
// carrier). Others in 30003..30008 (unreachable handset, blocked, carrier violation, unknown) may pass.
bool number_is_dead(std::string_view code) { return code == "30005" || code == "30006"; }

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
    auto content = d.content("text");
    if (!content || content->empty()) content = d.content("body");
    if (!content || content->empty()) throw Error("text: an SMS needs content \"text\" (or \"body\")");
    const std::string numbered = choices(d);
    const std::string text = std::string(*content) + numbered;
    if (size_t chars = tayori::sdk::utf8_code_points(text); chars > kMaxBodyChars)
      throw Error("text: longer than Twilio's 1600 characters (" + std::to_string(chars) + ")" +
                  (numbered.empty() ? "" : " with its numbered choices"));

    std::string form = "To=" + form_encode(d.contact());
    form += !from_.empty() ? "&From=" + form_encode(from_) : "&MessagingServiceSid=" + form_encode(messaging_service_sid_);
    form += "&Body=" + form_encode(text);
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
    if (status == 200 || status == 201) return Outcome::delivered(top_level_sid(r.body()));
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

  // A messaging webhook or status callback (Twilio "Webhook security"): X-Twilio-Signature =
  // base64(HMAC-SHA1(auth token, the full URL Twilio called + every POST parameter as name+value, sorted
  // by name)). The URL is the public one the host reconstructs (InboundRequest::url), query included.
  // That URL is what the host must know: the host refuses a channel of this plugin without a public URL.
  static constexpr uint32_t kInboundFlags = TAYORI_INBOUND_SIGNS_URL;
  void inbound(const tayori::sdk::InboundRequest& r, tayori::sdk::InboundSink& sink) {
    auto signature = r.header("x-twilio-signature");
    if (!signature) throw tayori::sdk::Refused(401, "x-twilio-signature: missing");
    auto params = tayori::sdk::parse_form(r.body());
    if (!host_.verify_hmac_base64(TAYORI_HASH_SHA1, auth_token_, signed_text(r.url(), params), *signature))
      throw tayori::sdk::Refused(401, "x-twilio-signature: does not match the URL and parameters");
    auto param = [&](std::string_view name) -> std::string {
      for (auto& [k, v] : params)
        if (k == name) return v;
      return {};
    };
    const std::string sid = param("MessageSid").empty() ? param("SmsSid") : param("MessageSid");
    const std::string status = param("MessageStatus").empty() ? param("SmsStatus") : param("MessageStatus");
    if (!status.empty() && status != "received") {
      if (sid.empty()) throw tayori::sdk::Refused(400, "MessageSid: a status callback without one matches nothing");
      // A status callback for a message we sent: the receipt is the final state; the steps before it
      // (queued, sending, sent) say nothing Tayori acts on.
      if (status == "delivered") {
        sink.emit(tayori::sdk::InboundEvent::delivered(param("To"), sid).with_id(sid + ":" + status));
      } else if (status == "failed" || status == "undelivered") {
        const std::string code = param("ErrorCode");
        sink.emit(tayori::sdk::InboundEvent::failed(param("To"), sid, "twilio." + (code.empty() ? status : code),
                                                    number_is_dead(code))
                      .with_id(sid + ":" + status));
      }
    } else {
      if (param("From").empty()) throw tayori::sdk::Refused(400, "From: an incoming message without a sender");
      sink.emit(incoming(param("From"), param("Body")).with_id(sid));  // Twilio sends each MessageSid once
    }
    sink.answer("text/xml", kEmptyTwiml);
  }

 private:
  // What the recipient's text means: a keyword, a numbered choice, or free text.
  static tayori::sdk::InboundEvent incoming(std::string from, std::string_view body) {
    using tayori::sdk::InboundEvent;
    std::string_view word = trimmed(body);
    if (is_one_of(word, kStopWords)) {
      InboundEvent e = InboundEvent::opted_out(std::move(from), false);
      e.text = std::string(word);  // the keyword, for the event's detail
      return e;
    }
    if (is_one_of(word, kStartWords)) {
      // Twilio lifts its own block of the number on START, so a suppression made for 21610 is lifted too.
      InboundEvent e = InboundEvent::opted_in(std::move(from), true);
      e.text = std::string(word);
      return e;
    }
    if (word.size() == 1 && word[0] >= '1' && word[0] <= '9')
      return InboundEvent::replied(std::move(from), std::string(body), std::string(word));
    return InboundEvent::replied(std::move(from), std::string(body));
  }

  // The text Twilio signs: the URL, then each parameter's name and value, sorted by name (and value, for
  // a repeated name, so the order is total).
  static std::string signed_text(std::string_view url, std::vector<std::pair<std::string, std::string>> params) {
    std::sort(params.begin(), params.end());
    std::string text(url);
    for (auto& [k, v] : params) (text += k) += v;
    return text;
  }

  // The response options as numbered choices after the text: "\n1 気になる / 2 あとで / 3 興味なし". A reply
  // with just the number answers (inbound: replied with the number as the option).
  static std::string choices(const Delivery& d) {
    auto options = d.responses();
    if (options.empty()) return {};
    if (options.size() > 9) throw Error("responses: an SMS offers at most 9 numbered choices, got " + std::to_string(options.size()));
    std::string line = "\n";
    for (size_t i = 0; i < options.size(); ++i)
      (line += (i == 0 ? "" : " / ") + std::to_string(i + 1) + " ") += options[i].label;
    return line;
  }

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

TAYORI_PLUGIN(SmsTwilio, "sms_twilio", "0.2.0", "Twilio Programmable Messaging: SMS with numbered choices, webhooks",
              "phone", kSettings,
              sizeof kSettings / sizeof kSettings[0])
