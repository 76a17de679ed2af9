#include <gtest/gtest.h>

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include <atomic>
#include <latch>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "crypto/crypto.hpp"

namespace tayori::crypto {
namespace {

// ---- base64 -------------------------------------------------------------------------------------------

TEST(Base64, Rfc4648Section10Vectors) {
  const std::pair<const char*, const char*> vectors[] = {{"", ""},         {"f", "Zg=="},         {"fo", "Zm8="},
                                                         {"foo", "Zm9v"}, {"foob", "Zm9vYg=="}, {"fooba", "Zm9vYmE="},
                                                         {"foobar", "Zm9vYmFy"}};
  for (auto [plain, enc] : vectors) {
    EXPECT_EQ(base64_encode(plain), enc) << plain;
    auto dec = base64_decode(enc);
    ASSERT_TRUE(dec.ok()) << enc << ": " << dec.error().message;
    EXPECT_EQ(dec.value(), plain);
    // base64url of the same vectors is the same text without padding.
    std::string unpadded(enc);
    while (!unpadded.empty() && unpadded.back() == '=') unpadded.pop_back();
    EXPECT_EQ(base64url_encode(plain), unpadded);
    auto udec = base64url_decode(unpadded);
    ASSERT_TRUE(udec.ok()) << udec.error().message;
    EXPECT_EQ(udec.value(), plain);
  }
}

TEST(Base64, UrlAlphabetReplacesPlusAndSlash) {
  const std::string b1("\xfb\xff\xbf", 3);
  EXPECT_EQ(base64_encode(b1), "+/+/");
  EXPECT_EQ(base64url_encode(b1), "-_-_");
  const std::string b2("\xfb\xff", 2);
  EXPECT_EQ(base64_encode(b2), "+/8=");
  EXPECT_EQ(base64url_encode(b2), "-_8");
  EXPECT_EQ(base64url_decode("-_-_").value(), b1);
  EXPECT_EQ(base64url_decode("-_8").value(), b2);
  EXPECT_EQ(base64_decode("+/8=").value(), b2);
  // Each alphabet refuses the other's characters.
  EXPECT_FALSE(base64url_decode("+/+/").ok());
  EXPECT_FALSE(base64_decode("-_-_").ok());
}

TEST(Base64, AllByteValuesRoundTrip) {
  std::string all;
  for (int i = 0; i < 256; ++i) all += char(i);
  for (size_t n = 0; n <= all.size(); n += 37) {
    std::string part = all.substr(0, n);
    EXPECT_EQ(base64_decode(base64_encode(part)).value(), part);
    EXPECT_EQ(base64url_decode(base64url_encode(part)).value(), part);
  }
}

TEST(Base64, StrictDecodeRefusesMalformedInput) {
  for (const char* bad : {"Zg", "Zg=", "Zg===", "Z===", "====", "Zm9v\n", " Zm9v", "Zm9v YmFy", "Zm=v", "Zh==",
                          "Zm9=", "Zm9vY*==", "Z"}) {
    auto r = base64_decode(bad);
    EXPECT_FALSE(r.ok()) << bad;
    EXPECT_NE(r.error().message.find("base64"), std::string::npos) << r.error().message;
  }
  for (const char* bad : {"Zg==", "Z", "Zh", "Zm9", "Zm9v+A", "a.b"}) EXPECT_FALSE(base64url_decode(bad).ok()) << bad;
}

TEST(Base64, EncodesAcrossOpenSslCallChunks) {
  // Longer than one EVP_EncodeBlock call (3 MiB), with a remainder that needs padding.
  std::string big((size_t(3) << 20) + 4, '\0');
  for (size_t i = 0; i < big.size(); ++i) big[i] = char(i * 131 % 251);
  std::string text = base64_encode(big);
  EXPECT_EQ(text.size(), (big.size() + 2) / 3 * 4);
  EXPECT_EQ(text.substr(text.size() - 2), "==");
  EXPECT_EQ(base64_decode(text).value(), big);
  EXPECT_EQ(base64url_decode(base64url_encode(big)).value(), big);
}

TEST(Base64, DecodedPaddingAddsNoBytes) {
  // EVP_DecodeBlock writes a zero byte for each '=': the result must not keep them.
  EXPECT_EQ(base64_decode("AA==").value(), std::string(1, '\0'));
  EXPECT_EQ(base64_decode("AAA=").value(), std::string(2, '\0'));
  EXPECT_EQ(base64url_decode("AA").value(), std::string(1, '\0'));
  EXPECT_EQ(base64url_decode("AAA").value(), std::string(2, '\0'));
  EXPECT_EQ(base64_decode("").value(), "");
  EXPECT_EQ(base64url_decode("").value(), "");
}

// ---- digests ------------------------------------------------------------------------------------------

TEST(Sha256, KnownVectors) {
  // FIPS 180-2 appendix B.1 and B.2, and the empty string.
  EXPECT_EQ(sha256_hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(sha256_hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(sha256_hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  // Embedded NUL bytes count (string_view, not C string).
  EXPECT_NE(sha256_hex(std::string_view("a\0b", 3)), sha256_hex("a"));
}

TEST(Sha256, RawDigestIsThirtyTwoBytesOfTheHex) {
  std::string raw = sha256("abc");
  EXPECT_EQ(raw.size(), 32u);
  EXPECT_EQ(hex(raw), sha256_hex("abc"));
  EXPECT_EQ(hex(std::string("\x00\x0f\xf0\xff", 4)), "000ff0ff");
  EXPECT_EQ(hex(""), "");
}

// ---- HMAC ---------------------------------------------------------------------------------------------

TEST(Hmac, Rfc4231Sha256Cases) {
  // Case 1
  auto c1 = hmac_sha256(std::string(20, '\x0b'), "Hi There");
  ASSERT_TRUE(c1.ok()) << c1.error().message;
  EXPECT_EQ(hex(c1.value()), "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");
  // Case 2
  EXPECT_EQ(hex(hmac_sha256("Jefe", "what do ya want for nothing?").value()),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
  // Case 4
  std::string key4;
  for (int i = 1; i <= 25; ++i) key4 += char(i);
  EXPECT_EQ(hex(hmac_sha256(key4, std::string(50, '\xcd')).value()),
            "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b");
}

TEST(Hmac, Rfc2202Sha1Cases) {
  auto c1 = hmac_sha1(std::string(20, '\x0b'), "Hi There");
  ASSERT_TRUE(c1.ok()) << c1.error().message;
  EXPECT_EQ(c1.value().size(), 20u);
  EXPECT_EQ(hex(c1.value()), "b617318655057264e28bc0b6fb378c8ef146be00");
  EXPECT_EQ(hex(hmac_sha1("Jefe", "what do ya want for nothing?").value()), "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79");
}

TEST(Hmac, EmptyKeyAndDataAreAllowed) {
  auto r = hmac_sha256("", "");
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(hex(r.value()), "b613679a0814d9ec772f95d778c35fc5ff1697c493715653c6c712144292c5ad");
}

TEST(Hmac, LineStyleSignatureIsBase64OfTheMac) {
  // LINE: x-line-signature = base64(HMAC-SHA256(channel secret, body)); compare in constant time.
  std::string body = R"({"events":[]})";
  std::string sig = base64_encode(hmac_sha256("secret", body).value());
  EXPECT_EQ(sig.size(), 44u);
  EXPECT_TRUE(constant_time_equal(sig, base64_encode(hmac_sha256("secret", body).value())));
  EXPECT_FALSE(constant_time_equal(sig, base64_encode(hmac_sha256("secret", body + " ").value())));
}

TEST(Crypto, ConstantTimeEqual) {
  EXPECT_TRUE(constant_time_equal("", ""));
  EXPECT_TRUE(constant_time_equal("abc", "abc"));
  EXPECT_TRUE(constant_time_equal(std::string("a\0b", 3), std::string("a\0b", 3)));
  EXPECT_FALSE(constant_time_equal(std::string("a\0b", 3), std::string("a\0c", 3)));
  EXPECT_FALSE(constant_time_equal("abc", "abd"));
  EXPECT_FALSE(constant_time_equal("abc", "ab"));
  EXPECT_FALSE(constant_time_equal("", "a"));
  EXPECT_FALSE(constant_time_equal("abc", "abcd"));
}

// ---- JWT ----------------------------------------------------------------------------------------------

struct PkeyDel {
  void operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); }
};
using Pkey = std::unique_ptr<EVP_PKEY, PkeyDel>;

std::string bio_text(BIO* bio) {
  char* data = nullptr;
  long len = BIO_get_mem_data(bio, &data);
  return std::string(data, size_t(len));
}

enum class PemForm { kPkcs8, kTraditional, kPublic };

std::string to_pem(EVP_PKEY* key, PemForm form) {
  std::unique_ptr<BIO, decltype(&BIO_free)> bio(BIO_new(BIO_s_mem()), &BIO_free);
  int ok = 0;
  switch (form) {
    case PemForm::kPkcs8: ok = PEM_write_bio_PrivateKey(bio.get(), key, nullptr, nullptr, 0, nullptr, nullptr); break;
    case PemForm::kTraditional:
      ok = PEM_write_bio_PrivateKey_traditional(bio.get(), key, nullptr, nullptr, 0, nullptr, nullptr);
      break;
    case PemForm::kPublic: ok = PEM_write_bio_PUBKEY(bio.get(), key); break;
  }
  EXPECT_EQ(ok, 1);
  return bio_text(bio.get());
}

struct TestKeys {
  Pkey rsa, ec, ec384;
  std::string rsa_pkcs8, rsa_trad, rsa_pub, ec_pkcs8, ec_trad, ec_pub, ec384_pkcs8, ec384_pub;
};

const TestKeys& keys() {
  static const TestKeys* k = [] {
    auto* t = new TestKeys;
    t->rsa.reset(EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", size_t(2048)));
    t->ec.reset(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256"));
    t->ec384.reset(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-384"));
    if (!t->rsa || !t->ec || !t->ec384) return t;
    t->rsa_pkcs8 = to_pem(t->rsa.get(), PemForm::kPkcs8);
    t->rsa_trad = to_pem(t->rsa.get(), PemForm::kTraditional);
    t->rsa_pub = to_pem(t->rsa.get(), PemForm::kPublic);
    t->ec_pkcs8 = to_pem(t->ec.get(), PemForm::kPkcs8);
    t->ec_trad = to_pem(t->ec.get(), PemForm::kTraditional);
    t->ec_pub = to_pem(t->ec.get(), PemForm::kPublic);
    t->ec384_pkcs8 = to_pem(t->ec384.get(), PemForm::kPkcs8);
    t->ec384_pub = to_pem(t->ec384.get(), PemForm::kPublic);
    return t;
  }();
  return *k;
}

struct Parts {
  std::string header, payload, signature, signing_input;
};

Parts split(const std::string& jwt) {
  size_t d1 = jwt.find('.'), d2 = jwt.find('.', d1 + 1);
  Parts p;
  p.header = base64url_decode(jwt.substr(0, d1)).value();
  p.payload = base64url_decode(jwt.substr(d1 + 1, d2 - d1 - 1)).value();
  p.signature = base64url_decode(jwt.substr(d2 + 1)).value();
  p.signing_input = jwt.substr(0, d2);
  return p;
}

// Independent check straight through OpenSSL, not through verify_jwt.
bool openssl_verify(EVP_PKEY* key, const std::string& der_or_pkcs1_sig, const std::string& input) {
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), &EVP_MD_CTX_free);
  if (EVP_DigestVerifyInit(ctx.get(), nullptr, EVP_sha256(), nullptr, key) != 1) return false;
  return EVP_DigestVerify(ctx.get(), reinterpret_cast<const unsigned char*>(der_or_pkcs1_sig.data()),
                          der_or_pkcs1_sig.size(), reinterpret_cast<const unsigned char*>(input.data()),
                          input.size()) == 1;
}

std::string raw_to_der(const std::string& raw) {
  ECDSA_SIG* sig = ECDSA_SIG_new();
  auto* p = reinterpret_cast<const unsigned char*>(raw.data());
  ECDSA_SIG_set0(sig, BN_bin2bn(p, 32, nullptr), BN_bin2bn(p + 32, 32, nullptr));
  unsigned char* der = nullptr;
  int len = i2d_ECDSA_SIG(sig, &der);
  std::string out(reinterpret_cast<char*>(der), size_t(len));
  OPENSSL_free(der);
  ECDSA_SIG_free(sig);
  return out;
}

std::string flip_char(std::string s, size_t pos) {
  s[pos] = s[pos] == 'A' ? 'B' : 'A';
  return s;
}

TEST(Jwt, KeysGenerated) {
  ASSERT_TRUE(keys().rsa && keys().ec && keys().ec384);
  EXPECT_NE(keys().rsa_pkcs8.find("BEGIN PRIVATE KEY"), std::string::npos);
  EXPECT_NE(keys().rsa_trad.find("BEGIN RSA PRIVATE KEY"), std::string::npos);
  EXPECT_NE(keys().ec_trad.find("BEGIN EC PRIVATE KEY"), std::string::npos);
  EXPECT_NE(keys().ec_pub.find("BEGIN PUBLIC KEY"), std::string::npos);
}

TEST(Jwt, Rs256SignsAndVerifiesLikeAnFcmGrant) {
  const auto& k = keys();
  ASSERT_TRUE(k.rsa);
  nlohmann::json claims = {{"iss", "svc@project.iam.gserviceaccount.com"},
                           {"scope", "https://www.googleapis.com/auth/firebase.messaging"},
                           {"aud", "https://oauth2.googleapis.com/token"},
                           {"iat", 1795474800},
                           {"exp", 1795478400}};
  auto jwt = sign_jwt("RS256", R"({"kid":"key-1"})", claims.dump(), k.rsa_pkcs8);
  ASSERT_TRUE(jwt.ok()) << jwt.error().message;
  EXPECT_EQ(std::count(jwt.value().begin(), jwt.value().end(), '.'), 2);
  EXPECT_EQ(jwt.value().find_first_of("+/="), std::string::npos);

  Parts p = split(jwt.value());
  auto header = nlohmann::json::parse(p.header);
  EXPECT_EQ(header, (nlohmann::json{{"alg", "RS256"}, {"typ", "JWT"}, {"kid", "key-1"}}));
  EXPECT_EQ(nlohmann::json::parse(p.payload), claims);
  EXPECT_EQ(p.signature.size(), 256u);
  EXPECT_TRUE(openssl_verify(k.rsa.get(), p.signature, p.signing_input));

  auto v = verify_jwt(jwt.value(), k.rsa_pub);
  ASSERT_TRUE(v.ok()) << v.error().message;
  EXPECT_EQ(v.value().alg, "RS256");
  EXPECT_EQ(v.value().claims, claims);
  EXPECT_EQ(v.value().header["kid"], "key-1");

  // RSASSA-PKCS1-v1_5 is deterministic.
  EXPECT_EQ(sign_jwt("RS256", R"({"kid":"key-1"})", claims.dump(), k.rsa_pkcs8).value(), jwt.value());
  // The traditional PEM form signs identically.
  EXPECT_EQ(sign_jwt("RS256", R"({"kid":"key-1"})", claims.dump(), k.rsa_trad).value(), jwt.value());
}

TEST(Jwt, Es256SignsRawRsAndVerifiesLikeAnApnsToken) {
  const auto& k = keys();
  ASSERT_TRUE(k.ec);
  for (const std::string* pem : {&k.ec_pkcs8, &k.ec_trad}) {
    nlohmann::json claims = {{"iss", "TEAM123456"}, {"iat", 1795474800}};
    auto jwt = sign_jwt("ES256", R"({"kid":"ABC123DEFG"})", claims.dump(), *pem);
    ASSERT_TRUE(jwt.ok()) << jwt.error().message;
    Parts p = split(jwt.value());
    EXPECT_EQ(nlohmann::json::parse(p.header), (nlohmann::json{{"alg", "ES256"}, {"typ", "JWT"}, {"kid", "ABC123DEFG"}}));
    EXPECT_EQ(nlohmann::json::parse(p.payload), claims);
    ASSERT_EQ(p.signature.size(), 64u);  // R||S, not DER
    EXPECT_TRUE(openssl_verify(k.ec.get(), raw_to_der(p.signature), p.signing_input));
    // DER bytes verbatim must not verify as the raw form.
    EXPECT_FALSE(openssl_verify(k.ec.get(), p.signature, p.signing_input));

    auto v = verify_jwt(jwt.value(), k.ec_pub);
    ASSERT_TRUE(v.ok()) << v.error().message;
    EXPECT_EQ(v.value().alg, "ES256");
    EXPECT_EQ(v.value().claims["iss"], "TEAM123456");
  }
}

TEST(Jwt, Es256ManySignaturesAllVerify) {
  // Exercises R/S with leading zero bytes (padding to 32 bytes each) over enough samples.
  const auto& k = keys();
  ASSERT_TRUE(k.ec);
  for (int i = 0; i < 200; ++i) {
    auto jwt = sign_jwt("ES256", "", nlohmann::json{{"i", i}}.dump(), k.ec_pkcs8);
    ASSERT_TRUE(jwt.ok()) << jwt.error().message;
    ASSERT_EQ(split(jwt.value()).signature.size(), 64u);
    ASSERT_TRUE(verify_jwt(jwt.value(), k.ec_pub).ok()) << i;
  }
}

TEST(Jwt, TamperedTokensFailVerification) {
  const auto& k = keys();
  ASSERT_TRUE(k.rsa && k.ec);
  struct Case {
    const char* alg;
    const std::string& priv;
    const std::string& pub;
  };
  for (const Case& c : {Case{"RS256", k.rsa_pkcs8, k.rsa_pub}, Case{"ES256", k.ec_pkcs8, k.ec_pub}}) {
    auto jwt = sign_jwt(c.alg, "", R"({"sub":"alice","admin":false})", c.priv);
    ASSERT_TRUE(jwt.ok()) << jwt.error().message;
    const std::string& t = jwt.value();
    size_t d1 = t.find('.'), d2 = t.rfind('.');
    // Swap the payload for a forged one.
    std::string forged = t.substr(0, d1 + 1) + base64url_encode(R"({"sub":"alice","admin":true})") + t.substr(d2);
    auto r1 = verify_jwt(forged, c.pub);
    EXPECT_FALSE(r1.ok()) << c.alg;
    EXPECT_NE(r1.error().message.find("signature does not verify"), std::string::npos) << r1.error().message;
    // Flip one signature character (in the middle, so the base64url stays canonical).
    EXPECT_FALSE(verify_jwt(flip_char(t, d2 + 10), c.pub).ok()) << c.alg;
    // Flip a payload character.
    EXPECT_FALSE(verify_jwt(flip_char(t, d1 + 3), c.pub).ok()) << c.alg;
    // Truncated / missing signature.
    EXPECT_FALSE(verify_jwt(t.substr(0, d2 + 1), c.pub).ok());
    EXPECT_FALSE(verify_jwt(t.substr(0, t.size() - 4), c.pub).ok());
    EXPECT_FALSE(verify_jwt(t.substr(0, d2), c.pub).ok());
    EXPECT_FALSE(verify_jwt(t + ".x", c.pub).ok());
    // The wrong key of the right type.
    Pkey other(c.alg == std::string("RS256") ? EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", size_t(2048))
                                             : EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256"));
    ASSERT_TRUE(other);
    EXPECT_FALSE(verify_jwt(t, to_pem(other.get(), PemForm::kPublic)).ok());
    // Untouched, it still verifies.
    EXPECT_TRUE(verify_jwt(t, c.pub).ok());
  }
}

TEST(Jwt, AlgNoneIsRefused) {
  const auto& k = keys();
  std::string payload = base64url_encode(R"({"sub":"alice"})");
  for (const char* h : {R"({"alg":"none","typ":"JWT"})", R"({"alg":"NONE"})", R"({"alg":"HS256"})", R"({"typ":"JWT"})"}) {
    std::string unsigned_token = base64url_encode(h) + "." + payload + ".";
    auto r = verify_jwt(unsigned_token, k.rsa_pub);
    EXPECT_FALSE(r.ok()) << h;
    auto r2 = verify_jwt(base64url_encode(h) + "." + payload + "." + base64url_encode("sig"), k.ec_pub);
    EXPECT_FALSE(r2.ok()) << h;
  }
  auto none = verify_jwt(base64url_encode(R"({"alg":"none"})") + "." + payload + ".", k.rsa_pub);
  EXPECT_NE(none.error().message.find("alg none refused"), std::string::npos) << none.error().message;
  EXPECT_FALSE(sign_jwt("none", "", "{}", k.rsa_pkcs8).ok());
  EXPECT_FALSE(sign_jwt("HS256", "", "{}", k.rsa_pkcs8).ok());
}

TEST(Jwt, WrongKeyTypeIsRefusedWithAMessage) {
  const auto& k = keys();
  ASSERT_TRUE(k.rsa && k.ec && k.ec384);
  auto es_with_rsa = sign_jwt("ES256", "", "{}", k.rsa_pkcs8);
  ASSERT_FALSE(es_with_rsa.ok());
  EXPECT_NE(es_with_rsa.error().message.find("ES256 needs an EC P-256 key"), std::string::npos)
      << es_with_rsa.error().message;
  auto rs_with_ec = sign_jwt("RS256", "", "{}", k.ec_pkcs8);
  ASSERT_FALSE(rs_with_ec.ok());
  EXPECT_NE(rs_with_ec.error().message.find("RS256 needs an RSA key"), std::string::npos) << rs_with_ec.error().message;
  auto es_with_p384 = sign_jwt("ES256", "", "{}", k.ec384_pkcs8);
  ASSERT_FALSE(es_with_p384.ok());
  EXPECT_NE(es_with_p384.error().message.find("curve"), std::string::npos) << es_with_p384.error().message;

  // Verification: a token's alg must match the key (no RS256/ES256 confusion).
  auto rs = sign_jwt("RS256", "", "{}", k.rsa_pkcs8);
  auto es = sign_jwt("ES256", "", "{}", k.ec_pkcs8);
  ASSERT_TRUE(rs.ok() && es.ok());
  auto v1 = verify_jwt(rs.value(), k.ec_pub);
  EXPECT_FALSE(v1.ok());
  EXPECT_NE(v1.error().message.find("RS256 needs an RSA key"), std::string::npos) << v1.error().message;
  auto v2 = verify_jwt(es.value(), k.rsa_pub);
  EXPECT_FALSE(v2.ok());
  EXPECT_NE(v2.error().message.find("ES256 needs an EC P-256 key"), std::string::npos) << v2.error().message;
  EXPECT_FALSE(verify_jwt(es.value(), k.ec384_pub).ok());
}

TEST(Jwt, BadInputsAreReportedNotThrown) {
  const auto& k = keys();
  EXPECT_NE(sign_jwt("RS256", "", "{}", "not a pem").error().message.find("private key"), std::string::npos);
  EXPECT_FALSE(sign_jwt("RS256", "", "{}", "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n").ok());
  EXPECT_NE(sign_jwt("RS256", "", "[1,2]", k.rsa_pkcs8).error().message.find("claims"), std::string::npos);
  EXPECT_NE(sign_jwt("RS256", "", "{oops", k.rsa_pkcs8).error().message.find("claims"), std::string::npos);
  EXPECT_NE(sign_jwt("RS256", "[]", "{}", k.rsa_pkcs8).error().message.find("header"), std::string::npos);
  EXPECT_FALSE(sign_jwt("RS256", R"({"alg":"none"})", "{}", k.rsa_pkcs8).ok());
  // A public key cannot sign.
  EXPECT_FALSE(sign_jwt("RS256", "", "{}", k.rsa_pub).ok());
  EXPECT_FALSE(sign_jwt("ES256", "", "{}", k.ec_pub).ok());
  // Garbage tokens.
  for (const char* bad : {"", ".", "..", "a.b.c", "a.b", "!!.??.**"}) EXPECT_FALSE(verify_jwt(bad, k.rsa_pub).ok()) << bad;
  auto good = sign_jwt("RS256", "", "{}", k.rsa_pkcs8);
  EXPECT_FALSE(verify_jwt(good.value(), "garbage").ok());
  // An encrypted private key is refused rather than prompting for a passphrase.
  std::unique_ptr<BIO, decltype(&BIO_free)> bio(BIO_new(BIO_s_mem()), &BIO_free);
  ASSERT_EQ(PEM_write_bio_PKCS8PrivateKey(bio.get(), k.ec.get(), EVP_aes_128_cbc(), nullptr, 0, nullptr,
                                          const_cast<char*>("pw")),
            1);
  auto enc = sign_jwt("ES256", "", "{}", bio_text(bio.get()));
  EXPECT_FALSE(enc.ok());
  EXPECT_NE(enc.error().message.find("encrypted"), std::string::npos) << enc.error().message;
}

// ---- TokenCache ---------------------------------------------------------------------------------------

TEST(TokenCache, ReMintsOnlyAfterTheRefreshPoint) {
  TokenCache cache;
  int mints = 0;
  int64_t now = 1'000'000;
  auto mint = [&] {
    ++mints;
    return MintedToken{"tok-" + std::to_string(mints), now + 3'600'000};
  };
  const int64_t refresh = 600'000;  // re-mint 10 minutes before expiry
  EXPECT_EQ(cache.get("apns", now, refresh, mint).value(), "tok-1");
  int64_t minted_at = now;
  for (int64_t t : {minted_at + 1, minted_at + 1'200'000, minted_at + 2'999'999}) {
    now = t;
    EXPECT_EQ(cache.get("apns", now, refresh, mint).value(), "tok-1") << t;
  }
  EXPECT_EQ(mints, 1);
  now = minted_at + 3'000'000;  // the refresh point
  EXPECT_EQ(cache.get("apns", now, refresh, mint).value(), "tok-2");
  EXPECT_EQ(cache.get("apns", now + 10, refresh, mint).value(), "tok-2");
  EXPECT_EQ(mints, 2);
  EXPECT_EQ(cache.mint_count(), 2u);
  // Another key is independent.
  EXPECT_EQ(cache.get("fcm", now, refresh, mint).value(), "tok-3");
  EXPECT_EQ(cache.get("apns", now, refresh, mint).value(), "tok-2");
}

TEST(TokenCache, InvalidateForcesAReMintOnceForAStaleToken) {
  TokenCache cache;
  int mints = 0;
  auto mint = [&] {
    ++mints;
    return MintedToken{"tok-" + std::to_string(mints), 10'000'000};
  };
  EXPECT_EQ(cache.get("k", 0, 0, mint).value(), "tok-1");
  cache.invalidate("k", "tok-1");
  EXPECT_EQ(cache.get("k", 0, 0, mint).value(), "tok-2");
  cache.invalidate("k", "tok-1");  // a late rejection of the old token changes nothing
  EXPECT_EQ(cache.get("k", 0, 0, mint).value(), "tok-2");
  cache.invalidate("k");
  EXPECT_EQ(cache.get("k", 0, 0, mint).value(), "tok-3");
  cache.invalidate("unknown");
  EXPECT_EQ(mints, 3);
}

TEST(TokenCache, MintFailuresAreErrorsButAnUnexpiredTokenIsKept) {
  TokenCache cache;
  bool fail = false;
  auto mint = [&]() -> Result<MintedToken> {
    if (fail) return Error{ErrorCode::invalid, "key file unreadable"};
    return MintedToken{"tok", 1000};
  };
  auto first = cache.get("k", 0, 100, mint);
  ASSERT_TRUE(first.ok());
  fail = true;
  // Inside the refresh window but not expired: the old token still serves.
  EXPECT_EQ(cache.get("k", 950, 100, mint).value(), "tok");
  // Expired: the mint error surfaces.
  auto r = cache.get("k", 1000, 100, mint);
  EXPECT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("key file unreadable"), std::string::npos) << r.error().message;
  // A throwing mint is an error, not an exception.
  auto thrower = []() -> Result<MintedToken> { throw std::runtime_error("boom"); };
  auto t = cache.get("other", 0, 0, thrower);
  EXPECT_FALSE(t.ok());
  EXPECT_NE(t.error().message.find("boom"), std::string::npos);
  EXPECT_FALSE(cache.get("none", 0, 0, TokenCache::MintFn{}).ok());
}

TEST(TokenCache, ConcurrentGetsMintOnce) {
  // A slow network mint, without a clock: the first mint does not return until every thread is on its way
  // into get(), so the others arrive while it is still minting. Each must wait for that token, not mint its
  // own: one mint in all, and never two at once.
  constexpr int kThreads = 16;
  TokenCache cache;
  std::atomic<int> mints{0}, minting{0}, overlapping{0};
  std::latch calling(kThreads);  // counts threads that are about to call get()
  auto mint = [&] {
    ++mints;
    if (++minting > 1) ++overlapping;
    calling.wait();  // every thread has counted itself before it calls get(): no deadlock
    --minting;
    return MintedToken{"shared", 10'000'000};
  };
  std::vector<std::thread> threads;
  std::vector<std::string> got(kThreads);
  for (int i = 0; i < kThreads; ++i)
    threads.emplace_back([&, i] {
      calling.count_down();
      got[i] = cache.get("fcm", 5'000, 60'000, mint).value();
    });
  for (auto& t : threads) t.join();
  EXPECT_EQ(mints.load(), 1);
  EXPECT_EQ(overlapping.load(), 0);
  for (const auto& g : got) EXPECT_EQ(g, "shared");
}

TEST(TokenCache, CachesRealSignedApnsTokens) {
  const auto& k = keys();
  ASSERT_TRUE(k.ec);
  TokenCache cache;
  int64_t now_ms = 1'795'474'800'000;
  auto mint = [&]() -> Result<MintedToken> {
    auto jwt = sign_jwt("ES256", R"({"kid":"ABC123DEFG"})",
                        nlohmann::json{{"iss", "TEAM123456"}, {"iat", now_ms / 1000}}.dump(), k.ec_pkcs8);
    if (!jwt) return jwt.error();
    return MintedToken{jwt.value(), now_ms + 60 * 60'000};
  };
  auto a = cache.get("apns:TEAM123456:ABC123DEFG", now_ms, 20 * 60'000, mint);
  ASSERT_TRUE(a.ok()) << a.error().message;
  now_ms += 39 * 60'000;
  EXPECT_EQ(cache.get("apns:TEAM123456:ABC123DEFG", now_ms, 20 * 60'000, mint).value(), a.value());
  now_ms += 60'000;  // 40 minutes: past the refresh point
  auto b = cache.get("apns:TEAM123456:ABC123DEFG", now_ms, 20 * 60'000, mint);
  EXPECT_NE(b.value(), a.value());
  auto v = verify_jwt(b.value(), k.ec_pub);
  ASSERT_TRUE(v.ok()) << v.error().message;
  EXPECT_EQ(v.value().claims["iat"], now_ms / 1000);
}

}  // namespace
}  // namespace tayori::crypto
