// The text helpers the gateway, the simulator and plugins share (include/tayori/text.hpp): UTF-8 checks
// (RFC 3629), HTML escaping, percent-decoding (RFC 3986 §2.1) and form bodies.
#include <tayori/text.hpp>

#include <gtest/gtest.h>

#include <string>
#include <utility>
#include <vector>

namespace tayori::text {
namespace {

TEST(TextUtf8, AcceptsWellFormedSequencesOfEveryLength) {
  EXPECT_TRUE(is_valid_utf8(""));
  EXPECT_TRUE(is_valid_utf8("plain ASCII\x7f"));
  EXPECT_TRUE(is_valid_utf8("é"));     // 2 bytes
  EXPECT_TRUE(is_valid_utf8("あ漢"));  // 3 bytes each
  EXPECT_TRUE(is_valid_utf8("😀"));    // 4 bytes
  EXPECT_TRUE(is_valid_utf8(std::string("a\0b", 3)));
  // The edges of RFC 3629 §4's table.
  EXPECT_TRUE(is_valid_utf8("\xc2\x80"));
  EXPECT_TRUE(is_valid_utf8("\xed\x9f\xbf"));      // U+D7FF, just below the surrogates
  EXPECT_TRUE(is_valid_utf8("\xee\x80\x80"));      // U+E000, just above them
  EXPECT_TRUE(is_valid_utf8("\xf4\x8f\xbf\xbf"));  // U+10FFFF
}

TEST(TextUtf8, RefusesWhatRfc3629Forbids) {
  for (const char* bad : {
           "\x80",              // a continuation byte alone
           "\xc3",              // truncated
           "\xe3\x81",          // truncated
           "a\xc3(",            // a lead byte followed by a non-continuation byte
           "\xc0\xaf",          // overlong '/'
           "\xe0\x80\xaf",      // overlong '/'
           "\xf0\x82\x82\xac",  // overlong U+20AC
           "\xed\xa0\x80",      // U+D800, a surrogate
           "\xed\xbf\xbf",      // U+DFFF
           "\xf4\x90\x80\x80",  // U+110000, past the end
           "\xf8\x88\x80\x80\x80",
           "\xfe", "\xff"}) {
    EXPECT_FALSE(is_valid_utf8(bad)) << testing::PrintToString(std::string(bad));
  }
}

TEST(TextUtf8, SaysHowLongTheSequenceAtAByteIs) {
  const std::string s = "a\xc3\xa9\xe3\x81\x82\xf0\x9f\x98\x80";  // a é あ 😀
  EXPECT_EQ(utf8_sequence_length(s, 0), 1u);
  EXPECT_EQ(utf8_sequence_length(s, 1), 2u);
  EXPECT_EQ(utf8_sequence_length(s, 3), 3u);
  EXPECT_EQ(utf8_sequence_length(s, 6), 4u);
  EXPECT_EQ(utf8_sequence_length(s, 2), 0u) << "a continuation byte starts nothing";
  EXPECT_EQ(utf8_sequence_length(s, s.size()), 0u) << "past the end";
  EXPECT_EQ(utf8_sequence_length(std::string_view(s).substr(0, 8), 6), 0u) << "truncated";
  EXPECT_EQ(utf8_sequence_length("\xed\xa0\x80", 0), 0u) << "a surrogate";
  EXPECT_EQ(utf8_sequence_length("\xe0\x80\xaf", 0), 0u) << "overlong";
}

TEST(TextUtf8, CountsCodePoints) {
  EXPECT_EQ(utf8_code_points(""), 0u);
  EXPECT_EQ(utf8_code_points("abc"), 3u);
  EXPECT_EQ(utf8_code_points("あいう abc"), 7u);
  EXPECT_EQ(utf8_code_points("é😀"), 2u);
}

TEST(TextHtml, EscapesTheCharactersThatEndContentOrAttributes) {
  EXPECT_EQ(html_escape(""), "");
  EXPECT_EQ(html_escape("興味なし"), "興味なし");
  EXPECT_EQ(html_escape(R"(<a href="x" title='y'>Tom & Jerry</a>)"),
            "&lt;a href=&quot;x&quot; title=&#39;y&#39;&gt;Tom &amp; Jerry&lt;/a&gt;");
  // An existing reference is escaped again: the input is text, not HTML.
  EXPECT_EQ(html_escape("&amp;"), "&amp;amp;");
}

TEST(TextPercent, DecodesEscapesAndKeepsMalformedOnes) {
  EXPECT_EQ(percent_decode("a%20b%2Fc%2fd"), "a b/c/d");
  EXPECT_EQ(percent_decode("%E3%81%82"), "あ");
  EXPECT_EQ(percent_decode("%00"), std::string(1, '\0'));
  EXPECT_EQ(percent_decode("100%"), "100%");
  EXPECT_EQ(percent_decode("%4"), "%4");
  EXPECT_EQ(percent_decode("%zz%4g"), "%zz%4g");
  EXPECT_EQ(percent_decode("%41%"), "A%");
}

TEST(TextPercent, PlusIsASpaceOnlyInFormBodies) {
  EXPECT_EQ(percent_decode("+8190"), "+8190");
  EXPECT_EQ(percent_decode("a+b%2B", /*plus_is_space=*/true), "a b+");
}

TEST(TextPercent, PairsKeepOrderAndDuplicatesAndSkipEmptyOnes) {
  using Pairs = std::vector<std::pair<std::string, std::string>>;
  EXPECT_EQ(decode_pairs("a=1&&b&c=&a=x%3D%26y", false),
            (Pairs{{"a", "1"}, {"b", ""}, {"c", ""}, {"a", "x=&y"}}));
  EXPECT_EQ(decode_pairs("to=+81+90", false), (Pairs{{"to", "+81+90"}}));
  EXPECT_EQ(decode_pairs("to=+81+90", true), (Pairs{{"to", " 81 90"}}));
  EXPECT_TRUE(decode_pairs("", true).empty());
  EXPECT_TRUE(decode_pairs("&&", false).empty());
}

}  // namespace
}  // namespace tayori::text
