// Signed links back to the gateway (gateway/links): round trip, forgery, expiry, malformed input, size.
#include <gtest/gtest.h>

#include "links/links.hpp"
#include "crypto/crypto.hpp"

namespace tayori::links {
namespace {

const LinkSigner kSigner("https://gw.example.com/tayori/", "link-secret");

TEST(Links, RoundTripCarriesEveryClaim) {
  LinkClaims c{LinkKind::response, "msg-42", "line_jp", "later", 2'000'000'000};
  Verified v = kSigner.verify(kSigner.token(c), 1'900'000'000);
  ASSERT_TRUE(v.ok()) << to_string(v.error);
  EXPECT_EQ(v.claims.kind, LinkKind::response);
  EXPECT_EQ(v.claims.message_id, "msg-42");
  EXPECT_EQ(v.claims.channel, "line_jp");
  EXPECT_EQ(v.claims.option, "later");
  EXPECT_EQ(v.claims.expires_at_s, 2'000'000'000);
}

TEST(Links, UrlsPointAtThePublicBaseWithoutADoubleSlash) {
  LinkClaims u{LinkKind::unsubscribe, "m", "email", "", 2'000'000'000};
  EXPECT_EQ(kSigner.url(u), "https://gw.example.com/tayori/u/" + kSigner.token(u));
  LinkClaims r{LinkKind::response, "m", "email", "yes", 2'000'000'000};
  EXPECT_EQ(kSigner.url(r), "https://gw.example.com/tayori/r/" + kSigner.token(r));
}

TEST(Links, ExpiredAtTheInstantOfExpiry) {
  std::string t = kSigner.token({LinkKind::unsubscribe, "m", "email", "", 1000});
  EXPECT_TRUE(kSigner.verify(t, 999).ok());
  EXPECT_EQ(kSigner.verify(t, 1000).error, LinkError::expired);
}

TEST(Links, AnOpenTokenNamesItsMessageAndChannel) {
  LinkClaims o{LinkKind::open, "msg-42", "email", "", 2'000'000'000};
  EXPECT_EQ(kSigner.url(o), "https://gw.example.com/tayori/o/" + kSigner.token(o));
  Verified v = kSigner.verify(kSigner.token(o), 1'900'000'000);
  ASSERT_TRUE(v.ok());
  EXPECT_EQ(v.claims.kind, LinkKind::open);
  EXPECT_EQ(v.claims.message_id, "msg-42");
}

// A click token carries its target, signed with the rest; an expired one still says where it pointed, so the
// recipient can still be taken there (nothing is recorded), while a forged one says nothing.
TEST(Links, AClickTokenCarriesItsTargetAndStillNamesItWhenExpired) {
  LinkClaims c{LinkKind::click, "msg-42", "email", "3", 1000, "https://shop.example/sale?a=1&b=\"2\""};
  const std::string token = kSigner.token(c);
  EXPECT_EQ(kSigner.url(c), "https://gw.example.com/tayori/c/" + token);
  Verified fresh = kSigner.verify(token, 999);
  ASSERT_TRUE(fresh.ok());
  EXPECT_EQ(fresh.claims.kind, LinkKind::click);
  EXPECT_EQ(fresh.claims.option, "3");
  EXPECT_EQ(fresh.claims.target, c.target);
  Verified old = kSigner.verify(token, 1000);
  EXPECT_EQ(old.error, LinkError::expired);
  EXPECT_EQ(old.claims.target, c.target);
  // Another kind's payload with a target appended, or a click's without one, is not a token of ours.
  const LinkSigner other("https://gw.example.com/tayori/", "another-secret");
  Verified forged = kSigner.verify(other.token(c), 999);
  EXPECT_EQ(forged.error, LinkError::forged);
  EXPECT_TRUE(forged.claims.target.empty());
}

TEST(Links, AnotherSecretOrAnAlteredPayloadIsForged) {
  LinkClaims c{LinkKind::unsubscribe, "m-1", "email", "", 2'000'000'000};
  std::string t = kSigner.token(c);
  EXPECT_EQ(LinkSigner("https://gw", "other").verify(t, 0).error, LinkError::forged);
  // Same MAC, payload for another message: the MAC no longer matches.
  std::string other = kSigner.token({LinkKind::unsubscribe, "m-2", "email", "", 2'000'000'000});
  std::string spliced = other.substr(0, other.find('.')) + t.substr(t.find('.'));
  EXPECT_EQ(kSigner.verify(spliced, 0).error, LinkError::forged);
  // A response token is not an unsubscribe token: the kind is inside the MAC.
  std::string as_response = kSigner.token({LinkKind::response, "m-1", "email", "", 2'000'000'000});
  EXPECT_NE(as_response, t);
}

TEST(Links, GarbageIsMalformedNotACrash) {
  for (std::string bad : {"", ".", "abc", "abc.", ".abc", "!!!.###", "e30.AAAA", "a.b.c"})
    EXPECT_NE(kSigner.verify(bad, 0).error, LinkError::none) << bad;
  // A correctly signed payload of the wrong shape is refused as malformed.
  std::string payload = R"(["x","m","c","",1])";
  auto mac = crypto::hmac_sha256("link-secret", payload).value().substr(0, 16);
  std::string t = crypto::base64url_encode(payload) + "." + crypto::base64url_encode(mac);
  EXPECT_EQ(kSigner.verify(t, 0).error, LinkError::malformed);
  // Without a key nothing verifies.
  EXPECT_EQ(LinkSigner().verify(kSigner.token({LinkKind::unsubscribe, "m", "c", "", 5}), 0).error,
            LinkError::forged);
}

TEST(Links, AResponseTokenForALongIdFitsLinePostbackData) {
  // LINE postback data is at most 300 characters; a 64-character message id must fit with room to spare.
  std::string t = kSigner.token({LinkKind::response, std::string(64, 'x'), "line_marketing", "not_interested",
                                 4'000'000'000});
  EXPECT_LE(t.size(), 200u);
}

TEST(Links, TheFirstKeySignsAndEveryKeyVerifiesSoLinksSurviveARotation) {
  LinkClaims c{LinkKind::unsubscribe, "m-1", "email", "", 2'000'000'000};
  std::string unnamed = kSigner.token(c);  // sent before key ids: no id in it
  LinkSigner november("https://gw", std::vector<LinkKey>{{"nov", "secret-nov"}});
  std::string signed_in_november = november.token(c);
  EXPECT_EQ(signed_in_november.rfind("nov.", 0), 0u) << signed_in_november;

  LinkSigner december("https://gw", {{"dec", "secret-dec"}, {"nov", "secret-nov"}, {"", "link-secret"}});
  std::string signed_in_december = december.token(c);
  EXPECT_EQ(signed_in_december.rfind("dec.", 0), 0u) << signed_in_december;
  for (const std::string& t : {unnamed, signed_in_november, signed_in_december}) {
    Verified v = december.verify(t, 0);
    ASSERT_TRUE(v.ok()) << t << ": " << to_string(v.error);
    EXPECT_EQ(v.claims.message_id, "m-1");
  }
  // Once November's key is removed, its links no longer verify; the others still do.
  LinkSigner january("https://gw", {{"jan", "secret-jan"}, {"dec", "secret-dec"}});
  EXPECT_EQ(january.verify(signed_in_november, 0).error, LinkError::forged);
  EXPECT_EQ(january.verify(unnamed, 0).error, LinkError::forged);
  EXPECT_TRUE(january.verify(signed_in_december, 0).ok());
}

TEST(Links, TheKeyIdIsInsideTheMacSoATokenCannotMoveToAnotherKey) {
  // Two keys with the same secret: relabelling a token with the other id changes what the MAC covers.
  LinkSigner signer("https://gw", {{"a", "same"}, {"b", "same"}});
  std::string t = signer.token({LinkKind::unsubscribe, "m", "email", "", 2'000'000'000});
  ASSERT_TRUE(signer.verify(t, 0).ok());
  EXPECT_EQ(signer.verify("b" + t.substr(1), 0).error, LinkError::forged);
  EXPECT_EQ(signer.verify(t.substr(2), 0).error, LinkError::forged);  // the id dropped: the unnamed key
  EXPECT_EQ(signer.verify("zz" + t.substr(1), 0).error, LinkError::forged);  // no such key
  EXPECT_EQ(signer.verify(t.substr(1), 0).error, LinkError::malformed);      // ".payload.mac"
}

TEST(Links, WhenTheMacCannotBeComputedNothingVerifiesAndNothingIsSigned) {
  // Before: a failed HMAC gave an empty MAC, and a token "payload." (empty MAC) compared equal to it.
  MacFunction failing = [](std::string_view, std::string_view) -> std::optional<std::string> { return std::nullopt; };
  MacFunction empty = [](std::string_view, std::string_view) -> std::optional<std::string> { return std::string(); };
  std::string payload = crypto::base64url_encode(R"(["u","m","email","",2000000000])");
  for (const MacFunction& mac : {failing, empty}) {
    LinkSigner broken("https://gw", {{"", "link-secret"}}, mac);
    EXPECT_EQ(broken.verify(payload + ".", 0).error, LinkError::forged);
    EXPECT_EQ(broken.verify(kSigner.token({LinkKind::unsubscribe, "m", "email", "", 2'000'000'000}), 0).error,
              LinkError::forged);
    EXPECT_THROW(broken.token({LinkKind::unsubscribe, "m", "email", "", 2'000'000'000}), SigningError);
  }
}

}  // namespace
}  // namespace tayori::links
