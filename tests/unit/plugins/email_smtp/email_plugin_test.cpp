// The `email_smtp` channel plugin (plugins/email_smtp). Its settings go through the real host
// (config::load_string, build_registry); classify() is driven through the plugin's C descriptor on the public
// fake host (tayori/testing.hpp), as a plugin author's tests drive theirs. (The messages build() makes, read back
// by Python's email parser: tests/integration/plugins/email_smtp/email_plugin_build_test.cpp; the requests sent
// to a real SMTP server: email_smtp_server_test.cpp there.)
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

const Settings kBasic = {{"url", "smtps://smtp.example.com:465"}, {"from", "たより <news@example.com>"}};

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
  // tests give the plugin the same settings on the fake host, the password under its own name).
  auto login = load(
      "      url: smtps://smtp.example.com:465\n      from: news@example.com\n      username: mailer\n"
      "      password_env: SMTP_PASSWORD\n");
  ASSERT_TRUE(login);
  RegistryResult reg = build_registry(*login, clock, &transport);
  EXPECT_TRUE(reg.registry) << reg.errors.at(0).to_string();
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
