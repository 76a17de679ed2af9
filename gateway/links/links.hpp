// Signed links that point back at the gateway: the one-click unsubscribe target of marketing mail
// (RFC 8058) and, for two-way messages, one link or postback reference per response option.
//
// A token is [key_id "."] base64url(payload) "." base64url(first 16 bytes of HMAC-SHA256(secret, signed)),
// where `signed` is key_id "." payload, or the payload alone for the one key without an id
// (server.link_secret_env). The payload is a compact JSON array [kind, message_id, channel, option,
// expires_at_s] (a click appends its target URL) so no field needs escaping rules of its own. 128 MAC bits are ample against forgery and keep
// a token short enough for LINE's 300-character postback data.
//
// Several keys verify at once and the first signs, so an operator rotates a key by putting a new one first
// and removing the old one once the links it signed have expired (server.link_ttl): links already sent
// keep working meanwhile. The key id is read before the MAC is checked only to choose the key; it is
// covered by the MAC, so a token cannot be moved to another key.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace tayori::links {

// unsubscribe: /u/ (RFC 8058); response: /r/ and LINE postback data; click: /c/, a tracked link in a message;
// open: /o/, an e-mail's open pixel.
enum class LinkKind { unsubscribe, response, click, open };

struct LinkClaims {
  // The target comes last and only for a click: {kind, message_id, channel, option, expires_at_s[, target]}.
  LinkClaims(LinkKind kind = LinkKind::unsubscribe, std::string message_id = {}, std::string channel = {},
             std::string option = {}, int64_t expires_at_s = 0, std::string target = {})
      : kind(kind), message_id(std::move(message_id)), channel(std::move(channel)), option(std::move(option)),
        expires_at_s(expires_at_s), target(std::move(target)) {}

  LinkKind kind = LinkKind::unsubscribe;
  std::string message_id;
  std::string channel;
  std::string option;        // the response option id (kind response); the link's index (click); empty for unsubscribe
  int64_t expires_at_s = 0;  // Unix seconds
  // kind click: the URL the message had where the tracked link now is. Signed with the rest, so /c/ can only
  // ever redirect to a URL that was in a message (no open redirect), and needs no look-up to do it.
  std::string target;
};

enum class LinkError { none, malformed, forged, expired };

// A verdict, not a Result<LinkClaims>: an expired link's claims are still ours (its MAC held), and the
// answer needs them (a tracked link still redirects to its target, GET /o/ still shows the pixel).
struct Verified {
  LinkError error = LinkError::none;
  LinkClaims claims;  // set when error is none or expired (the MAC held: the claims are ours, only old)
  bool ok() const { return error == LinkError::none; }
};

const char* to_string(LinkError error);

// One key of signed links (server.link_secrets). `id` is 1 to 16 of [A-Za-z0-9_-], or empty for the key of
// server.link_secret_env, whose tokens carry no id (those sent before key ids existed).
struct LinkKey {
  std::string id;
  std::string secret;
};

// The MAC of `data` under `key`; nullopt when it cannot be computed (OpenSSL failed). A seam for tests.
using MacFunction = std::function<std::optional<std::string>(std::string_view key, std::string_view data)>;

// token() could not compute a MAC: no link can be made, and an unsigned one must never be sent.
class SigningError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class LinkSigner {
 public:
  LinkSigner() = default;  // disabled: no public URL
  // `public_url` is the gateway as the outside world reaches it (https://example.com/tayori), without a
  // trailing slash. `keys` key the HMAC, the first one signs; none may be empty when public_url is set.
  LinkSigner(std::string public_url, std::vector<LinkKey> keys, MacFunction mac = {});
  // One key without an id.
  LinkSigner(std::string public_url, std::string secret);

  bool enabled() const { return !public_url_.empty(); }
  const std::string& public_url() const { return public_url_; }

  // Throws SigningError when the MAC cannot be computed.
  std::string token(const LinkClaims& claims) const;
  // public_url + "/u/" (unsubscribe), "/r/" (response), "/c/" (click) or "/o/" (open) + token.
  std::string url(const LinkClaims& claims) const;
  // The same URL for a token already made by token(), for a caller that needs both (one MAC, not two).
  std::string url(LinkKind kind, std::string_view token) const;
  // Checks the MAC in constant time before looking at the payload, then the expiry against now_s. A token
  // of an unknown key id is forged; so is any token when the MAC cannot be computed.
  Verified verify(std::string_view token, int64_t now_s) const;

 private:
  const LinkKey* key_of(std::string_view id) const;
  std::optional<std::string> mac_of(const LinkKey& key, std::string_view payload) const;

  std::string public_url_;
  std::vector<LinkKey> keys_;
  MacFunction mac_;
};

// Whether `id` may name a link key: 1 to 16 of [A-Za-z0-9_-] (it travels in URLs and LINE postback data).
bool valid_key_id(std::string_view id);

}  // namespace tayori::links
