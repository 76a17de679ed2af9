// push_fcm — Firebase Cloud Messaging, HTTP v1 API (docs/providers.md "FCM HTTP v1"): one
// `messages:send` request per delivery, sans-I/O (the host sends it and hands the answer to classify()).
//
// Authentication is OAuth 2.0 for service accounts (RFC 7523 JWT bearer grant): an RS256 assertion signed
// with the service account's key is exchanged at `token_uri` for an access token. The token lives in the
// host's token cache, so every delivery of the channel shares one grant until five minutes before it
// expires; a 401 from FCM forgets exactly the token that was refused (only-if-same), so a burst of
// refusals costs a single new grant.
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
using tayori::sdk::RetryLater;

constexpr int64_t kMaxTtlSeconds = 28LL * 86'400;      // AndroidConfig.ttl: 0 to 4 weeks
constexpr size_t kMaxPayloadBytes = 4096;              // FCM message payload
constexpr int64_t kRefreshBeforeMs = 5LL * 60 * 1000;  // renew the access token 5 min before it expires
constexpr int64_t kAssertionLifetimeS = 3600;          // Google refuses assertions with exp > iat + 1 h
constexpr const char* kScope = "https://www.googleapis.com/auth/firebase.messaging";
constexpr const char* kTokenKey = "fcm.access_token";
// RFC 7523 §2.1 grant type, form-encoded (RFC 6749 Appendix B: ':' is percent-encoded).
constexpr const char* kGrantTypeForm = "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer";

// ---- The service-account key file ---------------------------------------------------------------

struct ServiceAccount {
  std::string project_id, client_email, private_key, private_key_id, token_uri;
};

ServiceAccount read_service_account(const std::string& path) {
  json j = json::parse(tayori::sdk::read_setting_file("service_account", path), nullptr, false);
  if (!j.is_object()) throw Error("service_account: " + path + " is not a JSON object");
  auto field = [&](const char* name, bool required) -> std::string {
    if (j.contains(name) && j[name].is_string() && !j[name].get<std::string>().empty())
      return j[name].get<std::string>();
    if (required) throw Error("service_account: " + path + " has no \"" + name + "\"");
    return {};
  };
  if (field("type", true) != "service_account")
    throw Error("service_account: " + path + ": \"type\" is \"" + field("type", true) +
                "\", expected \"service_account\" (download a service-account key, not user credentials)");
  ServiceAccount sa;
  sa.project_id = field("project_id", true);
  sa.client_email = field("client_email", true);
  sa.private_key = field("private_key", true);
  sa.token_uri = field("token_uri", true);
  sa.private_key_id = field("private_key_id", false);
  return sa;
}

// ---- FCM's error body: {error:{code, message, status, details:[{@type, errorCode}, …]}} ----------------

struct FcmError {
  std::string code;  // FcmError.errorCode when present, else google.rpc status (e.g. "UNAUTHENTICATED")
  std::string message;
  bool token_invalid = false;  // INVALID_ARGUMENT about the registration token itself
};

std::string lower(std::string s) {
  for (char& c : s) c = tayori::sdk::ascii_lower(c);
  return s;
}

FcmError parse_error(std::string_view body) {
  FcmError e;
  json j = json::parse(body, nullptr, false);
  if (!j.is_object() || !j.contains("error") || !j["error"].is_object()) return e;
  const json& err = j["error"];
  e.message = err.value("message", "");
  std::string status = err.value("status", "");
  if (err.contains("details") && err["details"].is_array()) {
    for (const json& d : err["details"]) {
      if (!d.is_object()) continue;
      std::string type = d.value("@type", "");
      if (type.ends_with("google.firebase.fcm.v1.FcmError") && d.value("errorCode", "") != "" &&
          d.value("errorCode", "") != "UNSPECIFIED_ERROR")
        e.code = d.value("errorCode", "");
      // google.rpc.BadRequest naming the token field: an older way FCM reported a malformed token.
      if (type.ends_with("google.rpc.BadRequest") && d.contains("fieldViolations") && d["fieldViolations"].is_array())
        for (const json& v : d["fieldViolations"])
          if (v.is_object() && v.value("field", "") == "message.token") e.token_invalid = true;
    }
  }
  if (e.code.empty()) e.code = status;
  // FCM has no machine code for "this token is malformed": it answers INVALID_ARGUMENT with the message
  // "The registration token is not a valid FCM registration token". Other INVALID_ARGUMENTs are our payload.
  std::string m = lower(e.message);
  if (m.find("registration token") != std::string::npos &&
      (m.find("not a valid") != std::string::npos || m.find("invalid") != std::string::npos))
    e.token_invalid = true;
  return e;
}

// The OAuth error body of RFC 6749 §5.2: {error, error_description}.
std::string oauth_error(std::string_view body, int status) {
  json j = json::parse(body, nullptr, false);
  std::string code = j.is_object() ? j.value("error", "") : "";
  std::string text = j.is_object() ? j.value("error_description", "") : "";
  return "fcm.oauth." + (code.empty() ? std::to_string(status) : code) + (text.empty() ? "" : ": " + text);
}

class PushFcm {
 public:
  PushFcm(const tayori::sdk::Host& host, const tayori::sdk::Settings& settings)
      : host_(host), sa_(read_service_account(settings.get("service_account"))) {
    std::string base = tayori::sdk::without_trailing_slashes(settings.get("base_url"));
    std::string project = settings.find("project_id").value_or("");
    if (project.empty()) project = sa_.project_id;
    send_url_ = base + "/v1/projects/" + project + "/messages:send";
    token_uri_ = settings.find("token_uri").value_or("");
    if (token_uri_.empty()) token_uri_ = sa_.token_uri;
    int64_t ttl_ms = settings.get_int("ttl");
    if (ttl_ms < 0 || ttl_ms > kMaxTtlSeconds * 1000) throw Error("ttl: must be between 0s and 28d (FCM's limit)");
    default_ttl_s_ = ttl_ms / 1000;
    // Refuse an unusable key now rather than on the first delivery.
    try {
      host_.sign_jwt("RS256", "{}", R"({"probe":true})", sa_.private_key);
    } catch (const Error& e) {
      throw Error("service_account: private_key: " + std::string(e.what()));
    }
  }

  void build(const Delivery& d, tayori::sdk::RequestSink& sink) {
    if (d.contact().empty()) throw Error("contact: no FCM registration token");
    tayori::sdk::Request r;
    r.url = send_url_;
    r.body = json{{"message", message(d)}}.dump();
    std::string token = access_token();
    r.headers = {{"Authorization", "Bearer " + token}, {"Content-Type", "application/json; charset=UTF-8"}};
    // A 401 must forget exactly this token (only-if-same), never a newer one another delivery obtained.
    in_flight_.add(sink, r, d, std::move(token));
  }

  Outcome classify(const Delivery& d, const tayori::sdk::Response& r) {
    std::string used_token = in_flight_.take(d);
    if (r.transport_failed()) return Outcome::retry("fcm.transport: " + std::string(r.transport_error_text()));
    int status = r.status();
    if (status == 200) {
      json j = json::parse(r.body(), nullptr, false);
      return Outcome::delivered(j.is_object() ? j.value("name", "") : "");
    }
    FcmError e = parse_error(r.body());
    const std::string& code = e.code;
    const std::string detail = e.message.empty() ? "" : ": " + e.message;
    int64_t wait = tayori::sdk::retry_after_ms(r, host_.now_ms());
    // FCM v1 ErrorCode: the registration token is dead or belongs to another sender.
    if (code == "UNREGISTERED" || code == "SENDER_ID_MISMATCH") return Outcome::permanent("fcm." + code, true);
    if (code == "INVALID_ARGUMENT")
      return e.token_invalid ? Outcome::permanent("fcm.INVALID_ARGUMENT", true)
                             : Outcome::permanent("fcm.INVALID_ARGUMENT" + detail);  // our payload is wrong
    // The APNs/web-push credentials uploaded to Firebase were refused: configuration, not this delivery.
    if (code == "THIRD_PARTY_AUTH_ERROR" || code == "APNS_AUTH_ERROR")
      return Outcome::permanent("fcm." + code + detail);
    if (code == "QUOTA_EXCEEDED" || code == "RESOURCE_EXHAUSTED" || status == 429)
      return Outcome::retry("fcm." + (code.empty() ? std::string("429") : code), wait);
    if (code == "UNAVAILABLE" || code == "INTERNAL" || status >= 500)
      return Outcome::retry("fcm." + (code.empty() ? std::to_string(status) : code), wait);
    // Our access token was refused (expired early, revoked): forget it, unless a newer one replaced it.
    if (status == 401 || code == "UNAUTHENTICATED") {
      if (!used_token.empty()) host_.invalidate_token(kTokenKey, used_token);
      return Outcome::retry("fcm.UNAUTHENTICATED");
    }
    return Outcome::permanent("fcm." + (code.empty() ? std::to_string(status) : code) + detail);
  }

 private:
  // The `message` object of messages:send.
  json message(const Delivery& d) const {
    auto text = tayori::sdk::notification_text(d);
    if (!text) throw Error("body: an FCM notification needs content \"title\" or \"body\" (or \"text\")");
    json notification = json::object();
    if (!text->title.empty()) notification["title"] = text->title;
    if (!text->body.empty()) notification["body"] = text->body;
    if (auto image = d.content("image"); image && !image->empty()) notification["image"] = *image;
    json android = {{"ttl", std::to_string(ttl_seconds(d)) + "s"},
                    // High priority wakes the device; FCM may deprioritise apps that use it for
                    // non-urgent traffic, so marketing goes normal.
                    {"priority", d.purpose() == TAYORI_PURPOSE_MARKETING ? "normal" : "high"}};
    // A content field "collapse_id", else a string "collapse_id" in the message metadata.
    if (auto key = tayori::sdk::content_or_metadata<json>(d, "collapse_id")) android["collapse_key"] = *key;
    json data = {{"tayori_message_id", d.message_id()}};
    // A content field "link": the deep link the app opens on a tap (the gateway's tracked /c/ link when the
    // channel tracks clicks), as data for the app to read.
    if (auto link = d.content("link"); link && !link->empty()) data["link"] = *link;
    // A content field "open_ref" (the channel tracks opens): the app posts it back when the notification is
    // opened (POST /v1/inbound/app), the only open signal a push has.
    if (auto open_ref = d.content("open_ref"); open_ref && !open_ref->empty()) data["open_ref"] = *open_ref;
    // FCM data values must be strings (HTTP v1 Message.data: map<string, string>), so the options travel
    // as JSON text for the app to parse; it answers with an option's ref (POST /v1/inbound/app).
    if (auto options = d.responses(); !options.empty()) {
      json list = json::array();
      for (const auto& o : options) list.push_back({{"id", o.id}, {"label", o.label}, {"ref", o.ref}});
      data["responses"] = list.dump();
    }
    json m = {{"notification", notification}, {"data", std::move(data)}, {"android", android}};
    // FCM does not say how it counts its 4096 bytes; the serialised message without its target is the
    // upper bound, so nothing we send is refused as too big.
    size_t payload = m.dump().size();
    if (payload > kMaxPayloadBytes)
      throw Error("payload: " + std::to_string(payload) + " bytes, over FCM's " + std::to_string(kMaxPayloadBytes) +
                  "-byte limit");
    m["token"] = d.contact();
    return m;
  }

  // How long FCM may store the message for an offline device: until the message expires, else the setting.
  int64_t ttl_seconds(const Delivery& d) const {
    if (d.expires_at_ms() == 0) return default_ttl_s_;
    int64_t left_ms = d.expires_at_ms() - host_.now_ms();
    if (left_ms <= 0) throw Error("expires_at: the message expired before it could be sent");
    return std::min(left_ms / 1000, kMaxTtlSeconds);  // rounded down: never kept past the expiry
  }

  // The cached access token. A grant that failed for a transient reason becomes RetryLater; any other
  // failure is the configuration's (permanent), and keeps the grant's own message either way.
  std::string access_token() {
    std::optional<std::string> failed;
    bool transient = false;
    try {
      return host_.token(kTokenKey, kRefreshBeforeMs, [&] {
        try {
          return grant();
        } catch (const RetryLater& e) {
          failed = e.what();
          transient = true;
          throw;
        } catch (const std::exception& e) {
          failed = e.what();
          throw;
        }
      });
    } catch (const Error& e) {
      if (transient) throw RetryLater(*failed);
      throw Error(failed.value_or(e.what()));
    }
  }

  // RFC 7523 §2.1 JWT bearer grant at token_uri (Google "OAuth 2.0 for Server to Server Applications").
  tayori::sdk::MintedToken grant() const {
    const int64_t now_ms = host_.now_ms();
    const int64_t iat = now_ms / 1000;
    json header = sa_.private_key_id.empty() ? json::object() : json{{"kid", sa_.private_key_id}};
    json claims = {{"iss", sa_.client_email},
                   {"scope", kScope},
                   {"aud", token_uri_},
                   {"iat", iat},
                   {"exp", iat + kAssertionLifetimeS}};
    tayori::sdk::Request r;
    r.url = token_uri_;
    r.headers = {{"Content-Type", "application/x-www-form-urlencoded"}};
    // A compact JWS is base64url and '.', all unreserved: it needs no percent-encoding.
    r.body = std::string(kGrantTypeForm) +
             "&assertion=" + host_.sign_jwt("RS256", header.dump(), claims.dump(), sa_.private_key);
    tayori::sdk::Exchanged a = host_.exchange(r);
    if (a.transport_failed()) throw RetryLater("fcm.oauth.transport: " + a.transport_error_text);
    if (a.status == 429 || a.status >= 500) throw RetryLater("fcm.oauth." + std::to_string(a.status));
    if (a.status != 200) throw Error(oauth_error(a.body, a.status));  // invalid_grant, invalid_client: fix the key
    json j = json::parse(a.body, nullptr, false);
    if (!j.is_object() || !j.contains("access_token") || !j["access_token"].is_string() ||
        j["access_token"].get<std::string>().empty())
      throw Error("fcm.oauth.bad_response: " + token_uri_ + " answered 200 without an access_token");
    int64_t expires_in = j.contains("expires_in") && j["expires_in"].is_number_integer()
                             ? j["expires_in"].get<int64_t>()
                             : kAssertionLifetimeS;
    return {j["access_token"].get<std::string>(), now_ms + expires_in * 1000};
  }

  tayori::sdk::Host host_;
  ServiceAccount sa_;
  std::string send_url_;
  std::string token_uri_;
  int64_t default_ttl_s_ = 0;
  tayori::sdk::AttemptTokens in_flight_;
};

const tayori_setting_spec kSettings[] = {
    {"base_url", TAYORI_SETTING_URL, 0, "https://fcm.googleapis.com", "FCM API base URL (the simulator in tests)"},
    {"service_account", TAYORI_SETTING_PATH, 1, nullptr, "the Google service-account key JSON file"},
    {"project_id", TAYORI_SETTING_STRING, 0, nullptr, "Firebase project id (default: the key file's project_id)"},
    {"token_uri", TAYORI_SETTING_URL, 0, nullptr, "OAuth token endpoint (default: the key file's token_uri)"},
    {"ttl", TAYORI_SETTING_DURATION, 0, "1d", "how long FCM keeps a message without expires_at (0s..28d)"},
};

}  // namespace

TAYORI_PLUGIN(PushFcm, "push_fcm", "0.1.0", "Firebase Cloud Messaging HTTP v1: notification pushes", "push.fcm",
              kSettings, sizeof kSettings / sizeof kSettings[0])
