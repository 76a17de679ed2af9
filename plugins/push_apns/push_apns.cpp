// push_apns — Apple Push Notification service, token-based provider API (docs/providers.md "APNs"): one
// `POST /3/device/<token>` per delivery, sans-I/O (the host's transport speaks HTTP/2 over TLS via ALPN,
// which APNs requires).
//
// The provider token is an ES256 JWT signed with the team's .p8 key. Apple refuses tokens older than one
// hour and answers 429 TooManyProviderTokenUpdates when a provider re-mints more often than every
// 20 minutes, so the token lives in the host's token cache and is reused for `token_refresh`; a 403
// ExpiredProviderToken forgets exactly the token that was refused (only-if-same), so a burst of refusals
// costs a single re-mint.
//
// Idempotency: `apns-id` is a UUID derived from the delivery id, so a delivery re-sent after a crash or a
// retry carries the same id and the app (and Apple's logs) can recognise the duplicate.
#include <algorithm>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <tayori/plugin.hpp>
#include <tayori/provider_helpers.hpp>

namespace {

using nlohmann::json;
using tayori::sdk::Delivery;
using tayori::sdk::Error;
using tayori::sdk::Outcome;

constexpr size_t kMaxPayloadBytes = 4096;        // APNs: the JSON body of a regular remote notification
constexpr size_t kMaxCollapseIdBytes = 64;       // apns-collapse-id
constexpr size_t kMaxDeviceTokenHex = 200;       // device tokens vary in length; 100 bytes is a generous cap
constexpr int64_t kTokenLifetimeMs = 3'600'000;  // APNs refuses provider tokens issued over an hour ago
constexpr int64_t kMinRefreshMs = 20 * 60'000;   // re-minting more often: 429 TooManyProviderTokenUpdates
constexpr const char* kTokenKey = "apns.provider_token";

// Salt of apns-ids hashed from non-hex delivery ids (sdk::hashed_uuid): fixed forever, so a resend of a
// delivery carries the apns-id its earlier attempts did.
constexpr uint64_t kApnsIdSalt = 0x6c62272e07bb0142ULL;

std::string apns_id(std::string_view delivery_id) { return tayori::sdk::uuid_from(delivery_id, kApnsIdSalt); }

// Apple's key and team ids are 10 upper-case letters and digits.
std::string apple_id(const tayori::sdk::Settings& settings, const std::string& key) {
  std::string v = settings.get(key);
  bool ok = v.size() == 10 &&
            std::all_of(v.begin(), v.end(), [](char c) { return (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'); });
  if (!ok) throw Error(key + ": \"" + v + "\" is not a 10-character Apple identifier (A-Z, 0-9)");
  return v;
}

class PushApns {
 public:
  PushApns(const tayori::sdk::Host& host, const tayori::sdk::Settings& settings)
      : host_(host),
        key_(tayori::sdk::read_setting_file("key_file", settings.get("key_file"))),
        key_id_(apple_id(settings, "key_id")),
        team_id_(apple_id(settings, "team_id")),
        topic_(settings.get("topic")),
        push_type_(settings.get("push_type")),
        sound_(settings.find("sound").value_or("")),
        responses_category_(settings.find("category").value_or("TAYORI_RESPONSES")) {
    base_url_ = tayori::sdk::without_trailing_slashes(settings.get("base_url"));
    if (topic_.empty()) throw Error("topic: the app's bundle id is required (apns-topic)");
    if (push_type_ != "alert" && push_type_ != "background")
      throw Error("push_type: \"" + push_type_ + "\" is not supported (alert or background)");
    int64_t refresh = settings.get_int("token_refresh");
    if (refresh < kMinRefreshMs || refresh > kTokenLifetimeMs)
      throw Error(
          "token_refresh: must be between 20m and 60m (APNs refuses tokens older than 1 h and throttles "
          "re-minting more often than every 20 min)");
    // The cache re-mints once now >= expiry - refresh_before, i.e. token_refresh after minting.
    refresh_before_ms_ = kTokenLifetimeMs - refresh;
    ttl_s_ = settings.get_int("ttl") / 1000;
    if (ttl_s_ < 0) throw Error("ttl: must not be negative");
    // Refuse an unusable key now rather than on the first delivery.
    try {
      sign(host_.now_ms());
    } catch (const Error& e) {
      throw Error("key_file: " + std::string(e.what()));
    }
  }

  void build(const Delivery& d, tayori::sdk::RequestSink& sink) {
    std::string_view device = d.contact();
    if (device.empty() || device.size() % 2 != 0 || device.size() > kMaxDeviceTokenHex ||
        !std::all_of(device.begin(), device.end(), tayori::sdk::is_hex))
      throw Error("apns.BadDeviceToken: contact is not a hex APNs device token");
    tayori::sdk::Request r;
    r.url = base_url_ + "/3/device/" + std::string(device);
    r.body = payload(d);
    std::string token = provider_token();
    // APNs request headers; HTTP/2 field names are lower-case (RFC 9113 §8.2.1).
    r.headers = {{"authorization", "bearer " + token},
                 {"apns-topic", topic_},
                 {"apns-push-type", push_type_},
                 {"apns-priority", priority(d)},
                 {"apns-expiration", std::to_string(expiration_s(d))},
                 {"apns-id", apns_id(d.delivery_id())},
                 {"content-type", "application/json"}};
    if (auto collapse = collapse_id(d)) r.headers.emplace_back("apns-collapse-id", *collapse);
    // A 403 ExpiredProviderToken must forget exactly this token (only-if-same), never a newer one.
    in_flight_.add(sink, r, d, std::move(token));
  }

  Outcome classify(const Delivery& d, const tayori::sdk::Response& r) {
    std::string used_token = in_flight_.take(d);
    if (r.transport_failed()) return Outcome::retry("apns.transport: " + std::string(r.transport_error_text()));
    int status = r.status();
    if (status == 200) return Outcome::delivered(std::string(r.header("apns-id").value_or(apns_id(d.delivery_id()))));
    json j = json::parse(r.body(), nullptr, false);
    std::string why = j.is_object() ? j.value("reason", "") : "";
    std::string reason = "apns." + (why.empty() ? std::to_string(status) : why);
    int64_t wait = tayori::sdk::retry_after_ms(r, host_.now_ms());
    // The device token is dead (410; its `timestamp` says since when) or is not this app's.
    if (status == 410 || why == "BadDeviceToken" || why == "DeviceTokenNotForTopic")
      return Outcome::permanent(reason, true);
    // Our provider token: re-mint, unless another delivery already replaced the refused one.
    if (why == "ExpiredProviderToken" || why == "InvalidProviderToken") {
      if (!used_token.empty()) host_.invalidate_token(kTokenKey, used_token);
      return Outcome::retry(reason);
    }
    // 429 TooManyRequests (this device) / TooManyProviderTokenUpdates; 500, 503 Shutdown; 400 IdleTimeout
    // is the connection's, not the notification's.
    if (status == 429 || status >= 500 || why == "IdleTimeout") return Outcome::retry(reason, wait);
    // 400 BadTopic, MissingTopic, BadPriority…, 403 other, 404 BadPath, 405, 413 PayloadTooLarge: what we
    // sent or how we are configured is wrong; sending it again cannot help.
    return Outcome::permanent(reason);
  }

 private:
  std::string provider_token() {
    return host_.token(kTokenKey, refresh_before_ms_, [this] {
      const int64_t now_ms = host_.now_ms();
      return tayori::sdk::MintedToken{sign(now_ms), (now_ms / 1000) * 1000 + kTokenLifetimeMs};
    });
  }

  // The provider token: header {alg:ES256, kid}, claims {iss: team id, iat} (Apple "Establishing a
  // token-based connection to APNs").
  std::string sign(int64_t now_ms) const {
    json header = {{"kid", key_id_}};
    json claims = {{"iss", team_id_}, {"iat", now_ms / 1000}};
    return host_.sign_jwt("ES256", header.dump(), claims.dump(), key_);
  }

  std::string payload(const Delivery& d) const {
    json aps = json::object();
    if (push_type_ == "background") {
      aps["content-available"] = 1;  // a background update shows nothing: title and body are not used
    } else {
      auto text = tayori::sdk::notification_text(d);
      if (!text) throw Error("body: an APNs alert needs content \"title\" or \"body\" (or \"text\")");
      json alert = json::object();
      if (!text->title.empty()) alert["title"] = text->title;
      if (!text->body.empty()) alert["body"] = text->body;
      aps["alert"] = alert;
      if (!sound_.empty()) aps["sound"] = sound_;
      // The action buttons the app registered under this category (docs/providers.md: taps reach the app). A
      // message with response options shows the channel's responses category unless it names its own.
      if (auto category = d.content("category"); category && !category->empty())
        aps["category"] = *category;
      else if (!d.responses().empty())
        aps["category"] = responses_category_;
    }
    json payload = {{"aps", aps}, {"tayori_message_id", d.message_id()}};
    // A content field "link": the deep link the app opens on a tap (the gateway's tracked /c/ link when the
    // channel tracks clicks), a custom key beside aps.
    if (auto link = d.content("link"); link && !link->empty()) payload["link"] = *link;
    // A content field "open_ref" (the channel tracks opens): the app posts it back when the notification is
    // opened (POST /v1/inbound/app), the only open signal a push has.
    if (auto open_ref = d.content("open_ref"); open_ref && !open_ref->empty()) payload["open_ref"] = *open_ref;
    // The options for the app to label its action buttons with; it answers with an option's ref (POST
    // /v1/inbound/app). Custom keys sit beside aps (Apple "Generating a remote notification").
    if (auto options = d.responses(); !options.empty()) {
      json list = json::array();
      for (const auto& o : options) list.push_back({{"id", o.id}, {"label", o.label}, {"ref", o.ref}});
      payload["responses"] = std::move(list);
    }
    std::string text = payload.dump();
    if (text.size() > kMaxPayloadBytes)
      throw Error("payload: " + std::to_string(text.size()) + " bytes, over APNs' " + std::to_string(kMaxPayloadBytes) +
                  "-byte limit");
    return text;
  }

  // 10 delivers at once and requires an alert, sound or badge; background pushes must use 5. Marketing
  // goes 5 (power-considerate) too.
  std::string priority(const Delivery& d) const {
    return push_type_ == "alert" && d.purpose() == TAYORI_PURPOSE_TRANSACTIONAL ? "10" : "5";
  }

  // apns-expiration (unix seconds): the message's expiry; without one, now + ttl. 0 (ttl 0s) tells APNs
  // to try once and not store the notification.
  int64_t expiration_s(const Delivery& d) const {
    int64_t now_ms = host_.now_ms();
    if (d.expires_at_ms() != 0) {
      if (d.expires_at_ms() <= now_ms) throw Error("expires_at: the message expired before it could be sent");
      return d.expires_at_ms() / 1000;  // rounded down: never stored past the expiry
    }
    return ttl_s_ == 0 ? 0 : now_ms / 1000 + ttl_s_;
  }

  // A content field "collapse_id", else a string "collapse_id" in the message metadata.
  static std::optional<std::string> collapse_id(const Delivery& d) {
    std::optional<std::string> id = tayori::sdk::content_or_metadata<json>(d, "collapse_id");
    if (id && id->size() > kMaxCollapseIdBytes)
      throw Error("collapse_id: " + std::to_string(id->size()) + " bytes, over APNs' 64-byte apns-collapse-id limit");
    return id;
  }

  tayori::sdk::Host host_;
  std::string key_, key_id_, team_id_, topic_, push_type_, sound_, responses_category_;
  std::string base_url_;
  int64_t refresh_before_ms_ = 0;
  int64_t ttl_s_ = 0;
  tayori::sdk::AttemptTokens in_flight_;
};

const tayori_setting_spec kSettings[] = {
    {"base_url", TAYORI_SETTING_URL, 0, "https://api.push.apple.com",
     "APNs base URL (sandbox: https://api.sandbox.push.apple.com; the simulator in tests)"},
    {"key_file", TAYORI_SETTING_PATH, 1, nullptr, "the .p8 token-signing key (PKCS#8 PEM) from Apple"},
    {"key_id", TAYORI_SETTING_STRING, 1, nullptr, "the key's 10-character Key ID (JWT kid)"},
    {"team_id", TAYORI_SETTING_STRING, 1, nullptr, "the 10-character Team ID (JWT iss)"},
    {"topic", TAYORI_SETTING_STRING, 1, nullptr, "the app's bundle id (apns-topic)"},
    {"push_type", TAYORI_SETTING_STRING, 0, "alert", "apns-push-type: alert or background"},
    {"sound", TAYORI_SETTING_STRING, 0, "default", "aps.sound of alerts (empty: silent)"},
    {"category", TAYORI_SETTING_STRING, 0, "TAYORI_RESPONSES",
     "aps.category of alerts with response options (the app registers its action buttons under it)"},
    {"token_refresh", TAYORI_SETTING_DURATION, 0, "40m", "how long one provider token is reused (20m..60m)"},
    {"ttl", TAYORI_SETTING_DURATION, 0, "1d", "how long APNs stores a message without expires_at (0s: do not store)"},
};

}  // namespace

TAYORI_PLUGIN(PushApns, "push_apns", "0.1.0", "Apple Push Notification service: alert and background pushes",
              "push.apns", kSettings, sizeof kSettings / sizeof kSettings[0])
