// The `email_smtp` channel plugin (plugins/email_smtp). Its settings go through the real host
// (config::load_string, build_registry); build() and classify() are driven through the plugin's C descriptor
// on the public fake host (tayori/testing.hpp), as a plugin author's tests drive theirs, since the host's
// channel path cannot send SMTP requests yet. (The requests it builds, sent to a real SMTP server:
// tests/integration/plugins/email_smtp/email_smtp_server_test.cpp.)
#include <gtest/gtest.h>
#include <tayori/testing.hpp>

#include <fstream>
#include <map>
#include <sstream>

#include "email_test_support.hpp"
#include "plugin_test_support.hpp"

namespace tayori::plugin {
namespace {

// In here `testing::` is the gateway-side helpers (plugin_test_support.hpp, tayori::plugin::testing); the
// public fake host's names come with the plugin's helpers (email_test_support.hpp), none of them declared in
// tayori::plugin.
using namespace test::email_plugin;
using testing::kDeliveryId;

std::optional<config::Config> load(const std::string& settings) {
  testing::OneChannel mail{.name = "mail", .plugin = "email_smtp", .settings = settings};
  return testing::load_config(mail.yaml(), "/tmp", {{"SMTP_PASSWORD", "s3cret"}}).config;
}

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

// ---- Settings -------------------------------------------------------------------------------------------

TEST(EmailPluginSettings, BadSettingsAreRefusedNamingTheSetting) {
  const std::pair<std::string, std::string> cases[] = {
      {"      url: https://smtp.example.com\n      from: news@example.com\n", "url: must be smtp://host:587"},
      {"      url: smtp://user:pw@smtp.example.com:587\n      from: news@example.com\n", "url: must not carry credentials"},
      {"      url: smtp://smtp.example.com:587\n      from: news\n", "from: \"news\" is not an email address"},
      {"      url: smtp://smtp.example.com:587\n      from: \"News <news@example.com\"\n", "from: "},
      {"      url: smtp://smtp.example.com:587\n      from: news@example.com\n      username: u\n",
       "username, password: give both"},
      {"      url: smtp://smtp.example.com:587\n      from: news@example.com\n      password_env: SMTP_PASSWORD\n",
       "username, password: give both"},
      {"      url: smtp://smtp.example.com:587\n      from: news@example.com\n      allow_plaintext: true\n",
       "allow_plaintext: only for a relay on loopback"},
      {"      url: smtp://10.0.0.1:25\n      from: news@example.com\n      allow_plaintext: true\n",
       "allow_plaintext: only for a relay on loopback"},
      {"      url: smtps://127.0.0.1:465\n      from: news@example.com\n      allow_plaintext: true\n",
       "allow_plaintext: has no meaning with smtps://"},
      {"      url: smtp://smtp.example.com:587\n      from: news@example.com\n      reply_to: nope\n",
       "reply_to: \"nope\" is not an email address"},
      {"      url: smtp://smtp.example.com:587\n      from: news@example.com\n      message_id_domain: bad_domain\n",
       "message_id_domain: \"bad_domain\" is not a domain name"},
      {"      url: smtp://smtp.example.com:587\n      from: news@example.com\n      unsubscribe_mailto: \"x y\"\n",
       "unsubscribe_mailto: "},
  };
  SystemClock clock;
  transport::OutboundTransport transport{transport::TransportOptions{}};
  for (const auto& [settings, message] : cases) {
    auto config = load(settings);
    ASSERT_TRUE(config);
    RegistryResult reg = build_registry(*config, clock, &transport);
    SCOPED_TRACE(settings);
    ASSERT_FALSE(reg.registry);
    ASSERT_FALSE(reg.errors.empty());
    EXPECT_NE(reg.errors[0].to_string().find(message), std::string::npos) << reg.errors[0].to_string();
  }
  // Loopback relays may go without TLS; the channel's contact defaults to "email".
  for (const char* url : {"smtp://127.0.0.1:2525", "smtp://[::1]:25", "smtp://localhost:25/mta.example.jp"}) {
    auto config = load(std::string("      url: ") + url + "\n      from: news@example.com\n      allow_plaintext: true\n");
    ASSERT_TRUE(config);
    RegistryResult reg = build_registry(*config, clock, &transport);
    ASSERT_TRUE(reg.registry) << url << ": " << reg.errors.at(0).to_string();
    EXPECT_EQ(reg.registry->find("mail")->contact(), "email");
  }
  // Both credentials, the password from the variable password_env names: accepted by the gateway (the build
  // tests below give the plugin the same settings on the fake host, the password under its own name).
  auto login = load(
      "      url: smtps://smtp.example.com:465\n      from: news@example.com\n      username: mailer\n"
      "      password_env: SMTP_PASSWORD\n");
  ASSERT_TRUE(login);
  RegistryResult reg = build_registry(*login, clock, &transport);
  EXPECT_TRUE(reg.registry) << reg.errors.at(0).to_string();
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

// ---- classify() -----------------------------------------------------------------------------------------

// An SMTP answer as the transport reports it: the reply (code and text), with a transport error or an
// error text when there is one.
Response smtp_answer(int transport_error, const std::string& error_text, int status, const std::string& body) {
  Response r(status, {}, body);
  r.transport_error = transport_error;
  r.transport_error_text = error_text;
  return r;
}

TEST(EmailPluginClassify, SmtpRepliesBecomeOutcomes) {
  Plugin p = email(kBasic);
  ASSERT_TRUE(p.ok()) << p.error();
  const std::string message_id = std::string("<tayori.") + kDeliveryId + "@example.com>";
  struct Case {
    int transport_error;
    std::string error_text;
    int status;
    std::string body;
    tayori_outcome_kind kind;
    std::string reason;
    bool deactivate;
  };
  constexpr tayori_outcome_kind delivered = TAYORI_OUTCOME_DELIVERED, retry = TAYORI_OUTCOME_RETRY,
                                permanent = TAYORI_OUTCOME_PERMANENT;
  const Case cases[] = {
      {0, "", 250, "250 2.0.0 Ok: queued as 4F2A", delivered, "", false},
      {7, "Failed to connect to smtp.example.com port 465: Connection refused", 0, "", retry,
       "smtp.transport: Failed to connect to smtp.example.com port 465: Connection refused", false},
      {0, "", 0, "", retry, "smtp.no_reply", false},
      // Hard bounces: the address is dead (RFC 3463 X.1.1 / X.1.2 / X.1.3 / X.1.6 / X.1.10).
      {0, "RCPT failed: 550 (server: 550 5.1.1 <x@example.jp>: user unknown)", 550,
       "550 5.1.1 <x@example.jp>: user unknown", permanent, "smtp.550: 5.1.1 <x@example.jp>: user unknown", true},
      {0, "", 550, "550-5.1.1 The email account that you tried to reach does not exist.\r\n550 5.1.1 Please check",
       permanent, "smtp.550: 5.1.1 Please check", true},
      {0, "", 553, "553 5.1.3 Bad recipient address syntax", permanent, "smtp.553: 5.1.3 Bad recipient address syntax",
       true},
      {0, "", 556, "556 5.1.10 Recipient address has null MX", permanent,
       "smtp.556: 5.1.10 Recipient address has null MX", true},
      // Without an enhanced code, RFC 5321 basic codes 550 / 551 / 553 on RCPT.
      {0, "RCPT failed: 550", 550, "550 Mailbox unavailable", permanent, "smtp.550: Mailbox unavailable", true},
      {0, "", 551, "551 User not local", permanent, "smtp.551: User not local", true},
      {0, "", 553, "553 Requested action not taken", permanent, "smtp.553: Requested action not taken", true},
      // Permanent, but not the address's fault.
      {0, "MAIL failed: 550", 550, "550 Sender rejected", permanent, "smtp.550: Sender rejected", false},
      {0, "", 550, "550 5.7.1 Message rejected as spam", permanent, "smtp.550: 5.7.1 Message rejected as spam", false},
      {0, "", 550, "550 5.1.8 Sender address rejected: Domain not found", permanent,
       "smtp.550: 5.1.8 Sender address rejected: Domain not found", false},
      {0, "", 554, "554 5.7.1 Message rejected as spam", permanent, "smtp.554: 5.7.1 Message rejected as spam", false},
      {0, "", 552, "552 5.3.4 Message size exceeds fixed limit", permanent,
       "smtp.552: 5.3.4 Message size exceeds fixed limit", false},
      {0, "", 550, "550 5.2.1 The email account that you tried to reach is disabled", permanent,
       "smtp.550: 5.2.1 The email account that you tried to reach is disabled", false},
      {0, "Login denied (server: 535 5.7.8 Authentication credentials invalid)", 535,
       "535 5.7.8 Authentication credentials invalid", permanent, "smtp.535: 5.7.8 Authentication credentials invalid",
       false},
      // Transient (RFC 5321 §4.2.1).
      {0, "", 421, "421 4.7.0 Try again later, closing connection", retry,
       "smtp.421: 4.7.0 Try again later, closing connection", false},
      {0, "RCPT failed: 451", 451, "451 4.3.0 <x@example.jp>: Temporary failure", retry,
       "smtp.451: 4.3.0 <x@example.jp>: Temporary failure", false},
      {0, "", 452, "452 4.2.2 Mailbox full", retry, "smtp.452: 4.2.2 Mailbox full", false},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(std::to_string(c.status) + " " + c.body);
    Outcome o = classify(p, smtp_answer(c.transport_error, c.error_text, c.status, c.body));
    EXPECT_EQ(o.kind, c.kind) << o.reason;
    EXPECT_EQ(o.reason, c.reason);
    EXPECT_EQ(o.deactivate_contact, c.deactivate);
    EXPECT_EQ(o.provider_message_id, c.kind == delivered ? message_id : "");
  }
}

}  // namespace
}  // namespace tayori::plugin
