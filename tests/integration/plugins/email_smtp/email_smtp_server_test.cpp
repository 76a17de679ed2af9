// The `email_smtp` channel plugin's requests, built on the public fake host (tayori/testing.hpp), submitted by
// the real host transport to a real SMTP server (tests/support/smtp_server.hpp, Debian's python3-aiosmtpd, a
// child process on 127.0.0.1) and the replies classified. (Settings and classify alone: the unit tier's
// tests/unit/plugins/email_smtp/email_plugin_test.cpp; the built messages read back by Python's email parser:
// email_plugin_build_test.cpp.)
#include <gtest/gtest.h>
#include <tayori/testing.hpp>

#include <cstdlib>
#include <future>
#include <string>
#include <vector>

#include "email_test_support.hpp"
#include "required_tool.hpp"
#include "smtp_server.hpp"
#include "test_support.hpp"
#include "transport/outbound_transport.hpp"

namespace tayori::plugin {
namespace {

using namespace test::email_plugin;  // the fake host's names and the plugin's helpers
using testing::kDeliveryId;

// What the host transport answers to a built SMTP request, as the channel would submit it, in the fake
// host's terms (the answer classify() takes).
Response submit(transport::OutboundTransport& transport, const Request& b) {
  transport::Request req;
  req.kind = transport::RequestKind::Smtp;
  req.url = b.url;
  req.body = b.body;
  req.mail_from = b.mail_from;
  req.mail_rcpt = b.mail_rcpt;
  req.username = b.username;
  req.password = b.password;
  req.allow_plaintext = b.allow_plaintext;
  std::promise<transport::Response> done;
  auto answer = done.get_future();
  transport.submit(req, [&done](transport::Response r) { done.set_value(std::move(r)); });
  transport::Response r = answer.get();
  Response out(r.status, r.headers, r.body);
  out.transport_error = r.transport_error;
  out.transport_error_text = r.error_text;
  return out;
}

TEST(EmailPluginSmtp, BuiltMessagesAreAcceptedAndBouncesClassified) {
  TAYORI_REQUIRE_TOOL(test::SmtpServer::available(), "python3-aiosmtpd is not installed (tools/setup.sh installs it)");
  // Without TLS: the plugin's allow_plaintext, on loopback.
  test::TempDir maildir{"tayori_smtp_"};
  test::SmtpServer server(
      {maildir.path(), {"--reject-rcpt", "gone@example.jp:550", "--reject-rcpt", "busy@example.jp:451"}});
  ASSERT_GT(server.port(), 0) << "smtp_server.py did not start";
  Plugin p = email({{"url", "smtp://127.0.0.1:" + std::to_string(server.port())},
                    {"from", "たより <news@example.com>"},
                    {"allow_plaintext", "true"}});
  ASSERT_TRUE(p.ok()) << p.error();
  transport::OutboundTransport transport{transport::TransportOptions{}};
  auto send = [&](Plugin& plugin, const Delivery& d) {
    return classify(plugin, submit(transport, build_one(plugin, d)), d);
  };

  Outcome ok = send(p, mail());
  EXPECT_EQ(ok.kind, TAYORI_OUTCOME_DELIVERED) << ok.reason;
  EXPECT_EQ(ok.provider_message_id, std::string("<tayori.") + kDeliveryId + "@example.com>");
  auto stored = server.received();
  ASSERT_EQ(stored.size(), 1u);
  auto got = test::parse_with_python(stored[0].data);
  EXPECT_EQ(got["defects"], nlohmann::json::array());
  EXPECT_EQ(got["subject"], "ご注文の確認");
  EXPECT_EQ(got["from"]["name"], "たより");
  EXPECT_EQ(got["parts"][1]["content"], "<p>ありがとうございます。</p>");

  Delivery gone = mail();
  gone.contact = "gone@example.jp";
  Outcome bounced = send(p, gone);
  EXPECT_EQ(bounced.kind, TAYORI_OUTCOME_PERMANENT);
  EXPECT_EQ(bounced.reason.rfind("smtp.550: 5.1.1 ", 0), 0u) << bounced.reason;
  EXPECT_TRUE(bounced.deactivate_contact);

  Delivery busy = mail();
  busy.contact = "busy@example.jp";
  Outcome later = send(p, busy);
  EXPECT_EQ(later.kind, TAYORI_OUTCOME_RETRY);
  EXPECT_EQ(later.reason.rfind("smtp.451: 4.3.0 ", 0), 0u) << later.reason;

  Plugin closed = email({{"url", "smtp://127.0.0.1:1"}, {"from", "news@example.com"}, {"allow_plaintext", "true"}});
  ASSERT_TRUE(closed.ok()) << closed.error();
  Outcome refused = send(closed, mail());
  EXPECT_EQ(refused.kind, TAYORI_OUTCOME_RETRY);
  EXPECT_EQ(refused.reason.rfind("smtp.transport: ", 0), 0u) << refused.reason;
}

}  // namespace
}  // namespace tayori::plugin
