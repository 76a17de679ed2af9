// Helpers for the email tests (unit/: email_mime_test.cpp, email_plugin_test.cpp; integration/:
// email_mime_parse_test.cpp, email_plugin_build_test.cpp, email_smtp_server_test.cpp): a real MIME parser --
// Python's standard `email` package, run as a child process on the message, so for integration tests only
// (check_no_servers.sh keeps it out of tests/unit) -- the line checks RFC 5322 §2.1.1 asks for, and the plugin
// on the public fake host.
#ifndef TAYORI_TESTS_SUPPORT_EMAIL_TEST_SUPPORT_HPP
#define TAYORI_TESTS_SUPPORT_EMAIL_TEST_SUPPORT_HPP

#include <gtest/gtest.h>
#include <unistd.h>
#include <tayori/testing.hpp>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "plugin_test_support.hpp"

namespace tayori::test {

// Debian's interpreter (the one the test dependencies are installed for), else whatever is on PATH.
inline std::string python3() { return std::filesystem::exists("/usr/bin/python3") ? "/usr/bin/python3" : "python3"; }

// Parses the message with email.message_from_bytes(policy=default) and reports what a mail client would
// see: decoded headers, each leaf part's type, charset, transfer encoding and decoded text, and the
// parser's defects (a well-formed message has none).
constexpr const char* kParseScript = R"PY(
import email, email.policy, email.utils, json, sys
raw = open(sys.argv[1], 'rb').read()
msg = email.message_from_bytes(raw, policy=email.policy.default)
def mailbox(name):
    h = msg[name]
    if h is None:
        return None
    a = h.addresses[0]
    return {'name': a.display_name, 'addr': a.addr_spec}
parts, defects = [], [str(d) for d in msg.defects]
for p in msg.walk():
    defects += [str(d) for d in p.defects]
    if p.is_multipart():
        continue
    parts.append({'type': p.get_content_type(), 'charset': p.get_content_charset(),
                  'cte': p.get('content-transfer-encoding'), 'content': p.get_content()})
date = msg['date']
print(json.dumps({
    'header_names': [k for k, _ in msg.raw_items()],
    'subject': str(msg['subject']) if msg['subject'] is not None else None,
    'from': mailbox('from'), 'to': mailbox('to'), 'reply_to': mailbox('reply-to'),
    'message_id': str(msg['message-id']) if msg['message-id'] is not None else None,
    'date_epoch': email.utils.parsedate_to_datetime(str(date)).timestamp() if date is not None else None,
    'mime_version': str(msg['mime-version']) if msg['mime-version'] is not None else None,
    'content_type': msg.get_content_type(), 'boundary': msg.get_boundary(),
    'list_unsubscribe': str(msg['list-unsubscribe']) if msg['list-unsubscribe'] is not None else None,
    'list_unsubscribe_post': str(msg['list-unsubscribe-post']) if msg['list-unsubscribe-post'] is not None else None,
    'parts': parts, 'defects': defects}, ensure_ascii=False))
)PY";

inline nlohmann::json parse_with_python(const std::string& message) {
  std::string dir = std::filesystem::temp_directory_path() / ("tayori_mime_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  const std::string script = dir + "/parse.py", file = dir + "/message.eml";
  std::ofstream(script, std::ios::binary) << kParseScript;
  std::ofstream(file, std::ios::binary) << message;
  std::string out;
  if (FILE* p = ::popen((python3() + " " + script + " " + file + " 2>&1").c_str(), "r")) {
    char buf[4096];
    size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
    ::pclose(p);
  }
  std::filesystem::remove_all(dir);
  auto j = nlohmann::json::parse(out, nullptr, false);
  EXPECT_TRUE(j.is_object()) << "python email parser failed:\n" << out;
  return j.is_object() ? j : nlohmann::json::object();
}

// Every line break is CRLF (RFC 5322 §2.3) and no line passes `max` characters (§2.1.1); the problems found.
inline std::vector<std::string> line_problems(const std::string& message, size_t max = 78) {
  std::vector<std::string> problems;
  size_t start = 0;
  for (size_t i = 0; i < message.size(); ++i) {
    if (message[i] == '\n' && (i == 0 || message[i - 1] != '\r')) problems.push_back("bare LF at " + std::to_string(i));
    if (message[i] == '\r' && (i + 1 == message.size() || message[i + 1] != '\n'))
      problems.push_back("bare CR at " + std::to_string(i));
    if (message[i] == '\n') {
      size_t len = i - start - 1;
      if (len > max) problems.push_back("line of " + std::to_string(len) + ": " + message.substr(start, len));
      start = i + 1;
    }
  }
  if (start != message.size()) problems.push_back("the message does not end with CRLF");
  return problems;
}

// email_smtp.so driven on the public fake host, as both tiers' email_smtp tests drive it (the plugin's
// settings and classify in the unit tier; the messages it builds read back by Python's parser, and its requests
// sent to a real SMTP server, in the integration tier).
namespace email_plugin {

using tayori::testing::Delivery;
using tayori::testing::Outcome;
using tayori::testing::Plugin;
using tayori::testing::Request;
using tayori::testing::Response;
using Settings = std::map<std::string, std::string>;

inline constexpr int64_t kNow = 1'767'225'600'000;  // 2026-01-01T00:00:00Z, the fake host's clock

// email_smtp.so on the fake host, its clock pinned at kNow, with `settings` as the channel's YAML would give
// them (a secret under its own name: "password", where the YAML says password_env).
inline Plugin email(const Settings& settings) {
  return Plugin::load(TAYORI_PLUGIN_DIR "/email_smtp.so", settings,
                      [](tayori::testing::FakeHost& host) { host.now_ms = kNow; });
}

// The delivery these tests start from: an order confirmation in Japanese to hanako, transactional.
inline Delivery mail() {
  Delivery d;
  d.message_id = "m-1";
  d.delivery_id = plugin::testing::kDeliveryId;
  d.channel = "mail";
  d.contact = "hanako@example.jp";
  d.content = {
      {"subject", "ご注文の確認"}, {"text", "ありがとうございます。"}, {"html", "<p>ありがとうございます。</p>"}};
  return d;
}

// The one request `d` becomes (an empty one, after a failed expectation, when it becomes anything else).
inline Request build_one(Plugin& p, const Delivery& d) {
  tayori::testing::Built b = p.build(d);
  EXPECT_EQ(b.status, TAYORI_OK) << b.error;
  EXPECT_EQ(b.requests.size(), 1u);
  return b.requests.empty() ? Request{} : b.requests[0];
}

// What the plugin makes of `answer` to `d`, read from the outcome buffers as the gateway reads them.
inline Outcome classify(Plugin& p, const Response& answer, const Delivery& d = mail()) {
  Outcome o = p.classify(d, answer);
  EXPECT_EQ(o.status, TAYORI_OK) << o.reason;
  return o;
}

}  // namespace email_plugin

}  // namespace tayori::test

#endif  // TAYORI_TESTS_SUPPORT_EMAIL_TEST_SUPPORT_HPP
