// The email_smtp plugin's MIME builder (plugins/email_smtp/mime.{hpp,cpp}), tested as pure functions: RFC 2047
// encoded-words (length, whole UTF-8 characters, round trip), folding, RFC 5322 dates, Message-IDs,
// boundaries, header injection. (Whole messages read back by a real MIME parser, Python's `email`:
// tests/integration/plugins/email_smtp/email_mime_parse_test.cpp.)
#include <gtest/gtest.h>

#include <regex>
#include <string>

#include <tayori/text.hpp>

#include "crypto/crypto.hpp"
#include "email_mime_sample.hpp"
#include "email_smtp/mime.hpp"
#include "email_test_support.hpp"

namespace tayori::email {
namespace {

constexpr int64_t kNow = test::kMimeSampleNow;  // 2026-01-01T00:00:00Z, a Thursday

// The text of every encoded-word in `header`, each decoded on its own (so a split character would show).
std::vector<std::string> decoded_words(const std::string& header, std::vector<size_t>* lengths = nullptr) {
  std::vector<std::string> out;
  static const std::regex word(R"(=\?UTF-8\?B\?([A-Za-z0-9+/=]*)\?=)");
  for (auto it = std::sregex_iterator(header.begin(), header.end(), word); it != std::sregex_iterator(); ++it) {
    if (lengths) lengths->push_back(static_cast<size_t>(it->length(0)));
    auto bytes = crypto::base64_decode((*it)[1].str());
    EXPECT_TRUE(bytes.ok()) << (*it)[0];
    out.push_back(bytes.ok() ? bytes.value() : "");
  }
  return out;
}

// RFC 5322 §2.2.3 unfolding: remove every CRLF that is followed by white space; drop the final CRLF.
std::string unfold(std::string header) {
  std::string out;
  for (size_t i = 0; i < header.size(); ++i) {
    if (header[i] == '\r' && i + 1 < header.size() && header[i + 1] == '\n') {
      ++i;
      continue;
    }
    out += header[i];
  }
  return out;
}

TEST(EmailMime, EncodedWordsStayWithin75AndHoldWholeCharacters) {
  // Mixed widths: 1-byte ASCII, 2-byte Latin, 3-byte kana/kanji, 4-byte emoji, at every alignment.
  const std::string units[] = {"a", "é", "あ", "漢", "😀"};
  for (int length = 1; length <= 90; length += 7) {
    for (int offset = 0; offset < 5; ++offset) {
      std::string subject = "é";  // non-ASCII, so it is encoded
      for (int i = 0; i < length; ++i) subject += units[(i + offset) % 5];
      const std::string header = unstructured_header("Subject", subject);
      std::vector<size_t> lengths;
      std::vector<std::string> words = decoded_words(header, &lengths);
      std::string joined;
      for (size_t i = 0; i < words.size(); ++i) {
        SCOPED_TRACE(header);
        EXPECT_LE(lengths[i], 75u);                    // RFC 2047 §2
        EXPECT_TRUE(text::is_valid_utf8(words[i])) << i;     // RFC 2047 §5: no character split across words
        joined += words[i];
      }
      EXPECT_EQ(joined, subject);
      EXPECT_EQ(test::line_problems(header), std::vector<std::string>{}) << header;
      EXPECT_EQ(header.rfind("Subject: =?UTF-8?B?", 0), 0u);
    }
  }
}

TEST(EmailMime, AsciiSubjectsStayPlainAndFoldAtSpaces) {
  EXPECT_EQ(unstructured_header("Subject", "Your order has shipped"), "Subject: Your order has shipped\r\n");
  std::string longer;
  for (int i = 0; i < 20; ++i) longer += (i ? " " : "") + std::string("word") + std::to_string(i);
  const std::string folded = unstructured_header("Subject", longer);
  EXPECT_EQ(folded.find("=?"), std::string::npos);
  EXPECT_NE(folded.find("\r\n "), std::string::npos);  // folded
  EXPECT_EQ(test::line_problems(folded), std::vector<std::string>{});
  EXPECT_EQ(unfold(folded), "Subject: " + longer);
  // Text a reader would try to decode, or that cannot fold into 78 columns, is encoded instead.
  for (const std::string& s : {std::string("price =?UTF-8?B?Zm9v?= today"), std::string(100, 'z'),
                               std::string("two  spaces"), std::string("tab\there")}) {
    const std::string h = unstructured_header("Subject", s);
    std::string joined;
    for (const auto& w : decoded_words(h)) joined += w;
    EXPECT_EQ(joined, s) << h;
    EXPECT_EQ(test::line_problems(h), std::vector<std::string>{}) << h;
  }
}

TEST(EmailMime, HeaderInjectionIsRefused) {
  auto refuses = [](auto&& f, const std::string& field) {
    try {
      f();
      ADD_FAILURE() << "accepted a line break in " << field;
    } catch (const MimeError& e) {
      EXPECT_EQ(std::string(e.what()).rfind(field + ": ", 0), 0u) << e.what();
    }
  };
  refuses([] { unstructured_header("Subject", "Hello\r\nBcc: victim@example.com"); }, "subject");
  refuses([] { unstructured_header("Subject", "Hello\nBcc: victim@example.com"); }, "subject");
  refuses([] { parse_mailbox("News\r\nBcc: x@example.com <news@example.com>", "from"); }, "from");
  refuses([] { mailbox_header("From", Mailbox{"Evil\rName", "news@example.com"}); }, "from");
  Message m = test::mime_sample();
  m.to = "hanako@example.jp\r\nBcc: victim@example.com";
  refuses([&] { build_message(m); }, "to");
  m = test::mime_sample();
  m.subject = "Hi\r\nBcc: victim@example.com";
  refuses([&] { build_message(m); }, "subject");
  m = test::mime_sample();
  m.list_unsubscribe = {"https://gw.example.com/u/x>\r\nBcc: victim@example.com"};
  refuses([&] { build_message(m); }, "list_unsubscribe");
  m = test::mime_sample();
  m.subject = std::string("bad \xE3\x81 utf-8");
  refuses([&] { build_message(m); }, "subject");
  // A URL too long for even RFC 5322's hard limit of 998 characters per line.
  m = test::mime_sample();
  m.list_unsubscribe = {"https://gw.example.com/u/" + std::string(1000, 'a')};
  refuses([&] { build_message(m); }, "headers");
}

TEST(EmailMime, MailboxesParseAndFormat) {
  Mailbox plain = parse_mailbox("news@example.com", "from");
  EXPECT_EQ(plain.display_name, "");
  EXPECT_EQ(plain.address, "news@example.com");
  Mailbox named = parse_mailbox("  Tayori <news@example.com> ", "from");
  EXPECT_EQ(named.display_name, "Tayori");
  EXPECT_EQ(named.address, "news@example.com");
  EXPECT_EQ(mailbox_header("From", named), "From: Tayori <news@example.com>\r\n");
  Mailbox quoted = parse_mailbox(R"("Doe, \"JD\" John" <j@example.com>)", "from");
  EXPECT_EQ(quoted.display_name, R"(Doe, "JD" John)");
  EXPECT_EQ(mailbox_header("From", quoted), "From: \"Doe, \\\"JD\\\" John\" <j@example.com>\r\n");
  EXPECT_EQ(mailbox_header("To", Mailbox{"", "a@b.example"}), "To: a@b.example\r\n");
  for (const char* bad : {"", "news", "news@", "@example.com", "a..b@example.com", ".a@example.com",
                          "a@-example.com", "a b@example.com", "Name <news@example.com", "山田@example.jp"}) {
    EXPECT_THROW(parse_mailbox(bad, "from"), MimeError) << bad;
  }
  try {
    parse_mailbox("山田@example.jp", "reply_to");
  } catch (const MimeError& e) {
    EXPECT_NE(std::string(e.what()).find("reply_to: "), std::string::npos);
    EXPECT_NE(std::string(e.what()).find("SMTPUTF8"), std::string::npos);
  }
}

TEST(EmailMime, DatesFollowRfc5322InUtc) {
  EXPECT_EQ(rfc5322_date(0), "Thu, 01 Jan 1970 00:00:00 +0000");
  EXPECT_EQ(rfc5322_date(kNow), "Thu, 01 Jan 2026 00:00:00 +0000");
  EXPECT_EQ(rfc5322_date(1'709'210'096'789), "Thu, 29 Feb 2024 12:34:56 +0000");  // leap day, ms dropped
  EXPECT_EQ(rfc5322_date(1'767'225'599'999), "Wed, 31 Dec 2025 23:59:59 +0000");
}

TEST(EmailMime, MessageIdsAreStablePerDeliveryAndDistinct) {
  EXPECT_EQ(message_id("d-1", "example.com"), message_id("d-1", "example.com"));
  EXPECT_EQ(message_id("0f1e2d3c", "mail.example.com"), "<tayori.0f1e2d3c@mail.example.com>");
  // Characters outside [A-Za-z0-9-] are escaped, so ids that differ only there stay different.
  EXPECT_EQ(message_id("a b/c", "example.com"), "<tayori.a=20b=2Fc@example.com>");
  EXPECT_NE(message_id("a.b", "example.com"), message_id("a_b", "example.com"));
  EXPECT_NE(message_id("a=2Eb", "example.com"), message_id("a.b", "example.com"));
  EXPECT_THROW(message_id("d-1", "not a domain"), MimeError);
  EXPECT_THROW(message_id("", "example.com"), MimeError);
}

TEST(EmailMime, TheBoundaryIsDeterministicAndAbsentFromTheParts) {
  const std::string first = choose_boundary("seed", {});
  EXPECT_EQ(choose_boundary("seed", {"anything"}), first);
  EXPECT_NE(choose_boundary("other seed", {}), first);
  EXPECT_LE(first.size(), 70u);  // RFC 2046 §5.1.1
  // A part that happens to contain the first candidate gets another boundary.
  const std::string clash = "text " + first + " text";
  const std::string second = choose_boundary("seed", {clash});
  EXPECT_NE(second, first);
  EXPECT_EQ(clash.find(second), std::string::npos);
}

TEST(EmailMime, Base64BodyLinesAre76Characters) {
  std::string bytes;
  for (int i = 0; i < 1000; ++i) bytes += static_cast<char>(i * 7);
  const std::string lines = base64_lines(bytes);
  EXPECT_EQ(test::line_problems(lines, 76), std::vector<std::string>{});
  std::string joined;
  for (char c : lines)
    if (c != '\r' && c != '\n') joined += c;
  auto decoded = crypto::base64_decode(joined);
  ASSERT_TRUE(decoded.ok());
  EXPECT_EQ(decoded.value(), bytes);
}

}  // namespace
}  // namespace tayori::email
