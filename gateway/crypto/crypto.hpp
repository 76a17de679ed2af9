// The host's signing helpers (docs/architecture.md §3): base64/base64url, SHA-256 (API key digests, payload
// hashes), HMAC-SHA256/SHA1 (LINE and Twilio signatures, signed links, webhook signatures), constant-time comparison,
// compact JWS signing/verification for RS256 (FCM OAuth grant) and ES256 (APNs provider token), and a token cache. No
// plugin hand-rolls crypto; everything goes through OpenSSL 3. Nothing here throws: failures come back as a Result
// whose error names what failed.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "common/result.hpp"

namespace tayori::crypto {

// ---- base64 (RFC 4648) ----------------------------------------------------------------------------

// Standard alphabet with '=' padding (RFC 4648 §4).
std::string base64_encode(std::string_view bytes);
// URL-safe alphabet ('-', '_'), no padding (RFC 4648 §5, as JWS uses it).
std::string base64url_encode(std::string_view bytes);
// Strict §4 decode: length a multiple of 4, only alphabet characters, '=' only as 1 or 2 trailing pad
// characters, no whitespace, and the unused bits of the last group must be zero (canonical encoding).
Result<std::string> base64_decode(std::string_view text);
// Strict §5 decode without padding ('=' refused), same canonical-bits rule; length % 4 == 1 is refused.
Result<std::string> base64url_decode(std::string_view text);

// ---- digests ------------------------------------------------------------------------------------

// The 32 raw bytes of SHA-256(text) (FIPS 180-4).
std::string sha256(std::string_view text);
// Lower-case hexadecimal, two digits a byte.
std::string hex(std::string_view bytes);
// hex(sha256(text)): the payload hash that idempotency compares and stores.
std::string sha256_hex(std::string_view text);

// ---- HMAC ----------------------------------------------------------------------------------------

// Raw MAC bytes (32 for SHA-256, 20 for SHA-1). An empty key is allowed.
Result<std::string> hmac_sha256(std::string_view key, std::string_view data);
Result<std::string> hmac_sha1(std::string_view key, std::string_view data);

// True when a and b are byte-identical. The content comparison is constant time (CRYPTO_memcmp); a length
// mismatch returns false after still running a comparison of the same cost as an equal-length one.
bool constant_time_equal(std::string_view a, std::string_view b);

// ---- JWT (RFC 7515 compact JWS / RFC 7519) ---------------------------------------------------------

// Signs a JWT. `alg` is "RS256" (RSASSA-PKCS1-v1_5 SHA-256, RSA key >= 2048 bits) or "ES256" (ECDSA P-256
// SHA-256, signature as the raw 64-byte R||S of RFC 7518 §3.4). The header is {"alg":alg,"typ":"JWT"} merged
// with `header_json_extra` (a JSON object such as {"kid":"ABC123"}, or empty); the extra may override
// "typ" but never "alg". `claims_json` must be a JSON object. `pem_private_key` is PKCS#8 ("BEGIN PRIVATE
// KEY", as in a Google service-account JSON or an Apple .p8) or traditional ("BEGIN RSA/EC PRIVATE KEY");
// encrypted keys are refused. A key whose type does not match `alg` is refused.
Result<std::string> sign_jwt(std::string_view alg, std::string_view header_json_extra, std::string_view claims_json,
                             std::string_view pem_private_key);

struct VerifiedJwt {
  std::string alg;
  nlohmann::json header;  // always an object
  nlohmann::json claims;  // always an object
};

// Verifies a compact JWS signed with RS256 or ES256 against a PEM public key ("BEGIN PUBLIC KEY", or
// "BEGIN RSA PUBLIC KEY"). Refuses alg "none" (and any other alg), unsigned tokens, headers with "crit",
// and a key whose type does not match the header's alg. Checks the signature only: the caller checks
// claims such as exp/iat/aud against its own clock.
Result<VerifiedJwt> verify_jwt(std::string_view compact, std::string_view pem_public_key);

// ---- Token cache -----------------------------------------------------------------------------------

struct MintedToken {
  std::string token;
  int64_t expires_at_ms = 0;  // absolute, same clock as the now_ms passed to get()
};

// Caches minted bearer tokens (APNs provider tokens, FCM OAuth access tokens) by key. get() returns the
// cached token while now_ms < expires_at_ms - refresh_before_ms, otherwise calls `mint` and caches the
// result. Thread-safe: concurrent get() calls for one key mint once (others wait for that mint); different
// keys never wait on each other's mint. If a re-mint fails while the cached token has not actually expired
// (now_ms < expires_at_ms), the cached token is returned; otherwise the mint error is returned. A throwing
// mint is reported as an error. Time is injected, so behaviour is deterministic.
class TokenCache {
 public:
  using MintFn = std::function<Result<MintedToken>()>;

  Result<std::string> get(const std::string& key, int64_t now_ms, int64_t refresh_before_ms, const MintFn& mint);

  // Drops the cached token for `key` so the next get() re-mints (e.g. APNs 403 ExpiredProviderToken, FCM
  // 401). With a non-empty `only_if_token`, drops it only while it is still that token, so many requests
  // rejected with the same stale token cause a single re-mint.
  void invalidate(const std::string& key, std::string_view only_if_token = {});

  // Number of successful mints so far (for tests and metrics).
  uint64_t mint_count() const;

 private:
  struct Entry {
    std::mutex mu;
    bool has_token = false;
    MintedToken token;
  };
  std::shared_ptr<Entry> entry_for(const std::string& key);

  mutable std::mutex mu_;
  std::map<std::string, std::shared_ptr<Entry>> entries_;
  uint64_t mints_ = 0;
};

}  // namespace tayori::crypto
