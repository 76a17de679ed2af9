// plugin/marshal: what crosses from a plugin's C buffers into the host's events must be valid UTF-8 (it ends
// up in JSON timelines and webhooks, RFC 8259 §8.1), whatever bytes a provider sent.
#include <gtest/gtest.h>

#include <string>
#include <tayori/text.hpp>

#include "plugin/marshal.hpp"

namespace tayori::plugin {
namespace {

TEST(MarshalValidUtf8, KeepsValidTextAsItIs) {
  EXPECT_EQ(valid_utf8(""), "");
  EXPECT_EQ(valid_utf8("HTTP 400: invalid 'To' number"), "HTTP 400: invalid 'To' number");
  EXPECT_EQ(valid_utf8("宛先が見つかりません 🙇"), "宛先が見つかりません 🙇");
}

TEST(MarshalValidUtf8, ReplacesInvalidSequencesWithTheReplacementCharacter) {
  // 0xC3 0x28: a lead byte followed by no continuation; 0xFF never appears in UTF-8 (RFC 3629 §1).
  std::string fixed = valid_utf8("bad \xc3\x28 and \xff end");
  EXPECT_TRUE(text::is_valid_utf8(fixed)) << fixed;
  EXPECT_EQ(fixed, "bad \xEF\xBF\xBD( and \xEF\xBF\xBD end");
}

}  // namespace
}  // namespace tayori::plugin
