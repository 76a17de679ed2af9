// tayori/provider_helpers.hpp's URL and base64 helpers, which plugins use to check the URL settings they send
// to and to read secrets handed over in base64. (Retry-After, UUIDs, attempt tokens: plugin_sdk_test.cpp.)
#include <gtest/gtest.h>
#include <tayori/provider_helpers.hpp>

#include "crypto/crypto.hpp"

namespace {

using namespace tayori::sdk;

TEST(ProviderHelpers, Base64DecodeUndoesTheGatewaysEncodingAndRefusesOtherText) {
  std::string bytes;
  for (int i = 0; i < 300; ++i) {
    EXPECT_EQ(base64_decode(tayori::crypto::base64_encode(bytes)), bytes) << i;
    bytes += static_cast<char>(i * 37);
  }
  EXPECT_EQ(base64_decode("aGk"), "hi");  // padding is optional
  EXPECT_FALSE(base64_decode("a*b"));
  EXPECT_FALSE(base64_decode("aG=k"));    // '=' only at the end
  EXPECT_FALSE(base64_decode("aGk_"));    // the URL-safe alphabet is not this one
}

TEST(ProviderHelpers, UrlAuthorityIsReadWhole) {
  auto a = url_authority("HTTPS://user:pw@[::1]:8443/path?q#f");
  ASSERT_TRUE(a);
  EXPECT_EQ(a->scheme, "https");
  EXPECT_EQ(a->host, "::1");
  EXPECT_EQ(a->port, "8443");
  EXPECT_TRUE(a->has_userinfo);
  a = url_authority("http://127.0.0.1.example.com/x");
  ASSERT_TRUE(a);
  EXPECT_EQ(a->host, "127.0.0.1.example.com");
  EXPECT_EQ(a->port, "");
  EXPECT_FALSE(url_authority("example.com/x"));
  EXPECT_FALSE(url_authority("http://[::1/x"));
  EXPECT_FALSE(url_authority("http:///x"));
}

TEST(ProviderHelpers, PlainHttpOnlyToALoopbackHostAndNeverWithCredentials) {
  for (const char* url : {"https://hooks.example.com/x", "http://127.0.0.1:8080/x", "http://127.1.2.3/",
                          "http://localhost/x", "http://LOCALHOST:1/", "http://[::1]:9/x?a=b"})
    EXPECT_NO_THROW(require_https_or_loopback("url", url)) << url;
  for (const char* url : {"http://hooks.example.com/x", "http://127.0.0.1.example.com/x", "http://127.0.0.1@example.com/",
                          "http://localhost.example.com/", "http://localhost:1@example.com/", "ftp://127.0.0.1/x",
                          "https://user:pw@hooks.example.com/", "http://128.0.0.1/", "http://127.0.0.1x/", "hooks"}) {
    try {
      require_https_or_loopback("url", url);
      ADD_FAILURE() << url << " was taken";
    } catch (const Error& e) {
      EXPECT_EQ(std::string(e.what()).rfind("url: must be https://", 0), 0u) << e.what();
    }
  }
}

}  // namespace
