#include "links/links.hpp"

#include <nlohmann/json.hpp>

#include "transport/crypto.hpp"

namespace tayori::links {

namespace {

constexpr size_t kMacBytes = 16;

const char* kind_code(LinkKind kind) { return kind == LinkKind::unsubscribe ? "u" : "r"; }

std::string mac_of(std::string_view secret, std::string_view payload) {
  auto mac = transport::hmac_sha256(secret, payload);
  return mac ? mac.value.substr(0, kMacBytes) : std::string();
}

}  // namespace

const char* to_string(LinkError error) {
  switch (error) {
    case LinkError::none: return "ok";
    case LinkError::malformed: return "malformed";
    case LinkError::forged: return "forged";
    case LinkError::expired: return "expired";
  }
  return "malformed";
}

LinkSigner::LinkSigner(std::string public_url, std::string secret)
    : public_url_(std::move(public_url)), secret_(std::move(secret)) {
  while (!public_url_.empty() && public_url_.back() == '/') public_url_.pop_back();
}

std::string LinkSigner::token(const LinkClaims& c) const {
  std::string payload =
      nlohmann::json::array({kind_code(c.kind), c.message_id, c.channel, c.option, c.expires_at_s}).dump();
  return transport::base64url_encode(payload) + "." + transport::base64url_encode(mac_of(secret_, payload));
}

std::string LinkSigner::url(const LinkClaims& c) const { return url(c.kind, token(c)); }

std::string LinkSigner::url(LinkKind kind, std::string_view token) const {
  return public_url_ + (kind == LinkKind::unsubscribe ? "/u/" : "/r/") + std::string(token);
}

Verified LinkSigner::verify(std::string_view token, int64_t now_s) const {
  Verified v;
  size_t dot = token.find('.');
  if (secret_.empty() || dot == std::string_view::npos) {
    v.error = LinkError::malformed;
    return v;
  }
  auto payload = transport::base64url_decode(token.substr(0, dot));
  auto mac = transport::base64url_decode(token.substr(dot + 1));
  if (!payload || !mac) {
    v.error = LinkError::malformed;
    return v;
  }
  // The MAC decides before anything in the payload is trusted.
  if (!transport::constant_time_equal(mac.value, mac_of(secret_, payload.value))) {
    v.error = LinkError::forged;
    return v;
  }
  auto j = nlohmann::json::parse(payload.value, nullptr, false);
  if (!j.is_array() || j.size() != 5 || !j[0].is_string() || !j[1].is_string() || !j[2].is_string() ||
      !j[3].is_string() || !j[4].is_number_integer()) {
    v.error = LinkError::malformed;
    return v;
  }
  std::string kind = j[0].get<std::string>();
  if (kind != "u" && kind != "r") {
    v.error = LinkError::malformed;
    return v;
  }
  LinkClaims c{kind == "u" ? LinkKind::unsubscribe : LinkKind::response, j[1].get<std::string>(),
               j[2].get<std::string>(), j[3].get<std::string>(), j[4].get<int64_t>()};
  if (now_s >= c.expires_at_s) {
    v.error = LinkError::expired;
    return v;
  }
  v.claims = std::move(c);
  return v;
}

}  // namespace tayori::links
