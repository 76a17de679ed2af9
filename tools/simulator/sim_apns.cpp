// APNs provider API over HTTP/2 with token (JWT) authentication. Wire facts: docs/providers.md "APNs", and Apple's
// "Sending notification requests to APNs" / "Handling notification responses from APNs" (reason strings).
//
//   POST /3/device/{hex device token}
//     authorization: bearer <ES256 JWT {alg, kid} {iss: team id, iat}>, apns-topic, apns-push-type,
//     apns-priority, apns-expiration, apns-collapse-id, apns-id; body: the JSON payload
//   -> 200, empty body, apns-id (echoed or generated) and apns-unique-id headers
//   -> 4xx/5xx {"reason": "...", "timestamp"?: ms} with apns-id
#include <deque>
#include <map>
#include <mutex>
#include <set>

#include "sim_providers.hpp"
#include "sim_util.hpp"
#include "sim_jwt.hpp"

namespace tayori::sim {
namespace {

// Apple's reason strings and their statuses.
const std::map<std::string, int, std::less<>> kReasons = {
    {"BadCollapseId", 400},
    {"BadDeviceToken", 400},
    {"BadExpirationDate", 400},
    {"BadMessageId", 400},
    {"BadPriority", 400},
    {"BadTopic", 400},
    {"DeviceTokenNotForTopic", 400},
    {"DuplicateHeaders", 400},
    {"IdleTimeout", 400},
    {"InvalidPushType", 400},
    {"MissingDeviceToken", 400},
    {"MissingTopic", 400},
    {"PayloadEmpty", 400},
    {"TopicDisallowed", 400},
    {"BadCertificate", 403},
    {"BadCertificateEnvironment", 403},
    {"ExpiredProviderToken", 403},
    {"Forbidden", 403},
    {"InvalidProviderToken", 403},
    {"MissingProviderToken", 403},
    {"UnrelatedKeyIdInToken", 403},
    {"BadEnvironmentKeyIdInToken", 403},
    {"BadPath", 404},
    {"MethodNotAllowed", 405},
    {"ExpiredToken", 410},
    {"Unregistered", 410},
    {"PayloadTooLarge", 413},
    {"TooManyProviderTokenUpdates", 429},
    {"TooManyRequests", 429},
    {"InternalServerError", 500},
    {"ServiceUnavailable", 503},
    {"Shutdown", 503},
};

// The apns-push-type values and the topic suffix each needs (Apple: "apns-topic" table).
const std::map<std::string, std::string, std::less<>> kPushTypes = {
    {"alert", ""},
    {"background", ""},
    {"location", ".location-query"},
    {"voip", ".voip"},
    {"complication", ".complication"},
    {"fileprovider", ".pushkit.fileprovider"},
    {"mdm", ""},
    {"liveactivity", ".push-type.liveactivity"},
    {"pushtotalk", ".voip-ptt"},
    {"widgets", ".push-type.widgets"},
};

constexpr int64_t kTokenMaxAgeMs = 3'600'000;        // Apple: a provider token older than one hour is refused
constexpr int64_t kTokenUpdateWindowMs = 1'200'000;  // Apple: refresh no more often than every 20 minutes

// An error answer. `timestamp` (ms) only on 410, as Apple documents it.
SimResponse apns_error(std::string_view reason, int64_t now_ms = 0) {
  auto it = kReasons.find(reason);
  int status = it == kReasons.end() ? 400 : it->second;
  Json body = {{"reason", reason}};
  if (status == 410) body["timestamp"] = now_ms;
  return json_response(status, body);
}

bool valid_topic_syntax(std::string_view t) {
  if (t.empty() || t.front() == '.' || t.back() == '.') return false;
  for (char c : t)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-' || c == '_')) return false;
  return true;
}

class Apns final : public Provider {
 public:
  explicit Apns(ApnsConfig c) : config_(std::move(c)) {}

  const char* name() const override { return "apns"; }
  bool owns(std::string_view path) const override { return path.rfind("/3/device", 0) == 0; }
  bool http2_only() const override { return true; }

  SimResponse handle(const SimRequest& req, ProviderContext& ctx) override {
    // Every answer carries apns-id: the request's when it sent a valid one, otherwise a new UUID.
    std::string apns_id(req.header("apns-id"));
    bool id_ok = apns_id.empty() || is_uuid(apns_id);
    if (!id_ok || apns_id.empty()) apns_id = uuid_v4();
    SimResponse r = decide(req, ctx, id_ok);
    r.headers.emplace_back("apns-id", apns_id);
    return r;
  }

  SimResponse error_for_status(int status) const override {
    switch (status) {
      case 403:
        return apns_error("Forbidden");
      case 404:
        return apns_error("BadPath");
      case 405:
        return apns_error("MethodNotAllowed");
      case 410:
        return apns_error("Unregistered", unix_ms());
      case 413:
        return apns_error("PayloadTooLarge");
      case 429:
        return apns_error("TooManyRequests");
      case 500:
        return apns_error("InternalServerError");
      case 503:
        return apns_error("ServiceUnavailable");
      case 400:
        return apns_error("BadDeviceToken");
      default: {
        SimResponse r = apns_error(status >= 500 ? "InternalServerError" : "Forbidden");
        r.status = status;
        return r;
      }
    }
  }

  std::optional<SimResponse> contact_error(std::string_view code, int64_t now_ms) const override {
    if (code == "unregistered") return apns_error("Unregistered", now_ms);
    if (!kReasons.count(code)) return std::nullopt;
    return apns_error(code, now_ms);
  }

 private:
  SimResponse decide(const SimRequest& req, ProviderContext& ctx, bool id_ok) {
    const int64_t now = ctx.now_ms();
    if (req.method != "POST") return apns_error("MethodNotAllowed");
    if (req.path.rfind("/3/device/", 0) != 0) return apns_error("BadPath");
    for (const char* h : {"authorization", "apns-id", "apns-topic", "apns-push-type", "apns-priority",
                          "apns-expiration", "apns-collapse-id"})
      if (req.header_count(h) > 1) return apns_error("DuplicateHeaders");

    if (auto refused = check_provider_token(req.header("authorization"), now)) return *refused;

    if (!id_ok) return apns_error("BadMessageId");
    std::string push_type(req.header("apns-push-type"));
    if (req.header_count("apns-push-type") && !kPushTypes.count(push_type)) return apns_error("InvalidPushType");
    if (auto bad = check_topic(req.header("apns-topic"), push_type)) return *bad;
    std::string_view priority = req.header("apns-priority");
    if (req.header_count("apns-priority")) {
      if (priority != "10" && priority != "5" && priority != "1") return apns_error("BadPriority");
      // Apple: priority 10 is an error for a background (content-available only) notification.
      if (push_type == "background" && priority == "10") return apns_error("BadPriority");
    }
    if (req.header_count("apns-expiration")) {
      auto exp = parse_int(req.header("apns-expiration"));
      if (!exp || *exp < 0) return apns_error("BadExpirationDate");
    }
    if (req.header("apns-collapse-id").size() > 64) return apns_error("BadCollapseId");

    std::string_view token = std::string_view(req.path).substr(std::string_view("/3/device/").size());
    if (token.empty()) return apns_error("MissingDeviceToken");
    // Device tokens are hex; 64 digits today, longer ones are allowed for (Apple: "variable length").
    if (token.size() < 64 || token.size() > 200 || !is_hex(token)) return apns_error("BadDeviceToken");

    if (req.body.empty()) return apns_error("PayloadEmpty");
    size_t limit = push_type == "voip" ? 5120 : 4096;  // Apple: 5 KB for VoIP, 4 KB otherwise
    if (req.body.size() > limit) return apns_error("PayloadTooLarge");

    if (auto dead = ctx.contact_fault(*this, token)) return *dead;

    SimResponse ok;
    ok.status = 200;
    ok.content_type.clear();  // 200 has no body
    ok.headers.emplace_back("apns-unique-id", uuid_v4());
    return ok;
  }

  // Token-based authentication: an ES256 JWT signed with the team's key, header kid = key id, claim iss =
  // team id, iat within the last hour. Minting many new tokens in a short time is refused.
  std::optional<SimResponse> check_provider_token(std::string_view authorization, int64_t now) {
    if (authorization.empty()) return apns_error("MissingProviderToken");
    auto jwt_text = bearer_token(authorization);
    if (!jwt_text || config_.public_key_pem.empty()) return apns_error("InvalidProviderToken");
    auto jwt = verify_provider_jwt(*jwt_text, "ES256", config_.public_key_pem);
    if (!jwt) return apns_error("InvalidProviderToken");
    const Json& header = jwt->header;
    const Json& claims = jwt->claims;
    if (!(header.contains("kid") && header["kid"] == config_.key_id)) return apns_error("InvalidProviderToken");
    if (!(claims.contains("iss") && claims["iss"] == config_.team_id)) return apns_error("InvalidProviderToken");
    if (!(claims.contains("iat") && claims["iat"].is_number_integer())) return apns_error("InvalidProviderToken");
    int64_t iat_ms = claims["iat"].get<int64_t>() * 1000;
    if (iat_ms > now + 60'000) return apns_error("InvalidProviderToken");  // issued in the future
    if (now - iat_ms > kTokenMaxAgeMs) return apns_error("ExpiredProviderToken");

    std::lock_guard lock(mu_);
    if (seen_tokens_.count(*jwt_text)) return std::nullopt;
    while (!recent_mints_.empty() && now - recent_mints_.front() > kTokenUpdateWindowMs) recent_mints_.pop_front();
    if (static_cast<int>(recent_mints_.size()) >= config_.max_token_updates)
      return apns_error("TooManyProviderTokenUpdates");
    recent_mints_.push_back(now);
    seen_tokens_.insert(*jwt_text);
    return std::nullopt;
  }

  // apns-topic is required with token authentication; it is a bundle id plus the push type's suffix.
  std::optional<SimResponse> check_topic(std::string_view topic, const std::string& push_type) const {
    if (topic.empty()) return apns_error("MissingTopic");
    if (!valid_topic_syntax(topic)) return apns_error("BadTopic");
    if (config_.topics.empty()) return std::nullopt;
    auto suffix_it = kPushTypes.find(push_type.empty() ? "alert" : push_type);
    std::string suffix = suffix_it == kPushTypes.end() ? "" : suffix_it->second;
    for (const auto& bundle : config_.topics)
      if (topic == bundle + suffix) return std::nullopt;
    return apns_error("DeviceTokenNotForTopic");
  }

  ApnsConfig config_;
  std::mutex mu_;
  std::set<std::string> seen_tokens_;  // provider tokens accepted so far
  std::deque<int64_t> recent_mints_;   // when each new token was first seen, within the update window
};

}  // namespace

std::unique_ptr<Provider> make_apns(ApnsConfig config) { return std::make_unique<Apns>(std::move(config)); }

}  // namespace tayori::sim
