// signed_webhook — a Tayori channel that POSTs each delivery as JSON to one endpoint, signed as the Standard
// Webhooks specification 1.0.0 says (https://www.standardwebhooks.com, "Signature scheme" and "Webhook
// headers"), so a receiver can check it with any Standard Webhooks library. Sans-I/O: the gateway sends,
// retries with its backoff, pools connections and keeps the channel's rate limit.
//
// webhook-id is the delivery id: the spec wants one id per event, kept on every retry, for the receiver to
// de-duplicate with. webhook-timestamp is this attempt's time (the spec signs it against replays), so each
// retry is signed afresh: build() runs once per attempt.
#include <tayori/plugin.hpp>
#include <tayori/provider_helpers.hpp>

#include <cstdint>
#include <string>
#include <string_view>

namespace {

using tayori::sdk::Delivery;
using tayori::sdk::Error;
using tayori::sdk::json_quote;
using tayori::sdk::Outcome;

// The HMAC key from a `secret` setting. The spec hands secrets to receivers as "whsec_" + base64 of the key
// bytes: such a value is decoded here, so the operator
// pastes the same string into both ends. Any other value is the key bytes themselves. Either way the key has
// the spec's minimum of 24 bytes (192 bits).
std::string signing_key(const std::string& setting, const std::string& secret) {
  std::string key = secret;
  if (secret.starts_with("whsec_")) {
    auto decoded = tayori::sdk::base64_decode(std::string_view(secret).substr(6));
    if (!decoded) throw Error(setting + ": whsec_ must be followed by base64 (RFC 4648 §4)");
    key = *decoded;
  }
  if (key.size() < 24) throw Error(setting + ": the signing key must have at least 24 bytes");
  return key;
}

class SignedWebhook {
 public:
  SignedWebhook(const tayori::sdk::Host& host, const tayori::sdk::Settings& settings)
      : host_(host), url_(settings.get("url")), key_(signing_key("secret", settings.get("secret"))) {
    tayori::sdk::require_https_or_loopback("url", url_);
    if (auto previous = settings.find("previous_secret")) previous_key_ = signing_key("previous_secret", *previous);
    host_.hmac(TAYORI_HASH_SHA256, key_, "");  // a host without the 1.1 crypto fails here, not once per delivery
  }

  void build(const Delivery& d, tayori::sdk::RequestSink& sink) {
    const std::string id(d.delivery_id());
    // The id is signed "id.timestamp.body": a '.' inside it would make two splits of one signed string.
    if (id.empty() || id.find('.') != std::string::npos) throw Error("delivery id: empty or contains '.'");
    const std::string timestamp = std::to_string(host_.now_ms() / 1000);  // integer unix seconds
    tayori::sdk::Request r;
    r.url = url_;
    r.body = payload(d);
    const std::string signed_content = id + "." + timestamp + "." + r.body;
    // A space-separated list: during a key rotation both keys sign, and the receiver accepts either (spec,
    // "Webhook headers"). "v1" names HMAC-SHA256.
    std::string signatures = "v1," + host_.base64(host_.hmac(TAYORI_HASH_SHA256, key_, signed_content));
    if (!previous_key_.empty())
      signatures += " v1," + host_.base64(host_.hmac(TAYORI_HASH_SHA256, previous_key_, signed_content));
    r.headers = {{"Content-Type", "application/json"},
                 {"webhook-id", id},
                 {"webhook-timestamp", timestamp},
                 {"webhook-signature", signatures}};
    sink.add(r);
  }

  // The spec's "Delivery success and failure": 2xx delivered; 410 Gone means the receiver wants no more for
  // this subscriber; 429 and 5xx are the receiver's load or outage, so retry, after Retry-After when given.
  // 3xx is a failure (no redirects are followed: fix the URL) and so is any other 4xx.
  Outcome classify(const Delivery& d, const tayori::sdk::Response& r) {
    if (r.transport_failed()) return Outcome::retry("webhook.transport");  // the same webhook-id next time
    const int status = r.status();
    if (status >= 200 && status < 300) return Outcome::delivered(std::string(d.delivery_id()));
    const std::string reason = "webhook.http_" + std::to_string(status);
    if (status == 429 || status >= 500) return Outcome::retry(reason, tayori::sdk::retry_after_ms(r, host_.now_ms()));
    return Outcome::permanent(reason, /*deactivate_contact=*/status == 410);
  }

 private:
  // The spec's recommended shape, a dotted `type` with the event's fields beside it, minified: the bytes
  // signed are the bytes sent. The content fields keep the order the gateway rendered them in.
  static std::string payload(const Delivery& d) {
    std::string content;
    for (const auto& [key, value] : d.content_fields())
      content += (content.empty() ? "" : ",") + json_quote(key) + ":" + json_quote(value);
    const std::string_view metadata = d.metadata_json().empty() ? "{}" : d.metadata_json();  // JSON already
    return "{\"type\":\"tayori.message\",\"message_id\":" + json_quote(d.message_id()) +
           ",\"recipient_id\":" + json_quote(d.recipient_id()) + ",\"contact\":" + json_quote(d.contact()) +
           ",\"category\":" + json_quote(d.category()) + ",\"purpose\":" + json_quote(d.purpose_name()) +
           ",\"content\":{" + content + "},\"metadata\":" + std::string(metadata) + "}";
  }

  tayori::sdk::Host host_;
  std::string url_, key_, previous_key_;
};

const tayori_setting_spec kSettings[] = {
    {"url", TAYORI_SETTING_URL, 1, nullptr, "the endpoint deliveries are POSTed to (https://)"},
    {"secret", TAYORI_SETTING_SECRET, 1, nullptr, "signing key: whsec_<base64> or raw, >= 24 bytes (YAML: secret_env)"},
    {"previous_secret", TAYORI_SETTING_SECRET, 0, nullptr, "during a key rotation, the old key, which signs too"},
};

}  // namespace

TAYORI_PLUGIN(SignedWebhook, "signed_webhook", "1.0.0", "signed_webhook: Standard Webhooks (HMAC-SHA256) POSTs",
              "webhook", kSettings, sizeof kSettings / sizeof kSettings[0])
