// The `email_smtp` channel plugin (plugins/email_smtp). Its settings go through the real host
// (config::load_string, build_registry); build() and classify() are driven through the plugin's C descriptor
// on the public fake host (tayori/testing.hpp), as a plugin author's tests drive theirs, since the host's
// channel path cannot send SMTP requests yet. Finally the requests it builds are submitted by the real
// transport to a real SMTP server (tests/support/smtp_server.py, Debian's python3-aiosmtpd) and the replies
// classified.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>
#include <tayori/testing.hpp>

#include <filesystem>
#include <fstream>
#include <future>
#include <map>
#include <sstream>

#include "email_test_support.hpp"
#include "plugin_test_support.hpp"
#include "test_support.hpp"
#include "transport/outbound_transport.hpp"
#include "required_tool.hpp"

namespace tayori::plugin {
namespace {

// In here `testing::` is the gateway-side helpers (plugin_test_support.hpp, tayori::plugin::testing), so the
// public fake host's names are brought in one by one; none of them is declared in tayori::plugin.
using tayori::testing::Delivery;
using tayori::testing::Outcome;
using tayori::testing::Plugin;
using tayori::testing::Request;
using tayori::testing::Response;

constexpr int64_t kNow = 1'767'225'600'000;  // 2026-01-01T00:00:00Z
using testing::kDeliveryId;
using Settings = std::map<std::string, std::string>;

std::optional<config::Config> load(const std::string& settings) {
  testing::OneChannel mail{.name = "mail", .plugin = "email_smtp", .settings = settings};
  return testing::load_config(mail.yaml(), "/tmp", {{"SMTP_PASSWORD", "s3cret"}}).config;
}

// email_smtp.so on the fake host, its clock pinned at kNow, with `settings` as the channel's YAML would give
// them (a secret under its own name: "password", where the YAML says password_env).
Plugin email(const Settings& settings) {
  return Plugin::load(TAYORI_PLUGIN_DIR "/email_smtp.so", settings,
                      [](tayori::testing::FakeHost& host) { host.now_ms = kNow; });
}

// The delivery these tests start from: an order confirmation in Japanese to hanako, transactional.
Delivery mail() {
  Delivery d;
  d.message_id = "m-1";
  d.delivery_id = kDeliveryId;
  d.channel = "mail";
  d.contact = "hanako@example.jp";
  d.content = {
      {"subject", "ご注文の確認"}, {"text", "ありがとうございます。"}, {"html", "<p>ありがとうございます。</p>"}};
  return d;
}

// The one request `d` becomes (an empty one, after a failed expectation, when it becomes anything else).
Request build_one(Plugin& p, const Delivery& d) {
  tayori::testing::Built b = p.build(d);
  EXPECT_EQ(b.status, TAYORI_OK) << b.error;
  EXPECT_EQ(b.requests.size(), 1u);
  return b.requests.empty() ? Request{} : b.requests[0];
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

// What the plugin makes of `answer` to `d`, read from the outcome buffers as the gateway reads them.
Outcome classify(Plugin& p, const Response& answer, const Delivery& d = mail()) {
  Outcome o = p.classify(d, answer);
  EXPECT_EQ(o.status, TAYORI_OK) << o.reason;
  return o;
}

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
  TAYORI_REQUIRE_TOOL(std::system((test::python3() + " -c 'import aiosmtpd' >/dev/null 2>&1").c_str()) == 0,
                      "python3-aiosmtpd is not installed (tools/setup.sh installs it)");
  SmtpServer server({"--reject-rcpt", "gone@example.jp:550", "--reject-rcpt", "busy@example.jp:451"});
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
  auto stored = server.messages();
  ASSERT_EQ(stored.size(), 1u);
  auto got = test::parse_with_python(stored[0]);
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
