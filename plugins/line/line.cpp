// line — the LINE Messaging API channel (PROVIDERS.md "LINE Messaging API"): one push request per
// delivery, sans-I/O (the host sends it and hands the answer back to classify()).
//
// Idempotency: every push carries `X-Line-Retry-Key`, a UUID derived from the delivery id, so every retry
// of one delivery reuses the same key; LINE answers a retry of an already accepted request with 409,
// which therefore counts as delivered.
#include <cstdint>
#include <nlohmann/json.hpp>
#include <tayori/plugin.hpp>

namespace {

using tayori::sdk::Delivery;
using tayori::sdk::Outcome;

constexpr size_t kMaxTextChars = 5000;  // LINE text message limit (characters, counted as code points here)

size_t utf8_code_points(std::string_view s) {
  size_t n = 0;
  for (unsigned char c : s)
    if ((c & 0xC0) != 0x80) ++n;
  return n;
}

bool is_hex(char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); }

// 8-4-4-4-12 hex UUID text from the delivery id. The dispatcher's ids are 32 lower-case hex digits and are
// used as they are; any other id is hashed (two FNV-1a 64 passes) so the key stays deterministic.
std::string retry_key(std::string_view delivery_id) {
  std::string hex;
  bool all_hex = delivery_id.size() == 32;
  for (char c : delivery_id) all_hex = all_hex && is_hex(c);
  if (all_hex) {
    for (char c : delivery_id) hex += static_cast<char>(c >= 'A' && c <= 'F' ? c - 'A' + 'a' : c);
  } else {
    static const char* digits = "0123456789abcdef";
    for (uint64_t seed : {0xcbf29ce484222325ULL, 0x84222325cbf29ce4ULL}) {
      uint64_t h = seed;
      for (unsigned char c : delivery_id) h = (h ^ c) * 0x100000001b3ULL;
      for (int shift = 60; shift >= 0; shift -= 4) hex += digits[(h >> shift) & 0xF];
    }
  }
  return hex.substr(0, 8) + "-" + hex.substr(8, 4) + "-" + hex.substr(12, 4) + "-" + hex.substr(16, 4) + "-" +
         hex.substr(20, 12);
}

// LINE errors are `{message, details:[{message, property}]}` with no machine code.
std::string error_text(std::string_view body) {
  auto j = nlohmann::json::parse(body, nullptr, false);
  if (!j.is_object() || !j.contains("message") || !j["message"].is_string()) return "no error message";
  std::string text = j["message"].get<std::string>();
  if (j.contains("details") && j["details"].is_array())
    for (const auto& d : j["details"])
      if (d.is_object() && d.value("message", "") != "")
        text += "; " + (d.value("property", "") != "" ? d.value("property", "") + ": " : "") + d.value("message", "");
  return text;
}

class Line {
 public:
  Line(const tayori::sdk::Host&, const tayori::sdk::Settings& settings)
      : base_url_(settings.get("base_url")), token_(settings.get("channel_access_token")) {
    while (!base_url_.empty() && base_url_.back() == '/') base_url_.pop_back();
    if (token_.empty()) throw tayori::sdk::Error("channel_access_token: is empty");
  }

  void build(const Delivery& d, tayori::sdk::RequestSink& sink) {
    auto text = d.content("text");
    if (!text) text = d.content("body");
    if (!text || text->empty()) throw tayori::sdk::Error("text: a LINE message needs content \"text\" (or \"body\")");
    if (utf8_code_points(*text) > kMaxTextChars)
      throw tayori::sdk::Error("text: longer than LINE's 5000 characters");
    if (d.contact().empty()) throw tayori::sdk::Error("contact: no LINE user id");
    tayori::sdk::Request r;
    r.url = base_url_ + "/v2/bot/message/push";
    r.headers = {{"Authorization", "Bearer " + token_},
                 {"Content-Type", "application/json"},
                 {"X-Line-Retry-Key", retry_key(d.delivery_id())}};
    r.body = nlohmann::json{{"to", d.contact()},
                            {"messages", nlohmann::json::array({{{"type", "text"}, {"text", *text}}})}}
                 .dump();
    sink.add(r);
  }

  Outcome classify(const Delivery&, const tayori::sdk::Response& r) {
    if (r.transport_failed()) return Outcome::retry("line.transport: " + std::string(r.transport_error_text()));
    int s = r.status();
    if (s == 200) {
      auto j = nlohmann::json::parse(r.body(), nullptr, false);
      std::string id;
      if (j.is_object() && j.contains("sentMessages") && j["sentMessages"].is_array() && !j["sentMessages"].empty() &&
          j["sentMessages"][0].is_object() && j["sentMessages"][0].contains("id") &&
          j["sentMessages"][0]["id"].is_string())
        id = j["sentMessages"][0]["id"].get<std::string>();
      return Outcome::delivered(id);
    }
    if (s == 409) {  // our retry key was already accepted: an earlier attempt got through
      Outcome o = Outcome::delivered();
      o.reason = "line.409_already_accepted";
      return o;
    }
    if (s == 400) return Outcome::permanent("line.400: " + error_text(r.body()));
    if (s == 401 || s == 403) return Outcome::permanent("line.auth");  // a configuration problem, not the user's
    if (s == 429) return Outcome::retry("line.429");                   // no Retry-After: the core's backoff decides
    if (s >= 500) return Outcome::retry("line." + std::to_string(s));
    return Outcome::permanent("line." + std::to_string(s) + ": " + error_text(r.body()));
  }

 private:
  std::string base_url_;
  std::string token_;
};

const tayori_setting_spec kSettings[] = {
    {"base_url", TAYORI_SETTING_URL, 0, "https://api.line.me", "LINE API base URL (the simulator in tests)"},
    {"channel_access_token", TAYORI_SETTING_SECRET, 1, nullptr, "channel access token (YAML: channel_access_token_env)"},
};

}  // namespace

TAYORI_PLUGIN(Line, "line", "0.1.0", "LINE Messaging API: text push messages", "line", kSettings,
              sizeof kSettings / sizeof kSettings[0])
