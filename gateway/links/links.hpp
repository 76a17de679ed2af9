// Signed links that point back at the gateway: the one-click unsubscribe target of marketing mail
// (RFC 8058) and, for two-way messages, one link or postback reference per response option.
//
// A token is base64url(payload) "." base64url(first 16 bytes of HMAC-SHA256(secret, payload)). The payload
// is a compact JSON array [kind, message_id, channel, option, expires_at_s] so no field needs escaping
// rules of its own. 128 MAC bits are ample against forgery and keep a token short enough for LINE's
// 300-character postback data.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace tayori::links {

enum class LinkKind { unsubscribe, response };

struct LinkClaims {
  LinkKind kind = LinkKind::unsubscribe;
  std::string message_id;
  std::string channel;
  std::string option;        // the response option id (kind response); empty for unsubscribe
  int64_t expires_at_s = 0;  // Unix seconds
};

enum class LinkError { none, malformed, forged, expired };

struct Verified {
  LinkError error = LinkError::none;
  LinkClaims claims;  // set only when error == none
  bool ok() const { return error == LinkError::none; }
};

const char* to_string(LinkError error);

class LinkSigner {
 public:
  LinkSigner() = default;  // disabled: no public URL
  // `public_url` is the gateway as the outside world reaches it (https://example.com/tayori), without a
  // trailing slash; `secret` keys the HMAC and must not be empty when public_url is set.
  LinkSigner(std::string public_url, std::string secret);

  bool enabled() const { return !public_url_.empty(); }
  const std::string& public_url() const { return public_url_; }

  std::string token(const LinkClaims& claims) const;
  // public_url + "/u/" (unsubscribe) or "/r/" (response) + token.
  std::string url(const LinkClaims& claims) const;
  // The same URL for a token already made by token(), for a caller that needs both (one MAC, not two).
  std::string url(LinkKind kind, std::string_view token) const;
  // Checks the MAC in constant time before looking at the payload, then the expiry against now_s.
  Verified verify(std::string_view token, int64_t now_s) const;

 private:
  std::string public_url_;
  std::string secret_;
};

}  // namespace tayori::links
