// The simulated providers' JWT check (sim_jwt.hpp): base64url (RFC 4648 §5) through OpenSSL's base64 decoder,
// the key through OSSL_DECODER, ES256's R || S turned into the DER ECDSA-Sig-Value OpenSSL verifies, and
// EVP_DigestVerify with SHA-256 (RFC 7518 §3.3 RS256, §3.4 ES256).
#include "sim_jwt.hpp"

#include <openssl/core_names.h>
#include <openssl/decoder.h>
#include <openssl/ec.h>
#include <openssl/evp.h>

#include <memory>
#include <vector>

namespace tayori::sim {
namespace {

// base64url without padding -> bytes; nullopt for a character outside the alphabet or a bad length.
std::optional<std::string> base64url_bytes(std::string_view text) {
  if (text.size() % 4 == 1) return std::nullopt;
  std::string b64(text);
  for (char& c : b64) {
    if (c == '-') c = '+';
    else if (c == '_') c = '/';
    else if (c == '+' || c == '/' || c == '=') return std::nullopt;  // not base64url
  }
  const size_t padding = (4 - b64.size() % 4) % 4;
  b64.append(padding, '=');
  std::string out(b64.size() / 4 * 3, '\0');
  int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                          reinterpret_cast<const unsigned char*>(b64.data()), static_cast<int>(b64.size()));
  if (n < 0) return std::nullopt;
  out.resize(static_cast<size_t>(n) - padding);  // EVP_DecodeBlock counts the padding's zero bytes
  return out;
}

struct PkeyFree {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};
using Pkey = std::unique_ptr<EVP_PKEY, PkeyFree>;

Pkey public_key(const std::string& pem) {
  EVP_PKEY* key = nullptr;
  OSSL_DECODER_CTX* ctx =
      OSSL_DECODER_CTX_new_for_pkey(&key, "PEM", nullptr, nullptr, EVP_PKEY_PUBLIC_KEY, nullptr, nullptr);
  if (!ctx) return nullptr;
  auto data = reinterpret_cast<const unsigned char*>(pem.data());
  size_t len = pem.size();
  bool ok = OSSL_DECODER_from_data(ctx, &data, &len) == 1;
  OSSL_DECODER_CTX_free(ctx);
  if (!ok) {
    EVP_PKEY_free(key);
    return nullptr;
  }
  return Pkey(key);
}

// ES256's signature is R || S, 32 bytes each (RFC 7518 §3.4); OpenSSL verifies a DER ECDSA-Sig-Value.
std::optional<std::string> es256_der(const std::string& raw) {
  if (raw.size() != 64) return std::nullopt;
  ECDSA_SIG* sig = ECDSA_SIG_new();
  BIGNUM* r = BN_bin2bn(reinterpret_cast<const unsigned char*>(raw.data()), 32, nullptr);
  BIGNUM* s = BN_bin2bn(reinterpret_cast<const unsigned char*>(raw.data()) + 32, 32, nullptr);
  if (!sig || !r || !s || ECDSA_SIG_set0(sig, r, s) != 1) {
    BN_free(r);
    BN_free(s);
    ECDSA_SIG_free(sig);
    return std::nullopt;
  }
  unsigned char* der = nullptr;
  int n = i2d_ECDSA_SIG(sig, &der);
  ECDSA_SIG_free(sig);
  if (n <= 0) return std::nullopt;
  std::string out(reinterpret_cast<char*>(der), static_cast<size_t>(n));
  OPENSSL_free(der);
  return out;
}

bool key_fits(EVP_PKEY* key, std::string_view alg) {
  if (alg == "RS256") return EVP_PKEY_is_a(key, "RSA") == 1;
  if (alg != "ES256" || EVP_PKEY_is_a(key, "EC") != 1) return false;
  char group[64] = {0};
  size_t len = 0;
  return EVP_PKEY_get_utf8_string_param(key, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof group, &len) == 1 &&
         std::string_view(group, len) == "prime256v1";  // P-256, as ES256 requires
}

}  // namespace

std::optional<ProviderJwt> verify_provider_jwt(std::string_view compact, std::string_view alg,
                                               const std::string& public_key_pem) {
  const size_t first = compact.find('.');
  const size_t second = first == std::string_view::npos ? first : compact.find('.', first + 1);
  if (second == std::string_view::npos || compact.find('.', second + 1) != std::string_view::npos) return std::nullopt;
  auto header_bytes = base64url_bytes(compact.substr(0, first));
  auto claims_bytes = base64url_bytes(compact.substr(first + 1, second - first - 1));
  auto signature = base64url_bytes(compact.substr(second + 1));
  if (!header_bytes || !claims_bytes || !signature) return std::nullopt;
  ProviderJwt jwt{nlohmann::json::parse(*header_bytes, nullptr, false),
                  nlohmann::json::parse(*claims_bytes, nullptr, false)};
  if (!jwt.header.is_object() || !jwt.claims.is_object()) return std::nullopt;
  // RFC 7515 §4.1.11: an extension the verifier does not know must be refused; this one knows none.
  if (jwt.header.value("alg", "") != alg || jwt.header.contains("crit")) return std::nullopt;

  Pkey key = public_key(public_key_pem);
  if (!key || !key_fits(key.get(), alg)) return std::nullopt;
  if (alg == "ES256") {
    auto der = es256_der(*signature);
    if (!der) return std::nullopt;
    signature = std::move(der);
  }
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  const std::string_view signing_input = compact.substr(0, second);  // RFC 7515 §5.2: header.payload as sent
  bool ok = ctx && EVP_DigestVerifyInit(ctx, nullptr, EVP_sha256(), nullptr, key.get()) == 1 &&
            EVP_DigestVerify(ctx, reinterpret_cast<const unsigned char*>(signature->data()), signature->size(),
                             reinterpret_cast<const unsigned char*>(signing_input.data()), signing_input.size()) == 1;
  EVP_MD_CTX_free(ctx);
  if (!ok) return std::nullopt;
  return jwt;
}

}  // namespace tayori::sim
