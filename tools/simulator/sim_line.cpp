// LINE Messaging API (base https://api.line.me): push and multicast with bearer auth, X-Line-Retry-Key
// semantics and message validation, plus the signed webhook sender. Wire facts: docs/providers.md "LINE Messaging API".
//
//   POST /v2/bot/message/push       {to, messages[1..5]}            -> 200 {sentMessages:[{id, quoteToken}]}
//   POST /v2/bot/message/multicast  {to:[1..500 user ids], messages} -> 200 {}
// Errors are {message, details?:[{message, property}]}. Every answer carries x-line-request-id.
#include <map>
#include <mutex>
#include <set>

#include "sim_outbound.hpp"
#include "sim_providers.hpp"
#include "sim_util.hpp"
#include "crypto/crypto.hpp"

namespace tayori::sim {
namespace {

struct Detail {
  std::string message;
  std::string property;
};

SimResponse line_answer(int status, const Json& body) {
  SimResponse r = json_response(status, body);
  r.headers.emplace_back("x-line-request-id", uuid_v4());
  return r;
}

SimResponse line_error(int status, const std::string& message, const std::vector<Detail>& details = {}) {
  Json body = {{"message", message}};
  if (!details.empty()) {
    Json list = Json::array();
    for (const auto& d : details) list.push_back({{"message", d.message}, {"property", d.property}});
    body["details"] = list;
  }
  return line_answer(status, body);
}

// Validation failures come back as one 400 listing every violation, as the real API does
// ("The request body has 2 error(s)").
SimResponse line_invalid(const std::vector<Detail>& details) {
  return line_error(400, "The request body has " + std::to_string(details.size()) + " error(s)", details);
}

bool is_user_id(const Json& v) {
  // A user id is "U" followed by 32 hex digits (33 characters).
  if (!v.is_string()) return false;
  const std::string& s = v.get_ref<const std::string&>();
  return s.size() == 33 && s[0] == 'U' && is_hex(std::string_view(s).substr(1));
}

std::string size_rule(size_t lo, size_t hi) {
  return "Size must be between " + std::to_string(lo) + " and " + std::to_string(hi);
}
std::string length_rule(size_t hi) { return "Length must be between 0 and " + std::to_string(hi); }

// Lengths are counted in UTF-16 code units, as LINE's Java servers count String.length() (unconfirmed;
// the stricter of the two plausible counts, so a plugin that passes here is not rejected by LINE).
void check_text(const Json& obj, const char* key, size_t max, bool required, const std::string& prop,
                std::vector<Detail>& errs) {
  if (!obj.contains(key)) {
    if (required) errs.push_back({"Must not be null", prop + "." + key});
    return;
  }
  const Json& v = obj[key];
  if (!v.is_string()) {
    errs.push_back({"Must be a string", prop + "." + key});
    return;
  }
  const std::string& s = v.get_ref<const std::string&>();
  if (required && s.empty())
    errs.push_back({"May not be empty", prop + "." + key});
  else if (utf16_units(s) > max)
    errs.push_back({length_rule(max), prop + "." + key});
}

// An action object (quick-reply item or template button), LINE "Action objects".
void check_action(const Json& action, const std::string& prop, std::vector<Detail>& errs) {
  static const std::set<std::string> types = {"postback",       "message",        "uri",
                                              "datetimepicker", "camera",         "cameraRoll",
                                              "location",       "richmenuswitch", "clipboard"};
  if (!action.is_object()) {
    errs.push_back({"Must not be null", prop});
    return;
  }
  std::string type = action.value("type", "");
  if (!types.count(type)) {
    errs.push_back(
        {"Must be one of the following values: [postback, message, uri, datetimepicker, camera, "
         "cameraRoll, location, richmenuswitch, clipboard]",
         prop + ".type"});
    return;
  }
  check_text(action, "label", 20, false, prop, errs);
  if (type == "postback") {
    check_text(action, "data", 300, true, prop, errs);
    check_text(action, "displayText", 300, false, prop, errs);
  } else if (type == "message") {
    check_text(action, "text", 300, true, prop, errs);
  } else if (type == "uri") {
    check_text(action, "uri", 1000, true, prop, errs);
  }
}

void check_message(const Json& m, const std::string& prop, std::vector<Detail>& errs) {
  static const std::set<std::string> types = {"text",     "sticker",  "image",    "video", "audio",
                                              "location", "imagemap", "template", "flex"};
  if (!m.is_object()) {
    errs.push_back({"Must not be null", prop});
    return;
  }
  std::string type = m.value("type", "");
  if (!types.count(type)) {
    errs.push_back(
        {"Must be one of the following values: [text, image, video, audio, location, sticker, "
         "template, imagemap, flex]",
         prop + ".type"});
    return;
  }
  if (type == "text") check_text(m, "text", 5000, true, prop, errs);
  if (type == "template" || type == "flex" || type == "imagemap") check_text(m, "altText", 400, true, prop, errs);
  if (type == "template") {
    const Json t = m.contains("template") ? m["template"] : Json();
    if (!t.is_object()) {
      errs.push_back({"Must not be null", prop + ".template"});
    } else if (t.value("type", "") == "buttons" || t.value("type", "") == "confirm") {
      size_t max = t.value("type", "") == "buttons" ? 4 : 2;
      const Json a = t.contains("actions") ? t["actions"] : Json();
      if (!a.is_array() || a.empty() || a.size() > max)
        errs.push_back({size_rule(1, max), prop + ".template.actions"});
      else
        for (size_t i = 0; i < a.size(); ++i)
          check_action(a[i], prop + ".template.actions[" + std::to_string(i) + "]", errs);
    }
  }
  if (type == "flex" && !(m.contains("contents") && m["contents"].is_object()))
    errs.push_back({"Must not be null", prop + ".contents"});
  if (m.contains("quickReply")) {
    const Json& q = m["quickReply"];
    const Json items = q.is_object() && q.contains("items") ? q["items"] : Json();
    if (!items.is_array() || items.empty() || items.size() > 13) {
      errs.push_back({size_rule(1, 13), prop + ".quickReply.items"});
    } else {
      for (size_t i = 0; i < items.size(); ++i) {
        std::string ip = prop + ".quickReply.items[" + std::to_string(i) + "]";
        if (!items[i].is_object() || items[i].value("type", "") != "action")
          errs.push_back({"Must be one of the following values: [action]", ip + ".type"});
        else
          check_action(items[i].contains("action") ? items[i]["action"] : Json(), ip + ".action", errs);
      }
    }
  }
}

void check_messages(const Json& body, std::vector<Detail>& errs) {
  const Json messages = body.contains("messages") ? body["messages"] : Json();
  if (!messages.is_array() || messages.empty() || messages.size() > 5) {
    errs.push_back({size_rule(1, 5), "messages"});
    return;
  }
  for (size_t i = 0; i < messages.size(); ++i) check_message(messages[i], "messages[" + std::to_string(i) + "]", errs);
}

class Line final : public Provider {
 public:
  explicit Line(LineConfig c) : config_(std::move(c)) {}

  const char* name() const override { return "line"; }
  bool owns(std::string_view path) const override { return path.rfind("/v2/bot/", 0) == 0; }
  bool sends_retry_after() const override { return false; }  // docs/providers.md: LINE sends no Retry-After

  SimResponse handle(const SimRequest& req, ProviderContext& ctx) override {
    bool push = req.path == "/v2/bot/message/push";
    bool multicast = req.path == "/v2/bot/message/multicast";
    if (!push && !multicast) return line_error(404, "Not found");
    if (req.method != "POST") return line_error(405, "Method Not Allowed");
    auto token = bearer_token(req.header("authorization"));
    if (!token || !crypto::constant_time_equal(*token, config_.channel_token))
      return line_error(401,
                        "Authentication failed. Confirm that the access token in the authorization header "
                        "is valid.");

    // X-Line-Retry-Key: a UUID; a key already accepted answers 409 whatever the body, with the first
    // request's id in x-line-accepted-request-id (and, for push, its sentMessages).
    std::string key(req.header("x-line-retry-key"));
    if (req.header_count("x-line-retry-key") > 0 && !is_uuid(key))
      return line_error(400, "The value for the 'X-Line-Retry-Key' header is invalid");
    if (!key.empty()) {
      std::lock_guard lock(mu_);
      auto it = accepted_.find(key);
      if (it != accepted_.end()) {
        Json body = {{"message", "The retry key is already accepted"}};
        if (!it->second.sent.is_null()) body["sentMessages"] = it->second.sent;
        SimResponse r = line_answer(409, body);
        r.headers.emplace_back("x-line-accepted-request-id", it->second.request_id);
        return r;
      }
    }

    Json body = Json::parse(req.body, nullptr, false);
    if (!body.is_object()) return line_invalid({{"The request body could not be parsed as JSON", ""}});
    std::vector<Detail> errs;
    std::vector<std::string> recipients;
    const Json to = body.contains("to") ? body["to"] : Json();
    if (push) {
      if (!is_user_id(to))
        errs.push_back({"Invalid user ID", "to"});
      else
        recipients.push_back(to.get<std::string>());
    } else if (!to.is_array() || to.empty() || to.size() > 500) {
      errs.push_back({size_rule(1, 500), "to"});
    } else {
      for (size_t i = 0; i < to.size(); ++i) {
        if (!is_user_id(to[i]))
          errs.push_back({"Invalid user ID", "to[" + std::to_string(i) + "]"});
        else
          recipients.push_back(to[i].get<std::string>());
      }
    }
    check_messages(body, errs);
    if (!errs.empty()) return line_invalid(errs);

    // A push to a listed contact gets the dead-contact answer. Multicast never reports individual
    // recipients (LINE silently skips users who cannot receive), so listed contacts are skipped there.
    if (push)
      if (auto dead = ctx.contact_fault(*this, recipients[0])) return *dead;

    SimResponse r;
    Json sent = nullptr;
    if (push) {
      sent = Json::array();
      std::lock_guard lock(mu_);
      for (size_t i = 0; i < body["messages"].size(); ++i) {
        std::string id = std::to_string(++next_message_id_);
        sent.push_back({{"id", id}, {"quoteToken", "sim-quote-" + id}});
      }
      r = line_answer(200, {{"sentMessages", sent}});
    } else {
      r = line_answer(200, Json::object());
    }
    if (!key.empty()) {
      std::lock_guard lock(mu_);
      accepted_[key] = {r.headers.front().second, sent};
    }
    return r;
  }

  SimResponse error_for_status(int status) const override {
    switch (status) {
      case 400:
        return line_error(400, "The request body has 1 error(s)");
      case 401:
        return line_error(401,
                          "Authentication failed. Confirm that the access token in the authorization header is valid.");
      case 403:
        return line_error(403, "Access to this API is not available for your account");
      case 404:
        return line_error(404, "Not found");
      case 409:
        return line_error(409, "The retry key is already accepted");
      case 429:
        return line_error(429, "The API rate limit has been exceeded. Try again later.");
      default:
        return line_error(status, status >= 500 ? "An error occurred in the API server" : "Error");
    }
  }

  std::optional<SimResponse> contact_error(std::string_view code, int64_t) const override {
    // LINE has no dead-contact code: a push to a user id that cannot receive gets 400 "Failed to send
    // messages". Other codes name an HTTP status ("403", "429", "500"...) answered with LINE's body.
    if (code == "unregistered") return line_error(400, "Failed to send messages");
    auto status = parse_int(code);
    if (!status || *status < 400 || *status > 599) return std::nullopt;
    return error_for_status(static_cast<int>(*status));
  }

  // POST /_sim/webhooks/line {url, channel_secret?, destination?, events:[...]}: sends {destination, events}
  // to url with x-line-signature = base64(HMAC-SHA256(channel secret, body)) (docs/providers.md "LINE Messaging API").
  std::optional<WebhookJob> webhook(const SimRequest& control) override {
    Json doc = Json::parse(control.body, nullptr, false);
    auto bad = [](const std::string& why) { return WebhookJob{json_response(400, {{"error", why}}), {}}; };
    if (!doc.is_object() || !doc.contains("url") || !doc["url"].is_string())
      return bad("expected {\"url\":..., \"channel_secret\":..., \"events\":[...]}");
    std::string secret = doc.value("channel_secret", config_.channel_secret);
    if (secret.empty()) return bad("no channel_secret (and no --line-channel-secret)");
    Json events = doc.contains("events") ? doc["events"] : Json::array();
    if (!events.is_array()) return bad("\"events\" must be an array");
    int64_t now = unix_ms();
    for (Json& e : events) {
      if (!e.is_object()) return bad("each event must be an object");
      // Fill what every real event carries, when the caller left it out.
      if (!e.contains("webhookEventId")) e["webhookEventId"] = "01" + random_hex(24);
      if (!e.contains("timestamp")) e["timestamp"] = now;
      if (!e.contains("mode")) e["mode"] = "active";
      if (!e.contains("deliveryContext")) e["deliveryContext"] = {{"isRedelivery", false}};
    }
    std::string body = Json{{"destination", doc.value("destination", config_.destination)}, {"events", events}}.dump();
    auto mac = crypto::hmac_sha256(secret, body);
    if (!mac) return bad("signing failed: " + mac.error().message);
    std::vector<std::pair<std::string, std::string>> headers = {
        {"Content-Type", "application/json; charset=utf-8"},
        {"User-Agent", "LineBotWebhook/2.0"},
        {"x-line-signature", crypto::base64_encode(mac.value())}};
    std::string url = doc["url"].get<std::string>();
    return WebhookJob{std::nullopt, [url, body, headers] {
                        std::vector<std::string> lines;
                        for (const auto& [k, v] : headers) lines.push_back(k + ": " + v);
                        return webhook_report(http_post(url, body, lines), url, headers, body);
                      }};
  }

 private:
  struct Accepted {
    std::string request_id;
    Json sent;  // push: the first answer's sentMessages; multicast: null
  };

  LineConfig config_;
  std::mutex mu_;
  std::map<std::string, Accepted> accepted_;
  long long next_message_id_ = 100000000000000;
};

}  // namespace

std::unique_ptr<Provider> make_line(LineConfig config) { return std::make_unique<Line>(std::move(config)); }

}  // namespace tayori::sim
