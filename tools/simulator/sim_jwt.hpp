// How the simulated providers check the JWTs they are sent (FCM's OAuth assertion, RS256; APNs' provider
// token, ES256): compact JWS (RFC 7515 §7.1) checked with OpenSSL calls written here, apart from the
// gateway's crypto/. Were the simulator to verify with the gateway's own verify_jwt, a mistake in how the
// gateway encodes a signature (an ES256 signature in DER instead of R || S, RFC 7518 §3.4) would pass on both
// sides and fail only against the real provider.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace tayori::sim {

struct ProviderJwt {
  nlohmann::json header;  // an object
  nlohmann::json claims;  // an object
};

// The token's header and claims when it is three base64url parts, its header names `alg` (RS256 or ES256)
// and no "crit", and its signature verifies against `public_key_pem` (SubjectPublicKeyInfo, or an RSA key
// as PKCS#1) of the matching type; nullopt otherwise. Claims are the caller's to check.
std::optional<ProviderJwt> verify_provider_jwt(std::string_view compact, std::string_view alg,
                                               const std::string& public_key_pem);

}  // namespace tayori::sim
