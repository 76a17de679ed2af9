// The `email_smtp` channel plugin's build() (plugins/email_smtp): the message it builds, driven through the
// plugin's C descriptor on the public fake host (tayori/testing.hpp), read back by a real MIME parser (Python's
// `email` package run as a child process: email_test_support.hpp's parse_with_python), which is what makes
// these integration tests. (Its settings and classify(): the unit tier's
// tests/unit/plugins/email_smtp/email_plugin_test.cpp; its requests sent to a real SMTP server:
// email_smtp_server_test.cpp.)
#include <gtest/gtest.h>
#include <tayori/testing.hpp>

#include <map>
#include <string>
#include <vector>

#include "email_test_support.hpp"
#include "plugin_test_support.hpp"

namespace tayori::plugin {
namespace {

// In here `testing::` is the gateway-side helpers (plugin_test_support.hpp, tayori::plugin::testing); the
// public fake host's names come with the plugin's helpers (email_test_support.hpp), none of them declared in
// tayori::plugin.
using namespace test::email_plugin;
using testing::kDeliveryId;

// The gateway's response options (plugin_test_support.hpp) as the fake host's.
std::vector<tayori::testing::ResponseOption> sample_responses() {
  std::vector<tayori::testing::ResponseOption> out;
  for (const ResponseOption& o : testing::sample_responses()) out.push_back({o.id, o.label, o.ref, o.url});
  return out;
}

const Settings kBasic = {{"url", "smtps://smtp.example.com:465"}, {"from", "たより <news@example.com>"}};

Settings with(Settings settings, const Settings& more) {
  for (const auto& [k, v] : more) settings[k] = v;
  return settings;
}

// ---- build() --------------------------------------------------------------------------------------------

TEST(EmailPluginBuild, TheRequestIsOneSmtpSubmissionWithTheWholeMessage) {
  Plugin p = email(with(kBasic, {{"reply_to", "support@example.com"}, {"username", "mailer"}, {"password", "s3cret"}}));
  ASSERT_TRUE(p.ok()) << p.error();
  Request r = build_one(p, mail());
  EXPECT_EQ(r.kind, TAYORI_REQUEST_SMTP);
  EXPECT_EQ(r.url, "smtps://smtp.example.com:465");
  EXPECT_EQ(r.method, "");
  EXPECT_EQ(r.headers.size(), 0u);  // headers belong in the message
  EXPECT_EQ(r.mail_from, "news@example.com");
  EXPECT_EQ(r.mail_rcpt, std::vector<std::string>{"hanako@example.jp"});
  EXPECT_EQ(r.username, "mailer");
  EXPECT_EQ(r.password, "s3cret");
  EXPECT_FALSE(r.allow_plaintext);
  EXPECT_EQ(test::line_problems(r.body), std::vector<std::string>{});
  nlohmann::json got = test::parse_with_python(r.body);
  EXPECT_EQ(got["defects"], nlohmann::json::array());
  EXPECT_EQ(got["from"]["name"], "たより");
  EXPECT_EQ(got["from"]["addr"], "news@example.com");
  EXPECT_EQ(got["reply_to"]["addr"], "support@example.com");
  EXPECT_EQ(got["to"]["addr"], "hanako@example.jp");
  EXPECT_EQ(got["subject"], "ご注文の確認");
  EXPECT_EQ(got["date_epoch"], kNow / 1000);
  EXPECT_EQ(got["message_id"], std::string("<tayori.") + kDeliveryId + "@example.com>");
  EXPECT_EQ(got["content_type"], "multipart/alternative");
  ASSERT_EQ(got["parts"].size(), 2u);
  EXPECT_EQ(got["parts"][0]["content"], "ありがとうございます。");
  EXPECT_EQ(got["parts"][1]["content"], "<p>ありがとうございます。</p>");
  EXPECT_EQ(got["list_unsubscribe"], nullptr);  // transactional
}

TEST(EmailPluginBuild, ARetryReusesTheMessageIdAndAConfiguredDomainIsUsed) {
  Plugin p = email(with(kBasic, {{"message_id_domain", "mail.example.net"}}));
  ASSERT_TRUE(p.ok()) << p.error();
  Delivery d = mail();
  auto first = test::parse_with_python(build_one(p, d).body);
  d.attempt = 2;
  p.host().now_ms = kNow + 60'000;
  auto retry = test::parse_with_python(build_one(p, d).body);
  EXPECT_EQ(first["message_id"], std::string("<tayori.") + kDeliveryId + "@mail.example.net>");
  EXPECT_EQ(retry["message_id"], first["message_id"]);
  EXPECT_EQ(retry["date_epoch"], (kNow + 60'000) / 1000);
  d.delivery_id = "another-delivery";
  EXPECT_NE(test::parse_with_python(build_one(p, d).body)["message_id"], first["message_id"]);
}

TEST(EmailPluginBuild, MarketingMailCarriesOneClickUnsubscribeAndTransactionalNever) {
  Plugin p = email(with(kBasic, {{"unsubscribe_mailto", "unsubscribe@example.com"}}));
  ASSERT_TRUE(p.ok()) << p.error();
  Delivery marketing = mail();
  marketing.purpose = TAYORI_PURPOSE_MARKETING;
  marketing.unsubscribe_url = "https://gw.example.com/u/signed.token";
  auto got = test::parse_with_python(build_one(p, marketing).body);
  EXPECT_EQ(got["list_unsubscribe"], "<https://gw.example.com/u/signed.token>, <mailto:unsubscribe@example.com>");
  EXPECT_EQ(got["list_unsubscribe_post"], "List-Unsubscribe=One-Click");  // RFC 8058 §3.1

  Delivery transactional = marketing;
  // Even if a URL were given, a receipt offers no opt-out of itself.
  transactional.purpose = TAYORI_PURPOSE_TRANSACTIONAL;
  auto tx = test::parse_with_python(build_one(p, transactional).body);
  EXPECT_EQ(tx["list_unsubscribe"], nullptr);
  EXPECT_EQ(tx["list_unsubscribe_post"], nullptr);
}

TEST(EmailPluginBuild, MarketingWithoutAnUnsubscribeUrlIsRefusedUnlessAllowed) {
  Delivery d = mail();
  d.purpose = TAYORI_PURPOSE_MARKETING;
  Plugin strict = email(kBasic);
  ASSERT_TRUE(strict.ok()) << strict.error();
  auto refused = strict.build(d);
  EXPECT_EQ(refused.status, TAYORI_ERROR);
  EXPECT_TRUE(refused.requests.empty());
  EXPECT_NE(refused.error.find("unsubscribe_url: marketing mail needs a one-click unsubscribe link"), std::string::npos)
      << refused.error;

  Plugin lenient = email(with(kBasic, {{"require_unsubscribe", "false"},
                                       {"unsubscribe_mailto", "mailto:unsubscribe@example.com?subject=stop"}}));
  ASSERT_TRUE(lenient.ok()) << lenient.error();
  auto got = test::parse_with_python(build_one(lenient, d).body);
  EXPECT_EQ(got["list_unsubscribe"], "<mailto:unsubscribe@example.com?subject=stop>");
  EXPECT_EQ(got["list_unsubscribe_post"], nullptr);  // one-click needs the https target
  const auto& logs = lenient.host().logs;
  ASSERT_EQ(logs.size(), 1u);
  EXPECT_EQ(logs[0].first, TAYORI_LOG_WARN);
  EXPECT_NE(logs[0].second.find("one-click unsubscribe"), std::string::npos);
}

// Response options: one link per option after the body, in both parts; in HTML before </body> when there is
// one, escaped. An option without a url (no public URL configured) cannot be offered by mail.
TEST(EmailPluginBuild, ResponseOptionsBecomeALinkPerOptionInEachPart) {
  Plugin p = email(kBasic);
  ASSERT_TRUE(p.ok()) << p.error();
  Delivery d = mail();
  d.responses = sample_responses();
  d.responses[2].label = "興味<なし>";
  d.content = {
      {"subject", "ご案内"}, {"text", "新商品です。"}, {"html", "<html><body><p>新商品です。</p></body></html>"}};
  auto got = test::parse_with_python(build_one(p, d).body);
  ASSERT_EQ(got["parts"].size(), 2u);
  EXPECT_EQ(got["parts"][0]["content"],
            "新商品です。\r\n\r\n"  // line breaks are CRLF on the wire (RFC 2046 §4.1.1)
            "気になる: https://gw.example/r/r.interested-ref\r\n"
            "あとで: https://gw.example/r/r.later-ref\r\n"
            "興味<なし>: https://gw.example/r/r.not-interested-ref\r\n");
  EXPECT_EQ(got["parts"][1]["content"],
            "<html><body><p>新商品です。</p>\r\n<p class=\"tayori-responses\">"
            "<a href=\"https://gw.example/r/r.interested-ref\">気になる</a> | "
            "<a href=\"https://gw.example/r/r.later-ref\">あとで</a> | "
            "<a href=\"https://gw.example/r/r.not-interested-ref\">興味&lt;なし&gt;</a></p>\r\n</body></html>");

  Delivery text_only = d;
  text_only.content = {{"subject", "ご案内"}, {"text", "新商品です。"}};
  auto plain = test::parse_with_python(build_one(p, text_only).body);
  EXPECT_EQ(plain["content_type"], "text/plain");

  Delivery no_links = d;
  for (auto& o : no_links.responses) o.url.clear();
  auto refused = p.build(no_links);
  EXPECT_EQ(refused.status, TAYORI_ERROR);
  EXPECT_TRUE(refused.requests.empty());
  EXPECT_NE(refused.error.find("responses[0].url"), std::string::npos) << refused.error;
}

TEST(EmailPluginBuild, ContentAndContactProblemsAreRefusedBeforeSending) {
  Plugin p = email(kBasic);
  ASSERT_TRUE(p.ok()) << p.error();
  struct Case {
    tayori::testing::Fields content;
    std::string contact;
    std::string error;
  };
  const Case cases[] = {
      {{{"text", "body"}}, "a@example.jp", "subject: an email needs content \"subject\""},
      {{{"subject", "s"}}, "a@example.jp", "text, html: an email needs content"},
      {{{"subject", "s"}, {"text", ""}, {"html", ""}}, "a@example.jp", "text, html: an email needs content"},
      {{{"subject", "Hi\r\nBcc: victim@example.com"}, {"text", "x"}}, "a@example.jp", "subject: contains a line break"},
      {{{"subject", "s"}, {"text", "x"}}, "a@example.jp\r\nBcc: victim@example.com", "contact: "},
      {{{"subject", "s"}, {"text", "x"}}, "not-an-address", "contact: \"not-an-address\" is not an email address"},
      {{{"subject", "s"}, {"text", "bad \xff utf-8"}}, "a@example.jp", "text: is not valid UTF-8"},
  };
  for (const Case& c : cases) {
    Delivery d = mail();
    d.content = c.content;
    d.contact = c.contact;
    auto r = p.build(d);
    SCOPED_TRACE(c.error);
    EXPECT_EQ(r.status, TAYORI_ERROR);
    EXPECT_TRUE(r.requests.empty());
    EXPECT_NE(r.error.find(c.error), std::string::npos) << r.error;
  }
  Delivery text_only = mail();
  text_only.content = {{"subject", "Plain"}, {"text", "Hello"}};
  auto got = test::parse_with_python(build_one(p, text_only).body);
  EXPECT_EQ(got["content_type"], "text/plain");
  EXPECT_EQ(got["subject"], "Plain");
}

}  // namespace
}  // namespace tayori::plugin
