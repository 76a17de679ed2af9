// The signing helpers (crypto.hpp) over OpenSSL 3: base64, SHA-256, HMAC, JWS (RS256, ES256, with ES256's
// R || S), PEM keys, and the token cache with single-flight minting. Nothing here includes the rest of gateway/
// but its Result type.
#include "crypto/crypto.hpp"

#include <openssl/bn.h>
#include <openssl/crypto.h>
#include <openssl/decoder.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/core_names.h>

#include <algorithm>
#include <array>
#include <exception>
#include <limits>

namespace tayori::crypto {
namespace {

// ---- helpers -----------------------------------------------------------------------------------------

// Almost every failure here is an input the function refuses (a malformed token, a key of the wrong type);
// OpenSSL's own failures say so in the message, and no caller answers them differently.
Error fail(std::string message) { return Error{ErrorCode::invalid, std::move(message)}; }

// Drains the thread's OpenSSL error queue into "what: reason".
std::string openssl_error(std::string_view what) {
  std::string out(what);
  unsigned long code = ERR_get_error();
  if (code != 0) {
    char buf[256];
    ERR_error_string_n(code, buf, sizeof buf);
    out += ": ";
    out += buf;
  }
  ERR_clear_error();
  return out;
}

struct PkeyFree {
  void operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); }
};
struct MdCtxFree {
  void operator()(EVP_MD_CTX* p) const { EVP_MD_CTX_free(p); }
};
struct DecoderCtxFree {
  void operator()(OSSL_DECODER_CTX* p) const { OSSL_DECODER_CTX_free(p); }
};
struct EcdsaSigFree {
  void operator()(ECDSA_SIG* p) const { ECDSA_SIG_free(p); }
};
struct MacFree {
  void operator()(EVP_MAC* p) const { EVP_MAC_free(p); }
};
struct MacCtxFree {
  void operator()(EVP_MAC_CTX* p) const { EVP_MAC_CTX_free(p); }
};
using PkeyPtr = std::unique_ptr<EVP_PKEY, PkeyFree>;

const unsigned char* bytes(std::string_view s) { return reinterpret_cast<const unsigned char*>(s.data()); }

// ---- base64 -------------------------------------------------------------------------------------------
// OpenSSL does the coding (EVP_EncodeBlock/EVP_DecodeBlock speak the RFC 4648 §4 alphabet with padding);
// what it does not do is done here: the §5 URL-safe alphabet without padding that JWS uses, and the strict
// checks of decode_body, since EVP_DecodeBlock skips surrounding white space and ignores non-zero pad bits.

// RFC 4648 §5 differs from §4 only in the two characters for 62 and 63.
void to_url_alphabet(std::string& text) {
  for (char& c : text) c = c == '+' ? '-' : c == '/' ? '_' : c;
}

std::string encode_std(std::string_view in) {
  std::string out;
  // EVP_EncodeBlock counts in int; whole 3-byte groups per call keep the concatenation one encoding.
  constexpr size_t kChunk = size_t(3) << 20;
  for (size_t at = 0; at < in.size(); at += kChunk) {
    size_t n = std::min(kChunk, in.size() - at);
    size_t done = out.size();
    out.resize(done + (n + 2) / 3 * 4 + 1);  // and the NUL it writes
    int len = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data() + done), bytes(in.substr(at)), int(n));
    out.resize(done + size_t(len));
  }
  return out;
}

int sextet(char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+') return 62;
  if (c == '/') return 63;
  return -1;
}

// Decodes `body`: §4 alphabet, no padding characters, a length whose remainder mod 4 is 0, 2 or 3. Refuses
// any other character and a last character whose bits past the data are not zero (RFC 4648 §3.5: such
// text is not the canonical encoding, and accepting it would let two texts stand for one value).
Result<std::string> decode_body(std::string_view body, const char* name) {
  using R = Result<std::string>;
  if (body.size() % 4 == 1) return fail(std::string(name) + ": truncated input");
  for (size_t i = 0; i < body.size(); ++i)
    if (sextet(body[i]) < 0) return fail(std::string(name) + ": invalid character at offset " + std::to_string(i));
  size_t pad = (4 - body.size() % 4) % 4;
  if (pad > 0 && (sextet(body.back()) & (pad == 2 ? 0x0f : 0x03)) != 0)
    return fail(std::string(name) + ": non-zero trailing bits");
  if (body.empty()) return R(std::string());
  std::string padded(body);
  padded.append(pad, '=');
  std::string out(padded.size() / 4 * 3, '\0');
  if (padded.size() > size_t(std::numeric_limits<int>::max())) return fail(std::string(name) + ": input too long");
  int len = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()), bytes(padded), int(padded.size()));
  if (len < 0) return fail(openssl_error(std::string(name) + ": cannot decode"));
  // EVP_DecodeBlock writes a zero byte for each '=': they are not data.
  out.resize(size_t(len) - pad);
  return R(std::move(out));
}

// ---- keys ---------------------------------------------------------------------------------------------

int refuse_passphrase(char*, size_t, size_t*, const OSSL_PARAM[], void*) { return 0; }

Result<PkeyPtr> load_pem(std::string_view pem, bool private_key) {
  const char* what = private_key ? "private key" : "public key";
  if (pem.find("-----BEGIN") == std::string_view::npos) return fail(std::string(what) + ": not a PEM document");
  if (pem.find("ENCRYPTED") != std::string_view::npos)
    return fail(std::string(what) + ": encrypted PEM keys are not supported");
  EVP_PKEY* raw = nullptr;
  std::unique_ptr<OSSL_DECODER_CTX, DecoderCtxFree> dctx(OSSL_DECODER_CTX_new_for_pkey(
      &raw, "PEM", nullptr, nullptr, private_key ? EVP_PKEY_KEYPAIR : EVP_PKEY_PUBLIC_KEY, nullptr, nullptr));
  if (!dctx) return fail(openssl_error(std::string(what) + ": no PEM decoder"));
  OSSL_DECODER_CTX_set_passphrase_cb(dctx.get(), refuse_passphrase, nullptr);
  const unsigned char* data = bytes(pem);
  size_t len = pem.size();
  if (!OSSL_DECODER_from_data(dctx.get(), &data, &len) || raw == nullptr)
    return fail(openssl_error(std::string("cannot decode PEM ") + what));
  PkeyPtr key(raw);
  if (private_key) {
    // A public-only key decoded through a KEYPAIR selection must still be refused for signing.
    BIGNUM* priv = nullptr;
    bool has_private = false;
    if (EVP_PKEY_get_bn_param(key.get(), OSSL_PKEY_PARAM_RSA_D, &priv) ||
        EVP_PKEY_get_bn_param(key.get(), OSSL_PKEY_PARAM_PRIV_KEY, &priv))
      has_private = true;
    BN_clear_free(priv);
    ERR_clear_error();
    if (!has_private) return fail("PEM does not contain a private key");
  }
  ERR_clear_error();
  return PkeyPtr(std::move(key));
}

// Empty when `key` suits `alg`, otherwise the reason.
std::string check_key_for_alg(EVP_PKEY* key, std::string_view alg) {
  if (alg == "RS256") {
    if (!EVP_PKEY_is_a(key, "RSA"))
      return std::string("RS256 needs an RSA key, got ") + (EVP_PKEY_get0_type_name(key) ? EVP_PKEY_get0_type_name(key) : "?") + " key";
    if (EVP_PKEY_get_bits(key) < 2048) return "RS256 needs an RSA key of at least 2048 bits";
    return {};
  }
  if (alg == "ES256") {
    if (!EVP_PKEY_is_a(key, "EC"))
      return std::string("ES256 needs an EC P-256 key, got ") + (EVP_PKEY_get0_type_name(key) ? EVP_PKEY_get0_type_name(key) : "?") + " key";
    char group[64] = {0};
    size_t glen = 0;
    if (!EVP_PKEY_get_group_name(key, group, sizeof group, &glen)) {
      ERR_clear_error();
      return "ES256 needs an EC P-256 key, curve unknown";
    }
    std::string_view g(group, glen);
    if (g != "prime256v1" && g != "P-256" && g != "secp256r1")
      return "ES256 needs an EC P-256 key, got curve " + std::string(g);
    return {};
  }
  return "unsupported JWT alg \"" + std::string(alg) + "\" (RS256 and ES256 only)";
}

Result<std::string> digest_sign(EVP_PKEY* key, std::string_view input) {
  std::unique_ptr<EVP_MD_CTX, MdCtxFree> ctx(EVP_MD_CTX_new());
  if (!ctx) return fail(openssl_error("sign: out of memory"));
  if (EVP_DigestSignInit_ex(ctx.get(), nullptr, "SHA256", nullptr, nullptr, key, nullptr) != 1)
    return fail(openssl_error("sign: init failed"));
  size_t len = 0;
  if (EVP_DigestSign(ctx.get(), nullptr, &len, bytes(input), input.size()) != 1)
    return fail(openssl_error("sign: sizing failed"));
  std::string sig(len, '\0');
  if (EVP_DigestSign(ctx.get(), reinterpret_cast<unsigned char*>(sig.data()), &len, bytes(input), input.size()) != 1)
    return fail(openssl_error("sign: signing failed"));
  sig.resize(len);
  return std::string(std::move(sig));
}

// DER ECDSA-Sig-Value -> 64-byte R||S (RFC 7518 §3.4).
Result<std::string> der_to_raw_p256(std::string_view der) {
  const unsigned char* p = bytes(der);
  std::unique_ptr<ECDSA_SIG, EcdsaSigFree> sig(d2i_ECDSA_SIG(nullptr, &p, long(der.size())));
  if (!sig) return fail(openssl_error("ES256: cannot parse DER signature"));
  const BIGNUM* r = nullptr;
  const BIGNUM* s = nullptr;
  ECDSA_SIG_get0(sig.get(), &r, &s);
  std::string out(64, '\0');
  auto* o = reinterpret_cast<unsigned char*>(out.data());
  if (BN_bn2binpad(r, o, 32) != 32 || BN_bn2binpad(s, o + 32, 32) != 32)
    return fail(openssl_error("ES256: signature component too large"));
  return std::string(std::move(out));
}

// 64-byte R||S -> DER ECDSA-Sig-Value.
Result<std::string> raw_p256_to_der(std::string_view raw) {
  if (raw.size() != 64) return fail("ES256: signature must be 64 bytes, got " + std::to_string(raw.size()));
  std::unique_ptr<ECDSA_SIG, EcdsaSigFree> sig(ECDSA_SIG_new());
  BIGNUM* r = BN_bin2bn(bytes(raw), 32, nullptr);
  BIGNUM* s = BN_bin2bn(bytes(raw) + 32, 32, nullptr);
  if (!sig || !r || !s || ECDSA_SIG_set0(sig.get(), r, s) != 1) {
    BN_free(r);
    BN_free(s);
    return fail(openssl_error("ES256: cannot build signature"));
  }
  unsigned char* der = nullptr;
  int len = i2d_ECDSA_SIG(sig.get(), &der);
  if (len <= 0) return fail(openssl_error("ES256: cannot encode signature"));
  std::string out(reinterpret_cast<char*>(der), size_t(len));
  OPENSSL_free(der);
  return std::string(std::move(out));
}

Result<std::string> hmac(const char* digest, std::string_view key, std::string_view data) {
  ERR_clear_error();
  std::unique_ptr<EVP_MAC, MacFree> mac(EVP_MAC_fetch(nullptr, "HMAC", nullptr));
  if (!mac) return fail(openssl_error("HMAC unavailable"));
  std::unique_ptr<EVP_MAC_CTX, MacCtxFree> ctx(EVP_MAC_CTX_new(mac.get()));
  if (!ctx) return fail(openssl_error("HMAC: out of memory"));
  OSSL_PARAM params[] = {
      OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, const_cast<char*>(digest), 0),
      OSSL_PARAM_construct_end(),
  };
  static const unsigned char kEmpty[1] = {0};
  const unsigned char* k = key.empty() ? kEmpty : bytes(key);
  if (EVP_MAC_init(ctx.get(), k, key.size(), params) != 1)
    return fail(openssl_error(std::string("HMAC-") + digest + ": init failed"));
  if (!data.empty() && EVP_MAC_update(ctx.get(), bytes(data), data.size()) != 1)
    return fail(openssl_error(std::string("HMAC-") + digest + ": update failed"));
  std::array<unsigned char, EVP_MAX_MD_SIZE> out{};
  size_t len = 0;
  if (EVP_MAC_final(ctx.get(), out.data(), &len, out.size()) != 1)
    return fail(openssl_error(std::string("HMAC-") + digest + ": final failed"));
  return std::string(std::string(reinterpret_cast<char*>(out.data()), len));
}

Result<nlohmann::json> parse_object(std::string_view text, const char* what) {
  nlohmann::json j = nlohmann::json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return fail(std::string(what) + " is not valid JSON");
  if (!j.is_object()) return fail(std::string(what) + " is not a JSON object");
  return nlohmann::json(std::move(j));
}

}  // namespace

// ---- public API ---------------------------------------------------------------------------------------

std::string base64_encode(std::string_view in) { return encode_std(in); }

std::string base64url_encode(std::string_view in) {
  std::string out = encode_std(in);
  while (!out.empty() && out.back() == '=') out.pop_back();
  to_url_alphabet(out);
  return out;
}

Result<std::string> base64_decode(std::string_view text) {
  if (text.size() % 4 != 0) return fail("base64: length " + std::to_string(text.size()) + " is not a multiple of 4");
  size_t pad = 0;
  while (pad < text.size() && pad < 3 && text[text.size() - 1 - pad] == '=') ++pad;
  if (pad > 2) return fail("base64: too much padding");
  std::string_view body = text.substr(0, text.size() - pad);
  if (body.find('=') != std::string_view::npos) return fail("base64: '=' inside the data");
  if (pad > 0 && body.size() % 4 != 4 - pad) return fail("base64: wrong padding");
  return decode_body(body, "base64");
}

Result<std::string> base64url_decode(std::string_view text) {
  // Mapped to the §4 alphabet first, so a '+' or '/' in the input is refused as a character of neither.
  std::string body(text);
  for (char& c : body) {
    if (c == '+' || c == '/') c = '*';
    else if (c == '-') c = '+';
    else if (c == '_') c = '/';
  }
  return decode_body(body, "base64url");
}

std::string sha256(std::string_view text) {
  // OpenSSL 3 looks EVP_sha256() up in its provider tables on every EVP_Digest ("implicit fetch"); fetched once,
  // the digest is reused (OpenSSL 3 migration guide, "Fetching algorithms"). A third of a suppression lookup's
  // hashing went to that lookup. Never freed: it lives as long as the process.
  static EVP_MD* const kSha256 = EVP_MD_fetch(nullptr, "SHA256", nullptr);
  // One context per thread, initialised again for each digest: EVP_Digest allocates and frees one per call
  // (a message's payload at intake: 418 -> 382 ns, tools/bench intake_bench BM_Sha256Hex).
  thread_local const std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  std::string digest(EVP_MAX_MD_SIZE, '\0');
  unsigned int len = 0;
  // These fail only when OpenSSL cannot allocate; a zero-length result then fails every comparison.
  if (kSha256 == nullptr || ctx == nullptr || EVP_DigestInit_ex2(ctx.get(), kSha256, nullptr) != 1 ||
      EVP_DigestUpdate(ctx.get(), text.data(), text.size()) != 1 ||
      EVP_DigestFinal_ex(ctx.get(), reinterpret_cast<unsigned char*>(digest.data()), &len) != 1)
    len = 0;
  digest.resize(len);
  return digest;
}

std::string hex(std::string_view bytes) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out(bytes.size() * 2, '\0');
  for (size_t i = 0; i < bytes.size(); ++i) {
    const auto b = static_cast<unsigned char>(bytes[i]);
    out[2 * i] = kDigits[b >> 4];
    out[2 * i + 1] = kDigits[b & 15];
  }
  return out;
}

std::string sha256_hex(std::string_view text) { return hex(sha256(text)); }

Result<std::string> hmac_sha256(std::string_view key, std::string_view data) { return hmac("SHA256", key, data); }
Result<std::string> hmac_sha1(std::string_view key, std::string_view data) { return hmac("SHA1", key, data); }

bool constant_time_equal(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) {
    // Spend the same comparison on `a` against itself so the time depends on lengths only.
    volatile int sink = CRYPTO_memcmp(a.data(), a.data(), a.size());
    (void)sink;
    return false;
  }
  if (a.empty()) return true;
  return CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

Result<std::string> sign_jwt(std::string_view alg, std::string_view header_json_extra, std::string_view claims_json,
                             std::string_view pem_private_key) {
  using R = Result<std::string>;
  try {
    ERR_clear_error();
    if (alg != "RS256" && alg != "ES256")
      return fail("sign_jwt: unsupported alg \"" + std::string(alg) + "\" (RS256 and ES256 only)");
    nlohmann::json header = {{"alg", std::string(alg)}, {"typ", "JWT"}};
    if (!header_json_extra.empty()) {
      auto extra = parse_object(header_json_extra, "sign_jwt: header extra");
      if (!extra) return extra.error();
      for (auto& [k, v] : extra.value().items()) {
        if (k == "alg") {
          if (v != std::string(alg)) return fail("sign_jwt: header extra may not change alg");
          continue;
        }
        header[k] = v;
      }
    }
    auto claims = parse_object(claims_json, "sign_jwt: claims");
    if (!claims) return claims.error();

    auto key = load_pem(pem_private_key, /*private_key=*/true);
    if (!key) return fail("sign_jwt: " + key.error().message);
    if (auto why = check_key_for_alg(key.value().get(), alg); !why.empty()) return fail("sign_jwt: " + why);

    std::string input = base64url_encode(header.dump()) + "." + base64url_encode(claims.value().dump());
    auto sig = digest_sign(key.value().get(), input);
    if (!sig) return fail("sign_jwt: " + sig.error().message);
    std::string signature = std::move(sig.value());
    if (alg == "ES256") {
      auto raw = der_to_raw_p256(signature);
      if (!raw) return fail("sign_jwt: " + raw.error().message);
      signature = std::move(raw.value());
    }
    return R(input + "." + base64url_encode(signature));
  } catch (const std::exception& e) {
    ERR_clear_error();
    return fail(std::string("sign_jwt: ") + e.what());
  }
}

Result<VerifiedJwt> verify_jwt(std::string_view compact, std::string_view pem_public_key) {
  using R = Result<VerifiedJwt>;
  try {
    ERR_clear_error();
    size_t d1 = compact.find('.');
    size_t d2 = d1 == std::string_view::npos ? d1 : compact.find('.', d1 + 1);
    if (d1 == std::string_view::npos || d2 == std::string_view::npos ||
        compact.find('.', d2 + 1) != std::string_view::npos)
      return fail("verify_jwt: not a compact JWS (need exactly three dot-separated parts)");
    std::string_view h64 = compact.substr(0, d1);
    std::string_view p64 = compact.substr(d1 + 1, d2 - d1 - 1);
    std::string_view s64 = compact.substr(d2 + 1);

    auto header_bytes = base64url_decode(h64);
    if (!header_bytes) return fail("verify_jwt: header: " + header_bytes.error().message);
    auto header = parse_object(header_bytes.value(), "verify_jwt: header");
    if (!header) return header.error();
    auto alg_it = header.value().find("alg");
    if (alg_it == header.value().end() || !alg_it->is_string()) return fail("verify_jwt: header has no alg");
    std::string alg = alg_it->get<std::string>();
    if (alg == "none" || alg == "None" || alg == "NONE") return fail("verify_jwt: alg none refused");
    if (alg != "RS256" && alg != "ES256")
      return fail("verify_jwt: unsupported alg \"" + alg + "\" (RS256 and ES256 only)");
    if (header.value().contains("crit")) return fail("verify_jwt: critical header extensions not supported");
    if (s64.empty()) return fail("verify_jwt: token is unsigned");

    auto sig = base64url_decode(s64);
    if (!sig) return fail("verify_jwt: signature: " + sig.error().message);
    auto key = load_pem(pem_public_key, /*private_key=*/false);
    if (!key) return fail("verify_jwt: " + key.error().message);
    if (auto why = check_key_for_alg(key.value().get(), alg); !why.empty()) return fail("verify_jwt: " + why);

    std::string signature = std::move(sig.value());
    if (alg == "ES256") {
      auto der = raw_p256_to_der(signature);
      if (!der) return fail("verify_jwt: " + der.error().message);
      signature = std::move(der.value());
    }
    std::string_view input = compact.substr(0, d2);
    std::unique_ptr<EVP_MD_CTX, MdCtxFree> ctx(EVP_MD_CTX_new());
    if (!ctx ||
        EVP_DigestVerifyInit_ex(ctx.get(), nullptr, "SHA256", nullptr, nullptr, key.value().get(), nullptr) != 1)
      return fail(openssl_error("verify_jwt: verify init failed"));
    int rc = EVP_DigestVerify(ctx.get(), bytes(signature), signature.size(), bytes(input), input.size());
    ERR_clear_error();
    if (rc != 1) return fail("verify_jwt: signature does not verify");

    auto payload_bytes = base64url_decode(p64);
    if (!payload_bytes) return fail("verify_jwt: payload: " + payload_bytes.error().message);
    auto claims = parse_object(payload_bytes.value(), "verify_jwt: claims");
    if (!claims) return claims.error();
    return R(VerifiedJwt{std::move(alg), std::move(header.value()), std::move(claims.value())});
  } catch (const std::exception& e) {
    ERR_clear_error();
    return fail(std::string("verify_jwt: ") + e.what());
  }
}

// ---- TokenCache ---------------------------------------------------------------------------------------

std::shared_ptr<TokenCache::Entry> TokenCache::entry_for(const std::string& key) {
  std::lock_guard lock(mu_);
  auto& slot = entries_[key];
  if (!slot) slot = std::make_shared<Entry>();
  return slot;
}

Result<std::string> TokenCache::get(const std::string& key, int64_t now_ms, int64_t refresh_before_ms,
                                    const MintFn& mint) {
  using R = Result<std::string>;
  try {
    auto entry = entry_for(key);
    std::lock_guard lock(entry->mu);
    if (entry->has_token && now_ms < entry->token.expires_at_ms - refresh_before_ms) return R(entry->token.token);
    Result<MintedToken> minted = fail("no mint function");
    if (mint) {
      try {
        minted = mint();
      } catch (const std::exception& e) {
        minted = fail(std::string("mint threw: ") + e.what());
      } catch (...) {
        minted = fail("mint threw");
      }
    }
    if (minted.ok() && minted.value().token.empty()) minted = fail("mint returned an empty token");
    if (!minted) {
      if (entry->has_token && now_ms < entry->token.expires_at_ms) return R(entry->token.token);
      return Error{minted.error().code, "token cache \"" + key + "\": " + minted.error().message};
    }
    entry->token = std::move(minted.value());
    entry->has_token = true;
    {
      std::lock_guard count_lock(mu_);
      ++mints_;
    }
    return R(entry->token.token);
  } catch (const std::exception& e) {
    return fail(std::string("token cache: ") + e.what());
  }
}

void TokenCache::invalidate(const std::string& key, std::string_view only_if_token) {
  std::shared_ptr<Entry> entry;
  {
    std::lock_guard lock(mu_);
    auto it = entries_.find(key);
    if (it == entries_.end()) return;
    entry = it->second;
  }
  std::lock_guard lock(entry->mu);
  if (!entry->has_token) return;
  if (!only_if_token.empty() && entry->token.token != only_if_token) return;
  entry->has_token = false;
  entry->token = {};
}

uint64_t TokenCache::mint_count() const {
  std::lock_guard lock(mu_);
  return mints_;
}

}  // namespace tayori::crypto
