// FCM HTTP v1 and the Google OAuth2 token endpoint it needs. Wire facts: docs/providers.md "FCM HTTP v1".
//
//   POST /token  grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer&assertion=<RS256 JWT>  (RFC 7523 §2.1)
//       -> 200 {access_token, expires_in, token_type:"Bearer"} | 400 {error, error_description}
//   POST /v1/projects/{project}/messages:send  Authorization: Bearer <issued token>  {"message":{...}}
//       -> 200 {"name":"projects/P/messages/ID"} | {error:{code, message, status, details:[...]}}
//
// The service account's token_uri points at this simulator's /token, so the assertion's aud is that URL
// (Google checks aud against its own token endpoint the same way). Only tokens issued here are accepted.
#include <map>
#include <mutex>
#include <set>

#include "sim_providers.hpp"
#include "sim_util.hpp"
#include "sim_jwt.hpp"

namespace tayori::sim {
namespace {

constexpr const char* kGoogleJson = "application/json; charset=UTF-8";
constexpr const char* kFcmErrorType = "type.googleapis.com/google.firebase.fcm.v1.FcmError";
constexpr const char* kBadRequestType = "type.googleapis.com/google.rpc.BadRequest";
constexpr const char* kErrorInfoType = "type.googleapis.com/google.rpc.ErrorInfo";
constexpr const char* kMessagingScope = "https://www.googleapis.com/auth/firebase.messaging";
constexpr const char* kCloudScope = "https://www.googleapis.com/auth/cloud-platform";

// ---- The token store the two endpoints share ----------------------------------------------------------------

struct IssuedToken {
  int64_t expires_at_ms = 0;
  std::string scope;  // space-separated, as granted
};

class TokenStore {
 public:
  std::string issue(int64_t now_ms, int64_t ttl_s, std::string scope) {
    std::string token = "ya29.sim-" + random_hex(48);
    std::lock_guard lock(mu_);
    for (auto it = tokens_.begin(); it != tokens_.end();)  // forget long-expired tokens
      it = it->second.expires_at_ms + 3'600'000 < now_ms ? tokens_.erase(it) : std::next(it);
    tokens_[token] = {now_ms + ttl_s * 1000, std::move(scope)};
    return token;
  }
  std::optional<IssuedToken> find(const std::string& token) const {
    std::lock_guard lock(mu_);
    auto it = tokens_.find(token);
    if (it == tokens_.end()) return std::nullopt;
    return it->second;
  }

 private:
  mutable std::mutex mu_;
  std::map<std::string, IssuedToken> tokens_;
};

// ---- Google's error shapes ---------------------------------------------------------------------------------

// google.rpc.Status as JSON (AIP-193): {error:{code, message, status, details}}.
SimResponse google_error(int code, const char* status, const std::string& message, Json details = Json::array()) {
  Json error = {{"code", code}, {"message", message}, {"status", status}};
  if (!details.empty()) error["details"] = std::move(details);
  return json_response(code, {{"error", error}}, kGoogleJson);
}

Json fcm_error_detail(const char* error_code) { return {{"@type", kFcmErrorType}, {"errorCode", error_code}}; }

Json bad_request_detail(const std::string& field, const std::string& description) {
  return {{"@type", kBadRequestType}, {"fieldViolations", {{{"field", field}, {"description", description}}}}};
}

// A request FCM cannot parse into its proto: google.rpc.BadRequest only, no FcmError (as FCM answers e.g. a
// non-string data value).
SimResponse fcm_unparsable(const std::string& field, const std::string& description) {
  return google_error(400, "INVALID_ARGUMENT", description, Json::array({bad_request_detail(field, description)}));
}

// An FcmError answer; `field` adds the BadRequest detail FCM sends alongside (e.g. for an invalid token).
SimResponse fcm_error(int code, const char* status, const char* error_code, const std::string& message,
                      const std::string& field = "") {
  Json details = Json::array({fcm_error_detail(error_code)});
  if (!field.empty()) details.push_back(bad_request_detail(field, message));
  return google_error(code, status, message, details);
}

// The FcmError codes (firebase.google.com/docs/reference/fcm/rest/v1/ErrorCode) with their HTTP statuses.
std::optional<SimResponse> fcm_named_error(std::string_view code) {
  if (code == "UNREGISTERED" || code == "unregistered")
    return fcm_error(404, "NOT_FOUND", "UNREGISTERED", "Requested entity was not found.");
  if (code == "INVALID_ARGUMENT")
    return fcm_error(400, "INVALID_ARGUMENT", "INVALID_ARGUMENT",
                     "The registration token is not a valid FCM registration token", "message.token");
  if (code == "SENDER_ID_MISMATCH")
    return fcm_error(403, "PERMISSION_DENIED", "SENDER_ID_MISMATCH", "SenderId mismatch");
  if (code == "QUOTA_EXCEEDED")
    return fcm_error(429, "RESOURCE_EXHAUSTED", "QUOTA_EXCEEDED", "Quota exceeded for sending messages.");
  if (code == "UNAVAILABLE")
    return fcm_error(503, "UNAVAILABLE", "UNAVAILABLE", "The service is currently unavailable.");
  if (code == "INTERNAL") return fcm_error(500, "INTERNAL", "INTERNAL", "Internal error encountered.");
  if (code == "THIRD_PARTY_AUTH_ERROR")
    return fcm_error(401, "UNAUTHENTICATED", "THIRD_PARTY_AUTH_ERROR", "Auth error from APNS or Web Push Service");
  return std::nullopt;
}

// 401 for a missing, unknown or expired bearer token, with the google.rpc.ErrorInfo reason Google sends.
SimResponse unauthenticated(const char* reason, bool missing) {
  std::string message = missing ? "Request is missing required authentication credential. Expected OAuth 2 access "
                                  "token, login cookie or other valid authentication credential. See "
                                  "https://developers.google.com/identity/sign-in/web/devconsole-project."
                                : "Request had invalid authentication credentials. Expected OAuth 2 access token, "
                                  "login cookie or other valid authentication credential. See "
                                  "https://developers.google.com/identity/sign-in/web/devconsole-project.";
  Json info = {
      {"@type", kErrorInfoType},
      {"reason", reason},
      {"domain", "googleapis.com"},
      {"metadata", {{"service", "fcm.googleapis.com"}, {"method", "google.firebase.fcm.v1.FcmService.SendMessage"}}}};
  SimResponse r = google_error(401, "UNAUTHENTICATED", message, Json::array({info}));
  r.headers.emplace_back("www-authenticate", "Bearer realm=\"https://accounts.google.com/\", error=\"invalid_token\"");
  return r;
}

bool has_scope(const std::string& granted, std::string_view wanted) {
  size_t start = 0;
  while (start < granted.size()) {
    size_t end = granted.find(' ', start);
    if (end == std::string::npos) end = granted.size();
    if (std::string_view(granted).substr(start, end - start) == wanted) return true;
    start = end + 1;
  }
  return false;
}

// Registration tokens are opaque; FCM's are long strings of [A-Za-z0-9_:-]. Anything else is not a token.
bool plausible_registration_token(const std::string& t) {
  if (t.empty() || t.size() > 4096) return false;
  for (unsigned char c : t)
    if (!(std::isalnum(c) || c == '_' || c == '-' || c == ':' || c == '.')) return false;
  return true;
}

// ---- POST /token -------------------------------------------------------------------------------------------

// OAuth 2.0 error answer (RFC 6749 §5.2), as Google's token endpoint sends it.
SimResponse oauth_error(int status, const std::string& error, const std::string& description) {
  return json_response(status, {{"error", error}, {"error_description", description}},
                       "application/json; charset=utf-8");
}

class GoogleOAuth final : public Provider {
 public:
  GoogleOAuth(const FcmConfig& c, std::shared_ptr<TokenStore> store) : config_(c), store_(std::move(store)) {}

  const char* name() const override { return "oauth"; }
  bool owns(std::string_view path) const override { return path == "/token"; }

  SimResponse handle(const SimRequest& req, ProviderContext& ctx) override {
    if (req.method != "POST") return oauth_error(405, "invalid_request", "The token endpoint accepts POST only.");
    Params form = form_decode(req.body);
    std::string grant = param(form, "grant_type").value_or("");
    if (grant.empty()) return oauth_error(400, "invalid_request", "Missing required parameter: grant_type");
    if (grant != "urn:ietf:params:oauth:grant-type:jwt-bearer")
      return oauth_error(400, "unsupported_grant_type", "Invalid grant_type: " + grant);
    std::string assertion = param(form, "assertion").value_or("");
    if (assertion.empty()) return oauth_error(400, "invalid_request", "Missing required parameter: assertion");

    if (config_.public_key_pem.empty())
      return oauth_error(400, "invalid_grant", "Invalid JWT Signature. (tayori-sim: no --fcm-public-key given)");
    auto jwt = verify_provider_jwt(assertion, "RS256", config_.public_key_pem);
    if (!jwt) return oauth_error(400, "invalid_grant", "Invalid JWT Signature.");
    const Json& claims = jwt->claims;

    std::string iss = claims.contains("iss") && claims["iss"].is_string() ? claims["iss"].get<std::string>() : "";
    if (iss.empty() || (!config_.client_email.empty() && iss != config_.client_email))
      return oauth_error(400, "invalid_grant", "Invalid grant: account not found");
    if (auto dead = ctx.contact_fault(*this, iss)) return *dead;

    // RFC 7523 §3: aud identifies the token endpoint; Google compares it with its own URL.
    std::string expected_aud = config_.token_audience.empty() ? req.url() : config_.token_audience;
    if (!(claims.contains("aud") && claims["aud"].is_string() && claims["aud"] == expected_aud))
      return oauth_error(400, "invalid_grant",
                         "Invalid JWT: Failed audience check. The right audience is " + expected_aud);

    // Google: exp at most one hour after iat, and the token valid now (with some clock skew allowed).
    const int64_t now_s = ctx.now_ms() / 1000, skew_s = 300;
    bool times_ok = claims.contains("iat") && claims["iat"].is_number_integer() && claims.contains("exp") &&
                    claims["exp"].is_number_integer();
    if (times_ok) {
      int64_t iat = claims["iat"].get<int64_t>(), exp = claims["exp"].get<int64_t>();
      times_ok = iat <= now_s + skew_s && exp > now_s - skew_s && exp > iat && exp - iat <= 3600;
    }
    if (!times_ok)
      return oauth_error(400, "invalid_grant",
                         "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe. "
                         "Check your iat and exp values in the JWT claim.");

    std::string scope =
        claims.contains("scope") && claims["scope"].is_string() ? claims["scope"].get<std::string>() : "";
    if (scope.empty()) return oauth_error(400, "invalid_scope", "Invalid OAuth scope or ID token audience provided.");

    std::string token = store_->issue(ctx.now_ms(), config_.token_ttl_s, scope);
    SimResponse r =
        json_response(200, {{"access_token", token}, {"expires_in", config_.token_ttl_s}, {"token_type", "Bearer"}},
                      "application/json; charset=utf-8");
    r.headers.emplace_back("cache-control", "no-cache, no-store, max-age=0, must-revalidate");
    return r;
  }

  SimResponse error_for_status(int status) const override {
    if (status == 429) return oauth_error(429, "rate_limit_exceeded", "Rate Limit Exceeded");
    if (status >= 500) return oauth_error(status, "internal_failure", "Backend Error");
    return oauth_error(status, "invalid_request", "Bad Request");
  }

  std::optional<SimResponse> contact_error(std::string_view code, int64_t) const override {
    // The contact is the service account (the assertion's iss): "unregistered" is a deleted account.
    if (code == "unregistered") return oauth_error(400, "invalid_grant", "Invalid grant: account not found");
    return std::nullopt;
  }

 private:
  FcmConfig config_;
  std::shared_ptr<TokenStore> store_;
};

// ---- POST /v1/projects/{project}/messages:send ---------------------------------------------------------------

class Fcm final : public Provider {
 public:
  Fcm(const FcmConfig& c, std::shared_ptr<TokenStore> store) : config_(c), store_(std::move(store)) {}

  const char* name() const override { return "fcm"; }
  bool owns(std::string_view path) const override { return path.rfind("/v1/projects/", 0) == 0; }
  bool sends_retry_after() const override { return true; }  // FCM: honour Retry-After on 429 and 5xx

  SimResponse handle(const SimRequest& req, ProviderContext& ctx) override {
    // Authentication comes first: Google's front end refuses before it routes.
    std::string_view authorization = req.header("authorization");
    auto bearer = bearer_token(authorization);
    if (!bearer) return unauthenticated("CREDENTIALS_MISSING", authorization.empty());
    auto issued = store_->find(*bearer);
    if (!issued) return unauthenticated("ACCESS_TOKEN_TYPE_UNSUPPORTED", false);
    if (ctx.now_ms() >= issued->expires_at_ms) return unauthenticated("ACCESS_TOKEN_EXPIRED", false);

    static constexpr std::string_view prefix = "/v1/projects/", suffix = "/messages:send";
    std::string_view path = req.path;
    std::string_view project;
    if (path.size() > prefix.size() + suffix.size() && path.substr(path.size() - suffix.size()) == suffix)
      project = path.substr(prefix.size(), path.size() - prefix.size() - suffix.size());
    if (project.empty() || project.find('/') != std::string_view::npos || req.method != "POST")
      return google_error(404, "NOT_FOUND", "Requested entity was not found.");
    if (!config_.project.empty() && project != config_.project)
      return google_error(403, "PERMISSION_DENIED",
                          "Permission 'cloudmessaging.messages.create' denied on resource "
                          "'//cloudresourcemanager.googleapis.com/projects/" +
                              std::string(project) + "' (or it may not exist).");
    if (!has_scope(issued->scope, kMessagingScope) && !has_scope(issued->scope, kCloudScope))
      return google_error(403, "PERMISSION_DENIED", "Request had insufficient authentication scopes.",
                          Json::array({{{"@type", kErrorInfoType},
                                        {"reason", "ACCESS_TOKEN_SCOPE_INSUFFICIENT"},
                                        {"domain", "googleapis.com"}}}));

    Json body = Json::parse(req.body, nullptr, false);
    if (!body.is_object()) return fcm_unparsable("", "Invalid JSON payload received. Expected a JSON object.");
    for (const auto& [key, value] : body.items())
      if (key != "message" && key != "validate_only" && key != "validateOnly")
        return fcm_unparsable(key, "Invalid JSON payload received. Unknown name \"" + key + "\": Cannot find field.");
    if (!body.contains("message") || !body["message"].is_object())
      return fcm_error(400, "INVALID_ARGUMENT", "INVALID_ARGUMENT", "Request contains an invalid argument.", "message");
    const Json& m = body["message"];
    if (auto bad = check_message(m)) return *bad;

    if (m.contains("token"))
      if (auto dead = ctx.contact_fault(*this, m["token"].get<std::string>())) return *dead;

    bool validate_only = body.value("validate_only", body.value("validateOnly", false));
    std::string id =
        validate_only ? "fake_message_id" : "0:" + std::to_string(ctx.now_ms() * 1000) + "%" + random_hex(16);
    return json_response(200, {{"name", "projects/" + std::string(project) + "/messages/" + id}}, kGoogleJson);
  }

  SimResponse error_for_status(int status) const override {
    switch (status) {
      case 400:
        return *fcm_named_error("INVALID_ARGUMENT");
      case 401:
        return unauthenticated("ACCESS_TOKEN_EXPIRED", false);
      case 403:
        return *fcm_named_error("SENDER_ID_MISMATCH");
      case 404:
        return *fcm_named_error("UNREGISTERED");
      case 429:
        return *fcm_named_error("QUOTA_EXCEEDED");
      case 500:
        return *fcm_named_error("INTERNAL");
      case 503:
        return *fcm_named_error("UNAVAILABLE");
      default:
        if (status >= 500)
          return fcm_error(status, "UNAVAILABLE", "UNAVAILABLE", "The service is currently unavailable.");
        return google_error(status, "UNKNOWN", "Unknown error.");
    }
  }

  std::optional<SimResponse> contact_error(std::string_view code, int64_t) const override {
    return fcm_named_error(code);
  }

 private:
  // The message's shape (firebase.google.com/docs/reference/fcm/rest/v1/projects.messages): known fields,
  // exactly one target, string-only data maps, a well-formed Android TTL, and at most 4096 bytes of payload.
  static std::optional<SimResponse> check_message(const Json& m) {
    static const std::set<std::string> fields = {"name",    "data",  "notification", "android",
                                                 "webpush", "apns",  "fcm_options",  "fcmOptions",
                                                 "token",   "topic", "condition"};
    for (const auto& [key, value] : m.items())
      if (!fields.count(key))
        return fcm_unparsable(
            "message", "Invalid JSON payload received. Unknown name \"" + key + "\" at 'message': Cannot find field.");
    std::vector<std::string> targets;
    for (const char* t : {"token", "topic", "condition"})
      if (m.contains(t)) targets.emplace_back(t);
    if (targets.empty())
      return fcm_error(400, "INVALID_ARGUMENT", "INVALID_ARGUMENT", "Recipient of the message is not set.", "message");
    if (targets.size() > 1)
      return fcm_unparsable("message",
                            "Invalid value at 'message' (oneof), oneof field 'target' is already set. "
                            "Cannot set '" +
                                targets[1] + "'");
    for (const auto& t : targets)
      if (!m[t].is_string())
        return fcm_unparsable("message." + t, "Invalid value at 'message." + t + "' (TYPE_STRING), " + m[t].dump());
    if (m.contains("token") && !plausible_registration_token(m["token"].get<std::string>()))
      return fcm_named_error("INVALID_ARGUMENT");

    auto check_data = [](const Json& parent, const std::string& where) -> std::optional<SimResponse> {
      if (!parent.contains("data")) return std::nullopt;
      const Json& data = parent["data"];
      if (!data.is_object()) return fcm_unparsable(where, "Invalid value at '" + where + "' (map), " + data.dump());
      size_t i = 0;
      for (const auto& [key, value] : data.items()) {
        if (!value.is_string()) {
          std::string field = where + "[" + std::to_string(i) + "].value";
          return fcm_unparsable(field, "Invalid value at '" + field + "' (TYPE_STRING), " + value.dump());
        }
        ++i;
      }
      return std::nullopt;
    };
    if (auto bad = check_data(m, "message.data")) return bad;
    if (m.contains("android")) {
      const Json& a = m["android"];
      if (!a.is_object()) return fcm_unparsable("message.android", "Invalid value at 'message.android'");
      if (auto bad = check_data(a, "message.android.data")) return bad;
      if (a.contains("ttl") && !valid_duration(a["ttl"]))
        return fcm_unparsable("message.android.ttl",
                              "Invalid value at 'message.android.ttl' "
                              "(type.googleapis.com/google.protobuf.Duration), " +
                                  a["ttl"].dump());
    }
    // The 4096-byte limit is on the payload: everything but the target.
    Json payload = m;
    for (const char* t : {"token", "topic", "condition"}) payload.erase(t);
    if (payload.dump().size() > 4096)
      return fcm_error(400, "INVALID_ARGUMENT", "INVALID_ARGUMENT",
                       "Message is too big: the payload exceeds 4096 bytes.");
    return std::nullopt;
  }

  // A protobuf Duration in JSON: seconds with up to 9 fractional digits and an "s" suffix ("3600s", "1.5s").
  static bool valid_duration(const Json& v) {
    if (!v.is_string()) return false;
    const std::string& s = v.get_ref<const std::string&>();
    if (s.size() < 2 || s.back() != 's') return false;
    std::string_view n(s.data(), s.size() - 1);
    size_t dot = n.find('.');
    std::string_view whole = n.substr(0, dot), frac = dot == std::string_view::npos ? "" : n.substr(dot + 1);
    auto digits = [](std::string_view d) {
      for (char c : d)
        if (c < '0' || c > '9') return false;
      return true;
    };
    return !whole.empty() && digits(whole) && digits(frac) && frac.size() <= 9 &&
           (dot == std::string_view::npos || !frac.empty());
  }

  FcmConfig config_;
  std::shared_ptr<TokenStore> store_;
};

}  // namespace

std::vector<std::unique_ptr<Provider>> make_fcm(FcmConfig config) {
  auto store = std::make_shared<TokenStore>();
  std::vector<std::unique_ptr<Provider>> out;
  out.push_back(std::make_unique<GoogleOAuth>(config, store));
  out.push_back(std::make_unique<Fcm>(config, store));
  return out;
}

}  // namespace tayori::sim
