// SMTP submission through OutboundTransport against a real SMTP server: Debian's python3-aiosmtpd, run by
// tests/support/smtp_server.hpp on 127.0.0.1 port 0 as a child process, with a test CA and server
// certificates made at test time by the openssl CLI (never committed). The server writes each accepted
// message (envelope, TLS mode, AUTH user, raw DATA) to a folder, so the tests check what actually arrived.
#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <curl/curl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <future>
#include <memory>
#include <mutex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "required_tool.hpp"
#include "smtp_server.hpp"
#include "test_support.hpp"
#include "transport/outbound_transport.hpp"

namespace tayori::transport {
namespace {

using namespace std::chrono_literals;
namespace fs = std::filesystem;

using test::SmtpServer;

// Runs openssl; true on success.
bool sh(const std::string& cmd) { return std::system((cmd + " >/dev/null 2>&1").c_str()) == 0; }

// A test CA, a server certificate it signs for 127.0.0.1 / localhost, and a self-signed "rogue" server
// certificate for the same names that the CA has never seen. Made once for the whole suite.
struct Certificates {
  test::TempDir dir{"tayori_smtp_pki_"};
  bool ok = false;
  std::string ca, cert, key, rogue_cert, rogue_key;

  Certificates() {
    const std::string ec = " -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
    ca = dir.file("ca.pem");
    cert = dir.file("server.pem");
    key = dir.file("server.key");
    rogue_cert = dir.file("rogue.pem");
    rogue_key = dir.file("rogue.key");
    std::ofstream(dir.file("server.ext")) << "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
                                             "extendedKeyUsage=serverAuth\n";
    ok = sh("openssl req -x509" + ec + " -days 1 -subj '/CN=Tayori Test CA'"
            " -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign"
            " -keyout " + dir.file("ca.key") + " -out " + ca) &&
         sh("openssl req -new" + ec + " -subj /CN=localhost -keyout " + key + " -out " + dir.file("server.csr")) &&
         sh("openssl x509 -req -days 1 -in " + dir.file("server.csr") + " -CA " + ca + " -CAkey " +
            dir.file("ca.key") + " -CAcreateserial -CAserial " + dir.file("ca.srl") + " -extfile " +
            dir.file("server.ext") + " -out " + cert) &&
         sh("openssl req -x509" + ec + " -days 1 -subj /CN=localhost"
            " -addext subjectAltName=IP:127.0.0.1,DNS:localhost -keyout " + rogue_key + " -out " + rogue_cert);
  }
};

// A well-formed RFC 5322 message (CRLF line ends) with a unique marker.
std::string message(const std::string& marker) {
  return "From: Tayori <noreply@tayori.test>\r\n"
         "To: hanako@example.jp\r\n"
         "Subject: =?UTF-8?B?44GU5rOo5paH44GC44KK44GM44Go44GG44GU44GW44GE44G+44GZ?=\r\n"
         "Message-ID: <" + marker + "@tayori.test>\r\n"
         "MIME-Version: 1.0\r\n"
         "Content-Type: text/plain; charset=UTF-8\r\n"
         "\r\n"
         "注文番号 " + marker + "\r\n";
}

Request smtp_request(const std::string& url, const std::string& marker) {
  Request r;
  r.kind = RequestKind::Smtp;
  r.url = url;
  r.mail_from = "noreply@tayori.test";
  r.mail_rcpt = {"hanako@example.jp"};
  r.body = message(marker);
  r.timeout_ms = 5000;
  return r;
}

// Submits and waits for the completion (shared, so a completion after a timed-out wait lands safely).
Response send(OutboundTransport& transport, Request request) {
  auto answered = std::make_shared<std::promise<Response>>();
  auto future = answered->get_future();
  transport.submit(std::move(request), [answered](Response r) { answered->set_value(std::move(r)); });
  if (future.wait_for(20s) != std::future_status::ready) {
    ADD_FAILURE() << "no completion within 20 s";
    return {};
  }
  return future.get();
}

uint16_t closed_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  EXPECT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0) << std::strerror(errno);
  socklen_t len = sizeof addr;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  ::close(fd);
  return ntohs(addr.sin_port);
}

class SmtpTransport : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (SmtpServer::available()) pki_ = new Certificates();
  }
  static void TearDownTestSuite() {
    delete pki_;
    pki_ = nullptr;
  }
  void SetUp() override {
    TAYORI_REQUIRE_TOOL(SmtpServer::available(), "python3-aiosmtpd is not installed for "
                                                     << SmtpServer::kPython << " (tools/setup.sh installs it)");
    ASSERT_TRUE(pki_ && pki_->ok) << "openssl could not make the test certificates";
  }
  // Starts smtp_server.py with `options`; fails the test when it does not come up.
  std::unique_ptr<SmtpServer> start(const std::string& name, std::vector<std::string> options) {
    auto server = std::make_unique<SmtpServer>(
        SmtpServer::Options{dir_.file(name + "-mail"), std::move(options), dir_.file(name + ".stderr")});
    EXPECT_TRUE(server->started()) << "smtp_server.py did not start:\n" << server->stderr_text();
    return server->started() ? std::move(server) : nullptr;
  }
  std::vector<std::string> starttls() const { return {"--starttls", pki_->cert, pki_->key}; }
  TransportOptions trusting_test_ca() const {
    TransportOptions o;
    o.ca_file = pki_->ca;
    return o;
  }

  static Certificates* pki_;
  test::TempDir dir_{"tayori_smtp_"};
};
Certificates* SmtpTransport::pki_ = nullptr;

// 1. STARTTLS (RFC 3207) on smtp://, verified against the test CA; the exact bytes and envelope arrive.
TEST_F(SmtpTransport, StartTlsDeliversExactBytesAndEnvelope) {
  auto server = start("starttls", starttls());
  ASSERT_TRUE(server);
  OutboundTransport transport(trusting_test_ca());
  Request req = smtp_request(server->url() + "/mta.tayori.test", "m1");  // the path names the EHLO domain
  req.mail_rcpt = {"hanako@example.jp", "<taro@example.jp>"};
  Response r = send(transport, req);
  EXPECT_EQ(r.transport_error, 0) << r.error_text;
  EXPECT_EQ(r.status, 250);
  EXPECT_TRUE(r.ok());
  EXPECT_EQ(r.body, "250 2.0.0 Ok: queued as T000001");
  EXPECT_EQ(r.error_text, "");
  EXPECT_TRUE(r.headers.empty());
  EXPECT_EQ(r.http_version_used, "");
  EXPECT_EQ(r.new_connections, 1);

  auto got = server->received();
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].tls, "starttls");
  EXPECT_EQ(got[0].from, "noreply@tayori.test");
  EXPECT_EQ(got[0].rcpt, (std::vector<std::string>{"hanako@example.jp", "taro@example.jp"}));
  EXPECT_EQ(got[0].ehlo, "mta.tayori.test");
  EXPECT_EQ(got[0].auth, "");
  EXPECT_EQ(got[0].data, req.body);
}

// 2. No STARTTLS offered: refused without a byte of the message unless plaintext is allowed; and a
//    plaintext connection is never handed to a later request that requires TLS.
TEST_F(SmtpTransport, NoStartTlsRefusedUnlessPlaintextAllowed) {
  auto server = start("plain", {});
  ASSERT_TRUE(server);
  OutboundTransport transport(trusting_test_ca());

  Response refused = send(transport, smtp_request(server->url(), "strict-1"));
  EXPECT_EQ(refused.transport_error, CURLE_USE_SSL_FAILED) << refused.error_text;
  EXPECT_EQ(refused.status, 0);
  EXPECT_FALSE(refused.ok());
  EXPECT_TRUE(server->received().empty());

  Request plain = smtp_request(server->url(), "plain");
  plain.allow_plaintext = true;
  Response delivered = send(transport, plain);
  EXPECT_EQ(delivered.transport_error, 0) << delivered.error_text;
  EXPECT_EQ(delivered.status, 250);

  Response again = send(transport, smtp_request(server->url(), "strict-2"));
  EXPECT_EQ(again.transport_error, CURLE_USE_SSL_FAILED) << again.error_text;

  auto got = server->received();
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].tls, "none");
  EXPECT_EQ(got[0].data, plain.body);
}

// 3. smtps:// is TLS from the first byte (RFC 8314 §3.3).
TEST_F(SmtpTransport, ImplicitTlsDelivers) {
  auto server = start("smtps", {"--implicit-tls", pki_->cert, pki_->key});
  ASSERT_TRUE(server);
  OutboundTransport transport(trusting_test_ca());
  Request req = smtp_request(server->url("smtps"), "m3");
  Response r = send(transport, req);
  EXPECT_EQ(r.transport_error, 0) << r.error_text;
  EXPECT_EQ(r.status, 250);
  auto got = server->received();
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].tls, "implicit");
  EXPECT_EQ(got[0].data, req.body);
}

// 4. AUTH (RFC 4954): right credentials deliver; wrong ones are the server's 535 -- a verdict, not a
//    transport error -- which a caller tells apart from a connection that never happened.
TEST_F(SmtpTransport, AuthFailureIsTheServersVerdict) {
  auto server = start("auth", {"--starttls", pki_->cert, pki_->key, "--auth", "tayori:s3cret"});
  ASSERT_TRUE(server);
  OutboundTransport transport(trusting_test_ca());

  Request good = smtp_request(server->url(), "auth-ok");
  good.username = "tayori";
  good.password = "s3cret";
  Response ok = send(transport, good);
  EXPECT_EQ(ok.transport_error, 0) << ok.error_text;
  EXPECT_EQ(ok.status, 250);

  Request bad = good;
  bad.password = "wrong";
  Response denied = send(transport, bad);
  EXPECT_EQ(denied.transport_error, 0) << denied.error_text;
  EXPECT_EQ(denied.status, 535);
  EXPECT_FALSE(denied.ok());
  EXPECT_NE(denied.body.find("535 5.7.8"), std::string::npos) << denied.body;
  EXPECT_NE(denied.error_text.find("535"), std::string::npos) << denied.error_text;

  Response anonymous = send(transport, smtp_request(server->url(), "no-auth"));  // the server requires AUTH
  EXPECT_EQ(anonymous.transport_error, 0) << anonymous.error_text;
  EXPECT_EQ(anonymous.status, 530);

  Response unreachable = send(transport, smtp_request("smtp://127.0.0.1:" + std::to_string(closed_port()), "x"));
  EXPECT_EQ(unreachable.transport_error, CURLE_COULDNT_CONNECT) << unreachable.error_text;
  EXPECT_EQ(unreachable.status, 0);

  auto got = server->received();
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].auth, "tayori");
  EXPECT_EQ(got[0].data, good.body);
}

// 5. RCPT refusals keep their reply code (RFC 5321 §4.2.1: 5yz permanent, 4yz transient) and text.
TEST_F(SmtpTransport, RcptRefusalKeepsReplyCodeAndText) {
  auto opts = starttls();
  opts.insert(opts.end(), {"--reject-rcpt", "gone@example.jp:550", "--reject-rcpt", "busy@example.jp:451"});
  auto server = start("reject", opts);
  ASSERT_TRUE(server);
  OutboundTransport transport(trusting_test_ca());

  Request gone = smtp_request(server->url(), "gone");
  gone.mail_rcpt = {"gone@example.jp"};
  Response permanent = send(transport, gone);
  EXPECT_EQ(permanent.transport_error, 0) << permanent.error_text;
  EXPECT_EQ(permanent.status, 550);
  EXPECT_EQ(permanent.body, "550 5.1.1 <gone@example.jp>: Recipient address rejected: user unknown");
  EXPECT_NE(permanent.error_text.find("RCPT"), std::string::npos) << permanent.error_text;
  EXPECT_NE(permanent.error_text.find("550 5.1.1"), std::string::npos) << permanent.error_text;

  Request busy = smtp_request(server->url(), "busy");
  busy.mail_rcpt = {"busy@example.jp"};
  Response transient = send(transport, busy);
  EXPECT_EQ(transient.transport_error, 0) << transient.error_text;
  EXPECT_EQ(transient.status, 451);
  EXPECT_NE(transient.body.find("4.3.0"), std::string::npos) << transient.body;

  // Recipients are all-or-nothing: one refused recipient ends the transaction for all of them.
  Request mixed = smtp_request(server->url(), "mixed");
  mixed.mail_rcpt = {"hanako@example.jp", "gone@example.jp"};
  EXPECT_EQ(send(transport, mixed).status, 550);
  EXPECT_TRUE(server->received().empty());

  // The connection is still good for the next message.
  Response fine = send(transport, smtp_request(server->url(), "fine"));
  EXPECT_EQ(fine.status, 250) << fine.error_text;
  EXPECT_EQ(server->received().size(), 1u);
}

// 5b. A refusal after the message was sent (the reply to the end of data, RFC 5321 §4.1.1.4) is a
//     verdict too: content filters and size limits answer there.
TEST_F(SmtpTransport, EndOfDataRefusalKeepsReplyCode) {
  auto opts = starttls();
  opts.insert(opts.end(), {"--reject-data", "554"});
  auto server = start("reject-data", opts);
  ASSERT_TRUE(server);
  OutboundTransport transport(trusting_test_ca());
  Response r = send(transport, smtp_request(server->url(), "spam"));
  EXPECT_EQ(r.transport_error, 0) << r.error_text;
  EXPECT_EQ(r.status, 554);
  EXPECT_FALSE(r.ok());
  EXPECT_EQ(r.body, "554 5.7.1 Message rejected as spam");
  EXPECT_NE(r.error_text.find("554 5.7.1"), std::string::npos) << r.error_text;
  EXPECT_TRUE(server->received().empty());
}

// 6. The server certificate must chain to the configured CA, on STARTTLS and on implicit TLS alike.
TEST_F(SmtpTransport, CertificateNotFromConfiguredCaIsRefused) {
  auto upgrade = start("rogue-starttls", {"--starttls", pki_->rogue_cert, pki_->rogue_key});
  auto implicit = start("rogue-smtps", {"--implicit-tls", pki_->rogue_cert, pki_->rogue_key});
  ASSERT_TRUE(upgrade && implicit);
  OutboundTransport transport(trusting_test_ca());
  for (const std::string& url : {upgrade->url("smtp"), implicit->url("smtps")}) {
    Response r = send(transport, smtp_request(url, "rogue"));
    EXPECT_EQ(r.transport_error, CURLE_PEER_FAILED_VERIFICATION) << url << ": " << r.error_text;
    EXPECT_EQ(r.status, 0) << url;
  }
  EXPECT_TRUE(upgrade->received().empty());
  EXPECT_TRUE(implicit->received().empty());
}

// 7. Lines starting with "." survive (libcurl dot-stuffs, RFC 5321 §4.5.2), including a lone "." that
//    would otherwise end the data; a message without a final CRLF gets one.
TEST_F(SmtpTransport, DotStuffingKeepsLinesStartingWithDot) {
  auto server = start("dots", starttls());
  ASSERT_TRUE(server);
  OutboundTransport transport(trusting_test_ca());
  const std::string head = "Subject: dots\r\n\r\n";
  const std::string body = head + ".\r\n..\r\n.leading dot\r\nmiddle\r\n. space\r\n...\r\n.\r\n";
  Request req = smtp_request(server->url(), "dots");
  req.body = body;
  EXPECT_EQ(send(transport, req).status, 250);
  req.body = head + "no final line end\r\n.";
  EXPECT_EQ(send(transport, req).status, 250);

  auto got = server->received();
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0].data, body);
  EXPECT_EQ(got[1].data, head + "no final line end\r\n.\r\n");
}

// 8. What would inject SMTP commands, or smuggle a message, is refused before anything is sent.
TEST_F(SmtpTransport, BadInputRefusedBeforeSending) {
  auto server = start("inject", {});
  ASSERT_TRUE(server);
  OutboundTransport transport;
  auto plain = [&](const std::string& marker) {
    Request r = smtp_request(server->url(), marker);
    r.allow_plaintext = true;
    return r;
  };
  struct Case {
    std::string what;
    Request request;
    int error;
    std::string text;
  };
  std::vector<Case> cases;
  cases.push_back({"CRLF in mail_from", plain("a"), CURLE_BAD_FUNCTION_ARGUMENT, "mail_from"});
  cases.back().request.mail_from = "a@tayori.test>\r\nRCPT TO:<victim@example.jp";
  cases.push_back({"LF in mail_rcpt", plain("b"), CURLE_BAD_FUNCTION_ARGUMENT, "mail_rcpt"});
  cases.back().request.mail_rcpt = {"hanako@example.jp", "x@example.jp\nDATA"};
  cases.push_back({"NUL in mail_rcpt", plain("c"), CURLE_BAD_FUNCTION_ARGUMENT, "mail_rcpt"});
  cases.back().request.mail_rcpt = {std::string("x@example.jp\0y", 14)};
  cases.push_back({"no recipient", plain("d"), CURLE_BAD_FUNCTION_ARGUMENT, "mail_rcpt"});
  cases.back().request.mail_rcpt.clear();
  cases.push_back({"bare LF before a dot", plain("e"), CURLE_BAD_FUNCTION_ARGUMENT, "CRLF"});
  cases.back().request.body = "Subject: x\r\n\r\nhi\n.\r\nMAIL FROM:<evil@example.jp>\r\n";
  cases.push_back({"headers", plain("f"), CURLE_BAD_FUNCTION_ARGUMENT, "headers"});
  cases.back().request.headers = {{"Subject", "x"}};
  cases.push_back({"https URL", plain("g"), CURLE_UNSUPPORTED_PROTOCOL, "smtp://"});
  cases.back().request.url = "https://127.0.0.1/";
  cases.push_back({"no scheme", plain("h"), CURLE_UNSUPPORTED_PROTOCOL, "smtp://"});
  cases.back().request.url = "127.0.0.1:25";
  for (auto& c : cases) {
    Response r = send(transport, c.request);
    EXPECT_EQ(r.transport_error, c.error) << c.what << ": " << r.error_text;
    EXPECT_NE(r.error_text.find(c.text), std::string::npos) << c.what << ": " << r.error_text;
    EXPECT_EQ(r.status, 0) << c.what;
  }
  // An HTTP request cannot be pointed at an SMTP server either.
  Request http;
  http.url = server->url();
  EXPECT_EQ(send(transport, http).transport_error, CURLE_UNSUPPORTED_PROTOCOL);
  EXPECT_TRUE(server->received().empty());
}

// 9. Many messages at once share the pool limit and reuse connections; a refused connection is a
//    transport error.
TEST_F(SmtpTransport, ConcurrentRequestsCompleteAndReuseConnections) {
  auto server = start("many", starttls());
  ASSERT_TRUE(server);
  OutboundTransport transport(trusting_test_ca());
  transport.configure_pool(OutboundTransport::pool_key_for(smtp_request(server->url(), "")), PoolOptions{3, nullptr});
  constexpr int kN = 12;
  std::mutex mu;
  std::condition_variable cv;
  std::vector<Response> responses(kN);
  int done = 0;
  for (int i = 0; i < kN; ++i)
    transport.submit(smtp_request(server->url(), "c" + std::to_string(i)), [&, i](Response r) {
      std::lock_guard lock(mu);
      responses[i] = std::move(r);
      ++done;
      cv.notify_all();
    });
  {
    std::unique_lock lock(mu);
    ASSERT_TRUE(cv.wait_for(lock, 20s, [&] { return done == kN; }));
  }
  int64_t opened = 0;
  for (int i = 0; i < kN; ++i) {
    EXPECT_EQ(responses[i].status, 250) << i << ": " << responses[i].error_text;
    opened += responses[i].new_connections;
  }
  EXPECT_GE(opened, 1);
  EXPECT_LE(opened, 3) << "at most max_concurrent connections, each reused";
  auto got = server->received();
  ASSERT_EQ(got.size(), static_cast<size_t>(kN));
  std::set<std::string> bodies;
  for (const auto& m : got) bodies.insert(m.data);
  for (int i = 0; i < kN; ++i) EXPECT_EQ(bodies.count(message("c" + std::to_string(i))), 1u) << i;

  Response refused = send(transport, smtp_request("smtp://127.0.0.1:" + std::to_string(closed_port()), "r"));
  EXPECT_EQ(refused.transport_error, CURLE_COULDNT_CONNECT) << refused.error_text;
  EXPECT_EQ(refused.status, 0);
}

}  // namespace
}  // namespace tayori::transport
