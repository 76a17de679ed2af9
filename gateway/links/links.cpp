// Signed links (links.hpp): minting and checking unsubscribe, response, click and open tokens with the newest link secret,
// verifying with any listed one by its key id. The API's /u/ and /r/ routes and the plugins' links use them.
#include "links/links.hpp"

#include <cctype>

#include <nlohmann/json.hpp>

#include "common/json.hpp"
#include "crypto/crypto.hpp"

namespace tayori::links {

namespace {

constexpr size_t kMacBytes = 16;

const char* kind_code(LinkKind kind) {
  switch (kind) {
    case LinkKind::unsubscribe: return "u";
    case LinkKind::response: return "r";
    case LinkKind::click: return "c";
    case LinkKind::open: return "o";
  }
  return "u";
}

std::optional<std::string> hmac_sha256(std::string_view key, std::string_view data) {
  auto mac = crypto::hmac_sha256(key, data);
  if (!mac) return std::nullopt;
  return std::move(mac.value());
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

bool valid_key_id(std::string_view id) {
  if (id.empty() || id.size() > 16) return false;
  for (char ch : id)
    if (!(std::isalnum(static_cast<unsigned char>(ch)) || ch == '_' || ch == '-')) return false;
  return true;
}

LinkSigner::LinkSigner(std::string public_url, std::vector<LinkKey> keys, MacFunction mac)
    : public_url_(std::move(public_url)), keys_(std::move(keys)), mac_(mac ? std::move(mac) : MacFunction(hmac_sha256)) {
  while (!public_url_.empty() && public_url_.back() == '/') public_url_.pop_back();
}

LinkSigner::LinkSigner(std::string public_url, std::string secret)
    : LinkSigner(std::move(public_url), std::vector<LinkKey>{{"", std::move(secret)}}) {}

const LinkKey* LinkSigner::key_of(std::string_view id) const {
  for (const auto& k : keys_)
    if (k.id == id) return k.secret.empty() ? nullptr : &k;
  return nullptr;
}

std::optional<std::string> LinkSigner::mac_of(const LinkKey& key, std::string_view payload) const {
  std::string signed_text = key.id.empty() ? std::string(payload) : key.id + "." + std::string(payload);
  auto mac = mac_(key.secret, signed_text);
  // A MAC that came back short (or empty, from a failure reported as success) would let "payload." verify.
  if (!mac || mac->size() < kMacBytes) return std::nullopt;
  return mac->substr(0, kMacBytes);
}

std::string LinkSigner::token(const LinkClaims& c) const {
  if (keys_.empty()) throw SigningError("signed links: no key configured");
  const LinkKey& key = keys_.front();
  nlohmann::json fields = nlohmann::json::array({kind_code(c.kind), c.message_id, c.channel, c.option, c.expires_at_s});
  if (c.kind == LinkKind::click) fields.push_back(c.target);
  std::string payload = fields.dump();
  auto mac = mac_of(key, payload);
  if (!mac) throw SigningError("signed links: HMAC-SHA256 under key \"" + key.id + "\" failed");
  std::string prefix = key.id.empty() ? std::string() : key.id + ".";
  return prefix + crypto::base64url_encode(payload) + "." + crypto::base64url_encode(*mac);
}

std::string LinkSigner::url(const LinkClaims& c) const { return url(c.kind, token(c)); }

std::string LinkSigner::url(LinkKind kind, std::string_view token) const {
  return public_url_ + "/" + kind_code(kind) + "/" + std::string(token);
}

Verified LinkSigner::verify(std::string_view token, int64_t now_s) const {
  Verified v;
  // [key_id "."] payload "." mac: two dots name a key, one dot is the key without an id.
  size_t last = token.rfind('.');
  if (last == std::string_view::npos) {
    v.error = LinkError::malformed;
    return v;
  }
  size_t first = token.find('.');
  std::string_view key_id = first == last ? std::string_view() : token.substr(0, first);
  if (first != last && key_id.empty()) {
    v.error = LinkError::malformed;
    return v;
  }
  size_t payload_at = first == last ? 0 : first + 1;
  auto payload = crypto::base64url_decode(token.substr(payload_at, last - payload_at));
  auto mac = crypto::base64url_decode(token.substr(last + 1));
  if (!payload || !mac) {
    v.error = LinkError::malformed;
    return v;
  }
  // The MAC decides before anything in the payload is trusted; no key, or no MAC computed, is a forgery.
  const LinkKey* key = key_of(key_id);
  std::optional<std::string> expected = key ? mac_of(*key, payload.value()) : std::nullopt;
  if (!expected || !crypto::constant_time_equal(mac.value(), *expected)) {
    v.error = LinkError::forged;
    return v;
  }
  auto j = parse_json_or_discarded(payload.value());
  const std::string kind = j.is_array() && !j.empty() && j[0].is_string() ? j[0].get<std::string>() : "";
  const size_t fields = kind == "c" ? 6 : 5;  // a click carries its target
  if ((kind != "u" && kind != "r" && kind != "c" && kind != "o") || j.size() != fields || !j[1].is_string() || !j[2].is_string() ||
      !j[3].is_string() || !j[4].is_number_integer() || (fields == 6 && !j[5].is_string())) {
    v.error = LinkError::malformed;
    return v;
  }
  const LinkKind parsed = kind == "u"   ? LinkKind::unsubscribe
                          : kind == "r" ? LinkKind::response
                          : kind == "c" ? LinkKind::click
                                        : LinkKind::open;
  v.claims = LinkClaims{parsed,
                        j[1].get<std::string>(), j[2].get<std::string>(), j[3].get<std::string>(), j[4].get<int64_t>(),
                        fields == 6 ? j[5].get<std::string>() : std::string()};
  if (now_s >= v.claims.expires_at_s) v.error = LinkError::expired;
  return v;
}

}  // namespace tayori::links
