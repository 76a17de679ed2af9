// The message the MIME builder's tests start from (tests/unit/plugins/email_smtp/email_mime_test.cpp and the
// integration tier's email_mime_parse_test.cpp): Japanese display name and subject long enough to need
// several encoded-words, a text part with a lone dot and a long line, an HTML part, and fixed date, Message-ID
// and boundary seed so the output is the same at every run.
#pragma once

#include <cstdint>
#include <string>

#include "email_smtp/mime.hpp"

namespace tayori::test {

inline constexpr int64_t kMimeSampleNow = 1'767'225'600'000;  // 2026-01-01T00:00:00Z, a Thursday

inline email::Message mime_sample() {
  email::Message m;
  m.from = {"たより通信", "news@example.com"};
  m.reply_to = email::Mailbox{"", "support@example.com"};
  m.to = "hanako@example.jp";
  m.subject = "【重要】ご注文の商品を発送しました。お届け予定日は十二月二十四日です。ご確認ください";
  m.text = "山田様\nご注文ありがとうございます。\n.\nA line that starts with a dot, and one that is rather long: " +
           std::string(120, 'x') + "\n";
  m.html = "<p>山田様</p>\r\n<p>ご注文ありがとうございます。</p>";
  m.date_ms = kMimeSampleNow;
  m.message_id = email::message_id("0f1e2d3c4b5a69788796a5b4c3d2e1f0", "example.com");
  m.boundary_seed = "0f1e2d3c4b5a69788796a5b4c3d2e1f0";
  return m;
}

}  // namespace tayori::test
