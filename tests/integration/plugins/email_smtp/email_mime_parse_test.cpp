// The email_smtp plugin's MIME builder (plugins/email_smtp/mime.{hpp,cpp}): whole messages read back by a real
// MIME parser (Python's `email` package run as a child process: email_test_support.hpp's parse_with_python),
// which is what makes these integration tests. (The builder's pure functions -- encoded-words, folding, dates,
// Message-IDs, boundaries, header injection: the unit tier's tests/unit/plugins/email_smtp/email_mime_test.cpp.)
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "email_mime_sample.hpp"
#include "email_smtp/mime.hpp"
#include "email_test_support.hpp"

namespace tayori::email {
namespace {

constexpr int64_t kNow = test::kMimeSampleNow;  // 2026-01-01T00:00:00Z, a Thursday

TEST(EmailMime, AJapaneseMessageReadsBackThroughARealMimeParser) {
  Message m = test::mime_sample();
  m.list_unsubscribe = {"https://gw.example.com/u/abc.def", "mailto:unsubscribe@example.com?subject=unsubscribe"};
  m.one_click_unsubscribe = true;
  const std::string raw = build_message(m);
  EXPECT_EQ(test::line_problems(raw), std::vector<std::string>{});
  nlohmann::json got = test::parse_with_python(raw);
  EXPECT_EQ(got["defects"], nlohmann::json::array()) << raw;
  EXPECT_EQ(got["subject"], m.subject);
  EXPECT_EQ(got["from"]["name"], "たより通信");
  EXPECT_EQ(got["from"]["addr"], "news@example.com");
  EXPECT_EQ(got["reply_to"]["addr"], "support@example.com");
  EXPECT_EQ(got["to"]["addr"], "hanako@example.jp");
  EXPECT_EQ(got["message_id"], "<tayori.0f1e2d3c4b5a69788796a5b4c3d2e1f0@example.com>");
  EXPECT_EQ(got["date_epoch"], kNow / 1000);
  EXPECT_EQ(got["mime_version"], "1.0");
  EXPECT_EQ(got["content_type"], "multipart/alternative");
  EXPECT_EQ(got["list_unsubscribe"],
            "<https://gw.example.com/u/abc.def>, <mailto:unsubscribe@example.com?subject=unsubscribe>");
  EXPECT_EQ(got["list_unsubscribe_post"], "List-Unsubscribe=One-Click");
  ASSERT_EQ(got["parts"].size(), 2u);
  // RFC 2046 §5.1.4: the plain alternative first, the richer one last.
  EXPECT_EQ(got["parts"][0]["type"], "text/plain");
  EXPECT_EQ(got["parts"][1]["type"], "text/html");
  std::string text = *m.text, crlf;
  for (char c : text) crlf += c == '\n' ? std::string("\r\n") : std::string(1, c);  // canonical CRLF
  for (int i = 0; i < 2; ++i) {
    EXPECT_EQ(got["parts"][i]["charset"], "utf-8");
    EXPECT_EQ(got["parts"][i]["cte"], "base64");
  }
  EXPECT_EQ(got["parts"][0]["content"], crlf);
  EXPECT_EQ(got["parts"][1]["content"], *m.html);
  // The boundary occurs only as delimiter lines.
  const std::string boundary = got["boundary"];
  size_t count = 0;
  for (size_t at = raw.find(boundary); at != std::string::npos; at = raw.find(boundary, at + 1)) ++count;
  EXPECT_EQ(count, 4u);  // the Content-Type parameter, two delimiters, the close delimiter
}

TEST(EmailMime, SinglePartMessagesForTextOnlyOrHtmlOnly) {
  Message m = test::mime_sample();
  m.html.reset();
  nlohmann::json text_only = test::parse_with_python(build_message(m));
  EXPECT_EQ(text_only["content_type"], "text/plain");
  ASSERT_EQ(text_only["parts"].size(), 1u);
  EXPECT_EQ(text_only["parts"][0]["charset"], "utf-8");
  EXPECT_EQ(text_only["list_unsubscribe"], nullptr);
  EXPECT_EQ(text_only["list_unsubscribe_post"], nullptr);

  m = test::mime_sample();
  m.text = "";
  const std::string raw = build_message(m);
  nlohmann::json html_only = test::parse_with_python(raw);
  EXPECT_EQ(html_only["content_type"], "text/html");
  EXPECT_EQ(html_only["parts"][0]["content"], *m.html);
  EXPECT_EQ(test::line_problems(raw), std::vector<std::string>{});

  m.html.reset();
  EXPECT_THROW(build_message(m), MimeError);
}

}  // namespace
}  // namespace tayori::email
