// The `email_smtp` channel plugin (plugins/email_smtp). Its settings go through the real host
// (config::load_string, build_registry / check_settings); build() and classify() are driven through the
// plugin's C descriptor with a small fake host, since the host's channel path cannot send SMTP requests yet.
// Finally the requests it builds are submitted by the real transport to a real SMTP server
// (tests/support/smtp_server.py, Debian's python3-aiosmtpd) and the replies classified.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <future>
#include <map>
#include <sstream>

#include "email_test_support.hpp"
#include "plugin/marshal.hpp"
#include "plugin_test_support.hpp"
#include "test_support.hpp"
#include "crypto/crypto.hpp"
#include "transport/outbound_transport.hpp"
#include "required_tool.hpp"

namespace tayori::plugin {
namespace {

constexpr int64_t kNow = 1'767'225'600'000;  // 2026-01-01T00:00:00Z
using testing::kDeliveryId;

std::optional<config::Config> load(const std::string& settings) {
  testing::OneChannel mail{.name = "mail", .plugin = "email_smtp", .settings = settings};
  return testing::load_config(mail.yaml(), "/tmp", {{"SMTP_PASSWORD", "s3cret"}}).config;
}

// What a test delivery carries; turned into a tayori_delivery for the call.
struct TestDelivery {
  std::string delivery_id = kDeliveryId;
  std::string contact = "hanako@example.jp";
  bool marketing = false;
  std::vector<std::pair<std::string, std::string>> content = {
      {"subject", "ご注文の確認"}, {"text", "ありがとうございます。"}, {"html", "<p>ありがとうございます。</p>"}};
  std::string unsubscribe_url;
  uint32_t attempt = 1;
  std::vector<ResponseOption> responses;

  template <class F>
  auto with_raw(F&& use) const {
    std::vector<tayori_kv> kv;
    for (auto& [k, v] : content) kv.push_back({{k.data(), k.size()}, {v.data(), v.size()}});
    auto s = [](const std::string& v) { return tayori_str{v.data(), v.size()}; };
    static const std::string message_id = "m-1", channel = "mail", meta = "{}";
    tayori_delivery d{};
    d.struct_size = sizeof d;
    d.message_id = s(message_id);
    d.delivery_id = s(delivery_id);
    d.attempt = attempt;
    d.channel = s(channel);
    d.contact = s(contact);
    d.purpose = marketing ? TAYORI_PURPOSE_MARKETING : TAYORI_PURPOSE_TRANSACTIONAL;
    d.content = kv.data();
    d.content_count = kv.size();
    d.metadata_json = s(meta);
    d.unsubscribe_url = s(unsubscribe_url);
    std::vector<tayori_response_option> options;
    for (auto& o : responses) options.push_back({s(o.id), s(o.label), s(o.ref), s(o.url)});
    d.responses = options.data();
    d.response_count = options.size();
    return use(static_cast<const tayori_delivery*>(&d));
  }
};

// A request as the plugin handed it to the sink, copied.
struct Built {
  tayori_request_kind kind;
  std::string method, url, body, mail_from, username, password;
  std::vector<std::string> rcpt;
  size_t header_count = 0;
  bool allow_plaintext = false;
};

std::string text(tayori_str s) { return s.len ? std::string(s.data, s.len) : std::string(); }

// The plugin through its descriptor, with a fake host: a pinned clock, base64 from the gateway's crypto,
// and a log that is kept for inspection.
class FakeHostPlugin {
 public:
  explicit FakeHostPlugin(const std::string& settings) {
    std::string error;
    library_ = Library::open(TAYORI_PLUGIN_DIR "/email_smtp.so", error);
    EXPECT_TRUE(library_) << error;
    if (!library_) return;
    host_.struct_size = sizeof host_;
    host_.abi_major = TAYORI_ABI_MAJOR;
    host_.abi_minor = TAYORI_ABI_MINOR;
    host_.host_ctx = this;
    host_.host_log = [](void* ctx, tayori_log_level level, tayori_str message) {
      static_cast<FakeHostPlugin*>(ctx)->logs.emplace_back(level, text(message));
    };
    host_.host_now_ms = [](void* ctx) { return static_cast<FakeHostPlugin*>(ctx)->now; };
    host_.host_base64 = [](void*, tayori_str bytes, int url_safe, tayori_out out) {
      std::string v = url_safe ? crypto::base64url_encode(text(bytes)) : crypto::base64_encode(text(bytes));
      out.write(out.out_ctx, {v.data(), v.size()});
    };
    auto config = load(settings);
    if (!config) return;
    std::vector<config::Diagnostic> errors;
    auto values = check_settings(*config, config->channels.at(0), library_->descriptor(), errors);
    EXPECT_TRUE(errors.empty()) << errors.at(0).to_string();
    std::vector<tayori_kv> kv;
    for (auto& [k, v] : values) kv.push_back({{k.data(), k.size()}, {v.data(), v.size()}});
    char buf[512] = {0};
    EXPECT_EQ(library_->descriptor().on_create(&host_, kv.data(), kv.size(), &instance_, {buf, sizeof buf}), TAYORI_OK)
        << buf;
  }
  ~FakeHostPlugin() {
    if (instance_) library_->descriptor().on_destroy(instance_);
  }
  bool ready() const { return instance_ != nullptr; }

  struct BuildResult {
    tayori_status status;
    std::string error;
    std::vector<Built> requests;
  };
  BuildResult build(const TestDelivery& d) {
    BuildResult r;
    tayori_request_sink sink{&r.requests, [](void* ctx, const tayori_request* q) -> tayori_status {
                               Built b;
                               b.kind = q->kind;
                               b.method = text(q->method);
                               b.url = text(q->url);
                               b.body = text(q->body);
                               b.mail_from = text(q->mail_from);
                               for (size_t i = 0; i < q->mail_rcpt_count; ++i) b.rcpt.push_back(text(q->mail_rcpt[i]));
                               b.header_count = q->header_count;
                               b.username = text(q->username);
                               b.password = text(q->password);
                               b.allow_plaintext = q->allow_plaintext != 0;
                               static_cast<std::vector<Built>*>(ctx)->push_back(std::move(b));
                               return TAYORI_OK;
                             }};
    char buf[512] = {0};
    r.status = d.with_raw([&](const tayori_delivery* raw) {
      return library_->descriptor().on_build(instance_, raw, &sink, {buf, sizeof buf});
    });
    r.error = buf;
    return r;
  }
  Built build_one(const TestDelivery& d) {
    BuildResult r = build(d);
    EXPECT_EQ(r.status, TAYORI_OK) << r.error;
    EXPECT_EQ(r.requests.size(), 1u);
    return r.requests.empty() ? Built{} : r.requests[0];
  }

  DeliveryOutcome classify(const TestDelivery& d, int transport_error, const std::string& error_text, int status,
                           const std::string& body) {
    tayori_response resp{};
    resp.struct_size = sizeof resp;
    resp.transport_error = transport_error;
    resp.transport_error_text = {error_text.data(), error_text.size()};
    resp.status = status;
    resp.body = {body.data(), body.size()};
    // The host's buffers and its reading of them: what the gateway would make of this answer.
    OutcomeBuffers buffers;
    tayori_status st = d.with_raw([&](const tayori_delivery* raw) {
      return library_->descriptor().on_classify(instance_, raw, &resp, &buffers.out);
    });
    EXPECT_EQ(st, TAYORI_OK);
    return to_outcome(st, buffers.out);
  }

  int64_t now = kNow;
  std::vector<std::pair<tayori_log_level, std::string>> logs;

 private:
  std::shared_ptr<Library> library_;
  tayori_host host_{};
  void* instance_ = nullptr;
};

const std::string kBasic =
    "      url: smtps://smtp.example.com:465\n      from: \"たより <news@example.com>\"\n";

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
}

// ---- build() --------------------------------------------------------------------------------------------

TEST(EmailPluginBuild, TheRequestIsOneSmtpSubmissionWithTheWholeMessage) {
  FakeHostPlugin p(kBasic + "      reply_to: support@example.com\n      username: mailer\n"
                            "      password_env: SMTP_PASSWORD\n");
  ASSERT_TRUE(p.ready());
  Built r = p.build_one(TestDelivery{});
  EXPECT_EQ(r.kind, TAYORI_REQUEST_SMTP);
  EXPECT_EQ(r.url, "smtps://smtp.example.com:465");
  EXPECT_EQ(r.method, "");
  EXPECT_EQ(r.header_count, 0u);  // headers belong in the message
  EXPECT_EQ(r.mail_from, "news@example.com");
  EXPECT_EQ(r.rcpt, std::vector<std::string>{"hanako@example.jp"});
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
  FakeHostPlugin p(kBasic + "      message_id_domain: mail.example.net\n");
  ASSERT_TRUE(p.ready());
  TestDelivery d;
  auto first = test::parse_with_python(p.build_one(d).body);
  d.attempt = 2;
  p.now = kNow + 60'000;
  auto retry = test::parse_with_python(p.build_one(d).body);
  EXPECT_EQ(first["message_id"], std::string("<tayori.") + kDeliveryId + "@mail.example.net>");
  EXPECT_EQ(retry["message_id"], first["message_id"]);
  EXPECT_EQ(retry["date_epoch"], (kNow + 60'000) / 1000);
  d.delivery_id = "another-delivery";
  EXPECT_NE(test::parse_with_python(p.build_one(d).body)["message_id"], first["message_id"]);
}

TEST(EmailPluginBuild, MarketingMailCarriesOneClickUnsubscribeAndTransactionalNever) {
  FakeHostPlugin p(kBasic + "      unsubscribe_mailto: unsubscribe@example.com\n");
  ASSERT_TRUE(p.ready());
  TestDelivery marketing;
  marketing.marketing = true;
  marketing.unsubscribe_url = "https://gw.example.com/u/signed.token";
  auto got = test::parse_with_python(p.build_one(marketing).body);
  EXPECT_EQ(got["list_unsubscribe"], "<https://gw.example.com/u/signed.token>, <mailto:unsubscribe@example.com>");
  EXPECT_EQ(got["list_unsubscribe_post"], "List-Unsubscribe=One-Click");  // RFC 8058 §3.1

  TestDelivery transactional = marketing;
  transactional.marketing = false;  // even if a URL were given, a receipt offers no opt-out of itself
  auto tx = test::parse_with_python(p.build_one(transactional).body);
  EXPECT_EQ(tx["list_unsubscribe"], nullptr);
  EXPECT_EQ(tx["list_unsubscribe_post"], nullptr);
}

TEST(EmailPluginBuild, MarketingWithoutAnUnsubscribeUrlIsRefusedUnlessAllowed) {
  TestDelivery d;
  d.marketing = true;
  FakeHostPlugin strict(kBasic);
  ASSERT_TRUE(strict.ready());
  auto refused = strict.build(d);
  EXPECT_EQ(refused.status, TAYORI_ERROR);
  EXPECT_TRUE(refused.requests.empty());
  EXPECT_NE(refused.error.find("unsubscribe_url: marketing mail needs a one-click unsubscribe link"), std::string::npos)
      << refused.error;

  FakeHostPlugin lenient(kBasic + "      require_unsubscribe: false\n      unsubscribe_mailto: "
                                  "\"mailto:unsubscribe@example.com?subject=stop\"\n");
  ASSERT_TRUE(lenient.ready());
  auto got = test::parse_with_python(lenient.build_one(d).body);
  EXPECT_EQ(got["list_unsubscribe"], "<mailto:unsubscribe@example.com?subject=stop>");
  EXPECT_EQ(got["list_unsubscribe_post"], nullptr);  // one-click needs the https target
  ASSERT_EQ(lenient.logs.size(), 1u);
  EXPECT_EQ(lenient.logs[0].first, TAYORI_LOG_WARN);
  EXPECT_NE(lenient.logs[0].second.find("one-click unsubscribe"), std::string::npos);
}

// Response options: one link per option after the body, in both parts; in HTML before </body> when there is
// one, escaped. An option without a url (no public URL configured) cannot be offered by mail.
TEST(EmailPluginBuild, ResponseOptionsBecomeALinkPerOptionInEachPart) {
  FakeHostPlugin p(kBasic);
  ASSERT_TRUE(p.ready());
  TestDelivery d;
  d.responses = testing::sample_responses();
  d.responses[2].label = "興味<なし>";
  d.content = {{"subject", "ご案内"}, {"text", "新商品です。"}, {"html", "<html><body><p>新商品です。</p></body></html>"}};
  auto got = test::parse_with_python(p.build_one(d).body);
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

  TestDelivery text_only = d;
  text_only.content = {{"subject", "ご案内"}, {"text", "新商品です。"}};
  auto plain = test::parse_with_python(p.build_one(text_only).body);
  EXPECT_EQ(plain["content_type"], "text/plain");

  TestDelivery no_links = d;
  for (auto& o : no_links.responses) o.url.clear();
  auto refused = p.build(no_links);
  EXPECT_EQ(refused.status, TAYORI_ERROR);
  EXPECT_TRUE(refused.requests.empty());
  EXPECT_NE(refused.error.find("responses[0].url"), std::string::npos) << refused.error;
}

TEST(EmailPluginBuild, ContentAndContactProblemsAreRefusedBeforeSending) {
  FakeHostPlugin p(kBasic);
  ASSERT_TRUE(p.ready());
  struct Case {
    std::vector<std::pair<std::string, std::string>> content;
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
    TestDelivery d;
    d.content = c.content;
    d.contact = c.contact;
    auto r = p.build(d);
    SCOPED_TRACE(c.error);
    EXPECT_EQ(r.status, TAYORI_ERROR);
    EXPECT_TRUE(r.requests.empty());
    EXPECT_NE(r.error.find(c.error), std::string::npos) << r.error;
  }
  TestDelivery text_only;
  text_only.content = {{"subject", "Plain"}, {"text", "Hello"}};
  auto got = test::parse_with_python(p.build_one(text_only).body);
  EXPECT_EQ(got["content_type"], "text/plain");
  EXPECT_EQ(got["subject"], "Plain");
}

// ---- classify() -----------------------------------------------------------------------------------------

TEST(EmailPluginClassify, SmtpRepliesBecomeOutcomes) {
  FakeHostPlugin p(kBasic);
  ASSERT_TRUE(p.ready());
  const std::string message_id = std::string("<tayori.") + kDeliveryId + "@example.com>";
  struct Case {
    int transport_error;
    std::string error_text;
    int status;
    std::string body;
    OutcomeKind kind;
    std::string reason;
    bool deactivate;
  };
  const Case cases[] = {
      {0, "", 250, "250 2.0.0 Ok: queued as 4F2A", OutcomeKind::delivered, "", false},
      {7, "Failed to connect to smtp.example.com port 465: Connection refused", 0, "", OutcomeKind::retry,
       "smtp.transport: Failed to connect to smtp.example.com port 465: Connection refused", false},
      {0, "", 0, "", OutcomeKind::retry, "smtp.no_reply", false},
      // Hard bounces: the address is dead (RFC 3463 X.1.1 / X.1.2 / X.1.3 / X.1.6 / X.1.10).
      {0, "RCPT failed: 550 (server: 550 5.1.1 <x@example.jp>: user unknown)", 550,
       "550 5.1.1 <x@example.jp>: user unknown", OutcomeKind::permanent, "smtp.550: 5.1.1 <x@example.jp>: user unknown",
       true},
      {0, "", 550, "550-5.1.1 The email account that you tried to reach does not exist.\r\n550 5.1.1 Please check",
       OutcomeKind::permanent, "smtp.550: 5.1.1 Please check", true},
      {0, "", 553, "553 5.1.3 Bad recipient address syntax", OutcomeKind::permanent,
       "smtp.553: 5.1.3 Bad recipient address syntax", true},
      {0, "", 556, "556 5.1.10 Recipient address has null MX", OutcomeKind::permanent,
       "smtp.556: 5.1.10 Recipient address has null MX", true},
      // Without an enhanced code, RFC 5321 basic codes 550 / 551 / 553 on RCPT.
      {0, "RCPT failed: 550", 550, "550 Mailbox unavailable", OutcomeKind::permanent, "smtp.550: Mailbox unavailable",
       true},
      {0, "", 551, "551 User not local", OutcomeKind::permanent, "smtp.551: User not local", true},
      {0, "", 553, "553 Requested action not taken", OutcomeKind::permanent, "smtp.553: Requested action not taken",
       true},
      // Permanent, but not the address's fault.
      {0, "MAIL failed: 550", 550, "550 Sender rejected", OutcomeKind::permanent, "smtp.550: Sender rejected", false},
      {0, "", 550, "550 5.7.1 Message rejected as spam", OutcomeKind::permanent,
       "smtp.550: 5.7.1 Message rejected as spam", false},
      {0, "", 550, "550 5.1.8 Sender address rejected: Domain not found", OutcomeKind::permanent,
       "smtp.550: 5.1.8 Sender address rejected: Domain not found", false},
      {0, "", 554, "554 5.7.1 Message rejected as spam", OutcomeKind::permanent,
       "smtp.554: 5.7.1 Message rejected as spam", false},
      {0, "", 552, "552 5.3.4 Message size exceeds fixed limit", OutcomeKind::permanent,
       "smtp.552: 5.3.4 Message size exceeds fixed limit", false},
      {0, "", 550, "550 5.2.1 The email account that you tried to reach is disabled", OutcomeKind::permanent,
       "smtp.550: 5.2.1 The email account that you tried to reach is disabled", false},
      {0, "Login denied (server: 535 5.7.8 Authentication credentials invalid)", 535,
       "535 5.7.8 Authentication credentials invalid", OutcomeKind::permanent,
       "smtp.535: 5.7.8 Authentication credentials invalid", false},
      // Transient (RFC 5321 §4.2.1).
      {0, "", 421, "421 4.7.0 Try again later, closing connection", OutcomeKind::retry,
       "smtp.421: 4.7.0 Try again later, closing connection", false},
      {0, "RCPT failed: 451", 451, "451 4.3.0 <x@example.jp>: Temporary failure", OutcomeKind::retry,
       "smtp.451: 4.3.0 <x@example.jp>: Temporary failure", false},
      {0, "", 452, "452 4.2.2 Mailbox full", OutcomeKind::retry, "smtp.452: 4.2.2 Mailbox full", false},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(std::to_string(c.status) + " " + c.body);
    DeliveryOutcome o = p.classify(TestDelivery{}, c.transport_error, c.error_text, c.status, c.body);
    EXPECT_EQ(o.kind, c.kind) << o.reason;
    EXPECT_EQ(o.reason, c.reason);
    EXPECT_EQ(o.deactivate_contact, c.deactivate);
    EXPECT_EQ(o.provider_message_id, c.kind == OutcomeKind::delivered ? message_id : "");
  }
}

// ---- Against a real SMTP server -----------------------------------------------------------------------

// tests/support/smtp_server.py without TLS (allow_plaintext on loopback), as a child process.
class SmtpServer {
 public:
  explicit SmtpServer(const std::vector<std::string>& options) {
    int out[2], in[2];
    if (::pipe(out) != 0 || ::pipe(in) != 0) return;
    std::vector<std::string> argv = {test::python3(), std::string(TAYORI_TEST_SUPPORT_DIR) + "/smtp_server.py",
                                     "--maildir", dir_.path()};
    argv.insert(argv.end(), options.begin(), options.end());
    pid_ = ::fork();
    if (pid_ == 0) {
      ::dup2(out[1], STDOUT_FILENO);
      ::dup2(in[0], STDIN_FILENO);
      for (int fd : {out[0], out[1], in[0], in[1]}) ::close(fd);
      std::vector<char*> args;
      for (auto& a : argv) args.push_back(a.data());
      args.push_back(nullptr);
      ::execvp(args[0], args.data());
      ::_exit(127);
    }
    ::close(out[1]);
    ::close(in[0]);
    stdin_ = in[1];
    FILE* f = ::fdopen(out[0], "r");
    char line[64] = {0};
    if (f && std::fgets(line, sizeof line, f)) port_ = std::atoi(line);
    if (f) std::fclose(f);
  }
  ~SmtpServer() {
    if (stdin_ >= 0) ::close(stdin_);  // the server exits at end of input as well
    if (pid_ > 0) {
      ::kill(pid_, SIGTERM);
      int status = 0;
      ::waitpid(pid_, &status, 0);
    }
  }
  int port() const { return port_; }
  // The DATA of every stored message, in arrival order.
  std::vector<std::string> messages() const {
    std::vector<std::string> names;
    for (auto& e : std::filesystem::directory_iterator(dir_.path()))
      if (e.path().extension() == ".msg") names.push_back(e.path().string());
    std::sort(names.begin(), names.end());
    std::vector<std::string> out;
    for (auto& n : names) {
      std::ifstream f(n, std::ios::binary);
      std::string all((std::istreambuf_iterator<char>(f)), {});
      size_t blank = all.find("\n\n");
      out.push_back(blank == std::string::npos ? all : all.substr(blank + 2));
    }
    return out;
  }

 private:
  test::TempDir dir_{"tayori_smtp_"};
  pid_t pid_ = -1;
  int stdin_ = -1;
  int port_ = 0;
};

// What the host transport answers to a built SMTP request, as the channel would submit it.
transport::Response submit(transport::OutboundTransport& transport, const Built& b) {
  transport::Request req;
  req.kind = transport::RequestKind::Smtp;
  req.url = b.url;
  req.body = b.body;
  req.mail_from = b.mail_from;
  req.mail_rcpt = b.rcpt;
  req.username = b.username;
  req.password = b.password;
  req.allow_plaintext = b.allow_plaintext;
  std::promise<transport::Response> done;
  auto answer = done.get_future();
  transport.submit(req, [&done](transport::Response r) { done.set_value(std::move(r)); });
  return answer.get();
}

TEST(EmailPluginSmtp, BuiltMessagesAreAcceptedAndBouncesClassified) {
  TAYORI_REQUIRE_TOOL(std::system((test::python3() + " -c 'import aiosmtpd' >/dev/null 2>&1").c_str()) == 0,
                      "python3-aiosmtpd is not installed (tools/setup.sh installs it)");
  SmtpServer server({"--reject-rcpt", "gone@example.jp:550", "--reject-rcpt", "busy@example.jp:451"});
  ASSERT_GT(server.port(), 0) << "smtp_server.py did not start";
  FakeHostPlugin p("      url: smtp://127.0.0.1:" + std::to_string(server.port()) +
                   "\n      from: \"たより <news@example.com>\"\n      allow_plaintext: true\n");
  ASSERT_TRUE(p.ready());
  transport::OutboundTransport transport{transport::TransportOptions{}};
  auto send = [&](FakeHostPlugin& plugin, const TestDelivery& d) {
    transport::Response r = submit(transport, plugin.build_one(d));
    return plugin.classify(d, r.transport_error, r.error_text, r.status, r.body);
  };

  DeliveryOutcome ok = send(p, TestDelivery{});
  EXPECT_EQ(ok.kind, OutcomeKind::delivered) << ok.reason;
  EXPECT_EQ(ok.provider_message_id, std::string("<tayori.") + kDeliveryId + "@example.com>");
  auto stored = server.messages();
  ASSERT_EQ(stored.size(), 1u);
  auto got = test::parse_with_python(stored[0]);
  EXPECT_EQ(got["defects"], nlohmann::json::array());
  EXPECT_EQ(got["subject"], "ご注文の確認");
  EXPECT_EQ(got["from"]["name"], "たより");
  EXPECT_EQ(got["parts"][1]["content"], "<p>ありがとうございます。</p>");

  TestDelivery gone;
  gone.contact = "gone@example.jp";
  DeliveryOutcome bounced = send(p, gone);
  EXPECT_EQ(bounced.kind, OutcomeKind::permanent);
  EXPECT_EQ(bounced.reason.rfind("smtp.550: 5.1.1 ", 0), 0u) << bounced.reason;
  EXPECT_TRUE(bounced.deactivate_contact);

  TestDelivery busy;
  busy.contact = "busy@example.jp";
  DeliveryOutcome later = send(p, busy);
  EXPECT_EQ(later.kind, OutcomeKind::retry);
  EXPECT_EQ(later.reason.rfind("smtp.451: 4.3.0 ", 0), 0u) << later.reason;

  FakeHostPlugin closed("      url: smtp://127.0.0.1:1\n      from: news@example.com\n      allow_plaintext: true\n");
  ASSERT_TRUE(closed.ready());
  DeliveryOutcome refused = send(closed, TestDelivery{});
  EXPECT_EQ(refused.kind, OutcomeKind::retry);
  EXPECT_EQ(refused.reason.rfind("smtp.transport: ", 0), 0u) << refused.reason;
}

}  // namespace
}  // namespace tayori::plugin
