// The real channels end to end, through the real binary: one gateway with all five channel plugins
// pointed at the provider simulator (tayori-sim: LINE and Twilio over HTTP/1.1, FCM with its OAuth token
// endpoint and APNs over HTTP/2 + TLS with a test CA) and at a real SMTP server with STARTTLS (aiosmtpd).
// Keys and certificates are generated at test time. Each test asserts on the bytes the providers received.
#include <gtest/gtest.h>

#include "harness.hpp"
#include "sim_harness.hpp"
#include "required_tool.hpp"

namespace tayori::testing {
namespace {

constexpr const char* kPublicUrl = "http://127.0.0.1:9/gw";
const std::string kDevice = std::string(32, 'a') + std::string(32, 'b');

// Runs Python's own MIME parser (the email package) over one received message: headers decoded, parts listed.
Json parse_mime(const std::string& stored) {
  std::string path = key_dir().file("parse-" + std::to_string(::getpid()) + ".msg");
  write_file(path, stored);
  std::string script =
      "import email, json, sys\n"
      "from email import policy\n"
      "raw = open(sys.argv[1], 'rb').read()\n"
      "meta, data = raw.split(b'\\n\\n', 1)\n"
      "m = email.message_from_bytes(data, policy=policy.default)\n"
      "parts = [{'type': p.get_content_type(), 'charset': p.get_content_charset(), 'text': p.get_content()}\n"
      "         for p in m.walk() if not p.is_multipart()]\n"
      "print(json.dumps({'meta': meta.decode(), 'type': m.get_content_type(), 'subject': str(m['subject']),\n"
      "                  'from': str(m['from']), 'to': str(m['to']), 'message_id': str(m['message-id']),\n"
      "                  'date': str(m['date']), 'list_unsubscribe': m['list-unsubscribe'],\n"
      "                  'list_unsubscribe_post': m['list-unsubscribe-post'], 'parts': parts,\n"
      "                  'crlf_only': b'\\n' not in data.replace(b'\\r\\n', b'')}))\n";
  write_file(path + ".py", script);
  FILE* p = ::popen(("/usr/bin/python3 " + path + ".py " + path).c_str(), "r");
  std::string out;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  ::pclose(p);
  return Json::parse(out, nullptr, false);
}

class Channels : public ::testing::Test {
 protected:
  void SetUp() override {
    TAYORI_REQUIRE_TOOL(test::SmtpServer::available(),
                        "python3-aiosmtpd is not installed (tools/setup.sh installs it)");
    tls_files();
    sim_ = std::make_unique<Sim>(with_fcm(), true);
    smtp_ = std::make_unique<test::SmtpServer>(smtp_with_starttls(dir_.file("maildir")));
    ASSERT_TRUE(smtp_->started()) << "smtp_server.py did not start";
    write_file(dir_.file("service-account.json"),
               Json{{"type", "service_account"}, {"project_id", "tayori-test"}, {"private_key_id", "key-1"},
                    {"private_key", rsa_key("fcm").private_pem}, {"client_email", kClientEmail},
                    {"token_uri", sim_->h2_url("/token")}}
                   .dump());
    write_file(dir_.file("apns.p8"), ec_key("apns").private_pem);
    ::setenv("LINE_TOKEN", kLineToken, 1);
    ::setenv("TWILIO_TOKEN", kTwilioToken, 1);
    ::setenv("LINK_SECRET", "link-secret-for-tests", 1);
    std::string yaml =
        "server:\n  public_url: " + std::string(kPublicUrl) + "\n  link_secret_env: LINK_SECRET\n"
        "outbound:\n  ca_file: " + tls_files() + "\n"
        "channels:\n"
        "  - name: email\n    plugin: email_smtp\n    settings:\n"
        "      url: smtp://127.0.0.1:" + std::to_string(smtp_->port()) + "\n"
        "      from: \"たより <news@tayori.test>\"\n"
        "  - name: sms\n    plugin: sms_twilio\n    settings:\n"
        "      base_url: " + sim_->http_base() + "\n      account_sid: " + kTwilioSid + "\n"
        "      auth_token_env: TWILIO_TOKEN\n      from: \"+15005550006\"\n"
        "  - name: line\n    plugin: line\n    settings:\n"
        "      base_url: " + sim_->http_base() + "\n      channel_access_token_env: LINE_TOKEN\n"
        "  - name: android\n    plugin: push_fcm\n    settings:\n"
        "      base_url: " + sim_->h2_url("") + "\n      service_account: " + dir_.file("service-account.json") + "\n"
        "  - name: ios\n    plugin: push_apns\n    settings:\n"
        "      base_url: " + sim_->h2_url("") + "\n      key_file: " + dir_.file("apns.p8") + "\n"
        "      key_id: " + kApnsKeyId + "\n      team_id: " + kApnsTeam + "\n      topic: " + kTopic + "\n"
        "policy:\n  consent:\n    defaults:\n      transactional: opted_in\n      marketing: opted_in\n";
    gw_ = std::make_unique<Gateway>(dir_, yaml, "", "retry_base: 20ms\nmax_attempts: 4");
    gw_->start();
  }

  Json message(const std::string& id, const std::string& channel, const Json& contacts,
               const std::string& purpose = "transactional") {
    return {{"id", id},
            {"purpose", purpose},
            {"channels", {channel}},
            {"recipient", {{"id", "r-" + id}, {"contacts", contacts}}},
            {"content",
             {{"subject", "秋のおすすめ【限定】"},
              {"title", "ご注文"},
              {"text", "ご注文ありがとうございます。"},
              {"html", "<p>ご注文<b>ありがとうございます</b>。</p>"}}}};
  }

  // Submits and waits for a final state.
  std::string send(const Json& m) {
    HttpResult r = gw_->post_json(http_, "/v1/messages", m);
    EXPECT_EQ(r.status, 202) << r.body;
    std::string id = m["id"], state;
    eventually([&] {
      state = state_of(*gw_, http_, id);
      return state == "delivered" || state == "failed" || state == "suppressed";
    }, std::chrono::seconds(15));
    return state;
  }
  Json status(const std::string& id) { return gw_->get(http_, "/v1/messages/" + id).json(); }

  TempDir dir_;
  std::unique_ptr<Sim> sim_;
  std::unique_ptr<test::SmtpServer> smtp_;
  std::unique_ptr<Gateway> gw_;
  HttpClient http_;
};

TEST_F(Channels, EveryChannelDeliversTheProvidersWireFormat) {
  EXPECT_EQ(send(message("e-1", "email", {{"email", "hanako@tayori.test"}}, "marketing")), "delivered")
      << status("e-1").dump();
  EXPECT_EQ(send(message("s-1", "sms", {{"phone", "+819012345678"}})), "delivered") << status("s-1").dump();
  EXPECT_EQ(send(message("l-1", "line", {{"line", kLineUser}})), "delivered") << status("l-1").dump();
  EXPECT_EQ(send(message("a-1", "android", {{"push", {{{"platform", "fcm"}, {"token", "fcm-token-1"}}}}})), "delivered")
      << status("a-1").dump();
  EXPECT_EQ(send(message("i-1", "ios", {{"push", {{{"platform", "apns"}, {"token", kDevice}}}}})), "delivered")
      << status("i-1").dump();

  // Email: STARTTLS, RFC 2047 subject, multipart/alternative, and RFC 8058 one-click unsubscribe to the gateway.
  auto mail = smtp_->received();
  ASSERT_EQ(mail.size(), 1u);
  Json parsed = parse_mime(mail[0].raw);
  ASSERT_TRUE(parsed.is_object()) << mail[0].raw;
  EXPECT_NE(parsed["meta"].get<std::string>().find("tls: starttls"), std::string::npos) << parsed["meta"];
  EXPECT_NE(parsed["meta"].get<std::string>().find("rcpt: hanako@tayori.test"), std::string::npos);
  EXPECT_EQ(parsed["subject"], "秋のおすすめ【限定】");
  EXPECT_EQ(parsed["from"], "たより <news@tayori.test>");
  EXPECT_EQ(parsed["type"], "multipart/alternative");
  ASSERT_EQ(parsed["parts"].size(), 2u);
  EXPECT_EQ(parsed["parts"][0]["type"], "text/plain");
  EXPECT_EQ(parsed["parts"][0]["charset"], "utf-8");
  EXPECT_NE(parsed["parts"][0]["text"].get<std::string>().find("ご注文ありがとうございます"), std::string::npos);
  EXPECT_EQ(parsed["parts"][1]["type"], "text/html");
  EXPECT_TRUE(parsed["crlf_only"].get<bool>());
  EXPECT_EQ(parsed["list_unsubscribe_post"], "List-Unsubscribe=One-Click");
  std::string unsubscribe = parsed["list_unsubscribe"].is_string() ? parsed["list_unsubscribe"].get<std::string>() : "";
  EXPECT_EQ(unsubscribe.rfind(std::string("<") + kPublicUrl + "/u/", 0), 0u) << unsubscribe;

  // Twilio: form fields, Basic auth, the status callback pointing at the gateway's inbound endpoint.
  Json twilio = sim_->requests("twilio");
  ASSERT_EQ(twilio.size(), 1u);
  EXPECT_EQ(twilio[0]["path"], std::string("/2010-04-01/Accounts/") + kTwilioSid + "/Messages.json");
  std::string form = twilio[0]["body"];
  EXPECT_NE(form.find("To=%2B819012345678"), std::string::npos) << form;
  EXPECT_NE(form.find("StatusCallback=" + std::string("http%3A%2F%2F127.0.0.1%3A9%2Fgw%2Finbound%2Fsms_twilio%2Fsms")),
            std::string::npos)
      << form;

  // LINE: push with the bearer token and a retry key.
  Json line = sim_->requests("line");
  ASSERT_EQ(line.size(), 1u);
  EXPECT_EQ(line[0]["path"], "/v2/bot/message/push");
  EXPECT_EQ(line[0]["headers"]["authorization"], std::string("Bearer ") + kLineToken);
  EXPECT_FALSE(line[0]["headers"].value("x-line-retry-key", "").empty());
  EXPECT_EQ(Json::parse(line[0]["body"].get<std::string>())["to"], kLineUser);

  // FCM: one OAuth grant (signed assertion verified by the simulator), then the send over HTTP/2.
  EXPECT_EQ(sim_->requests("oauth").size(), 1u);
  Json fcm = sim_->requests("fcm");
  ASSERT_EQ(fcm.size(), 1u);
  EXPECT_EQ(fcm[0]["path"], "/v1/projects/tayori-test/messages:send");
  EXPECT_EQ(fcm[0]["http_version"], "2");
  Json fcm_body = Json::parse(fcm[0]["body"].get<std::string>());
  EXPECT_EQ(fcm_body["message"]["token"], "fcm-token-1");
  EXPECT_EQ(fcm_body["message"]["notification"]["title"], "ご注文");

  // APNs: HTTP/2 with the provider token, topic and push type.
  Json apns = sim_->requests("apns");
  ASSERT_EQ(apns.size(), 1u);
  EXPECT_EQ(apns[0]["path"], "/3/device/" + kDevice);
  EXPECT_EQ(apns[0]["http_version"], "2");
  EXPECT_EQ(apns[0]["headers"]["apns-topic"], kTopic);
  EXPECT_EQ(apns[0]["headers"]["apns-push-type"], "alert");
  EXPECT_EQ(apns[0]["headers"]["authorization"].get<std::string>().rfind("bearer ", 0), 0u);
}

TEST_F(Channels, ADeadContactIsDeactivatedSuppressedAndNeverTriedAgain) {
  ASSERT_EQ(sim_->faults({{"provider", "fcm"}, {"unregistered", {"dead-token"}}}).status, 200);
  Json push = {{"push", {{{"platform", "fcm"}, {"token", "dead-token"}}}}};
  EXPECT_EQ(send(message("d-1", "android", push)), "failed");
  Json s = status("d-1");
  bool deactivated = false;
  for (const auto& e : s["events"])
    if (e["type"] == "contact_deactivated") {
      deactivated = true;
      EXPECT_EQ(e["detail"]["contact"], "dead-token");
      EXPECT_NE(e["detail"]["reason"].get<std::string>().find("UNREGISTERED"), std::string::npos) << e;
    }
  EXPECT_TRUE(deactivated) << s.dump();
  EXPECT_EQ(gw_->get(http_, "/v1/suppressions/dead-token").status, 200);
  // The next message to that token never reaches FCM.
  size_t sends = sim_->requests("fcm").size();
  EXPECT_EQ(send(message("d-2", "android", push)), "suppressed");
  EXPECT_EQ(sim_->requests("fcm").size(), sends);
}

TEST_F(Channels, TransientProviderErrorsAreRetriedWithTheSameDeduplicationKey) {
  ASSERT_EQ(sim_->faults({{"provider", "apns"}, {"status", 503}, {"count", 2}}).status, 200);
  ASSERT_EQ(sim_->faults({{"provider", "line"}, {"status", 500}, {"count", 1}}).status, 200);
  EXPECT_EQ(send(message("t-1", "ios", {{"push", {{{"platform", "apns"}, {"token", kDevice}}}}})), "delivered")
      << status("t-1").dump();
  EXPECT_EQ(send(message("t-2", "line", {{"line", kLineUser}})), "delivered") << status("t-2").dump();
  Json apns = sim_->requests("apns");
  ASSERT_EQ(apns.size(), 3u);
  EXPECT_EQ(apns[0]["headers"]["apns-id"], apns[2]["headers"]["apns-id"]);
  Json line = sim_->requests("line");
  ASSERT_EQ(line.size(), 2u);
  EXPECT_EQ(line[0]["headers"]["x-line-retry-key"], line[1]["headers"]["x-line-retry-key"]);

  // Each retry is counted by channel and cause; two 5xx in a row stay below the breaker's threshold.
  std::string metrics = gw_->get(http_, "/metrics").body;
  EXPECT_NE(metrics.find(R"(tayori_retries_total{cause="server_error",channel="ios"} 2)"), std::string::npos) << metrics;
  EXPECT_NE(metrics.find(R"(tayori_retries_total{cause="server_error",channel="line"} 1)"), std::string::npos) << metrics;
  EXPECT_NE(metrics.find(R"(tayori_circuit_state{channel="ios"} 0)"), std::string::npos) << metrics;
  EXPECT_NE(metrics.find("tayori_oldest_due_age_seconds 0"), std::string::npos) << metrics;
}

}  // namespace
}  // namespace tayori::testing
