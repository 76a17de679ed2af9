// Click tracking's pure parts (gateway/links/tracking.hpp): which links of a rendered message are rewritten
// and how, and whose fetch of a tracked link is not a click. The signed /c/ tokens themselves: links_test.cpp.
#include <gtest/gtest.h>

#include "links/tracking.hpp"

namespace tayori::links {
namespace {

using Fields = std::vector<std::pair<std::string, std::string>>;

// Tracked URLs that say which index and URL they were made for.
TrackedContent track(const Fields& fields, std::string_view own = "https://gw.example") {
  return track_clicks(
      fields, [](size_t index, const std::string&) { return "https://gw.example/c/T" + std::to_string(index); }, own);
}

std::vector<std::string> urls(std::string_view text) {
  std::vector<std::string> out;
  for (auto [at, n] : urls_in_text(text)) out.emplace_back(text.substr(at, n));
  return out;
}

TEST(ClickTracking, UrlsInPlainTextEndWhereTheUrlEnds) {
  EXPECT_EQ(urls("詳しくはhttps://shop.example/sale?id=1&x=2をご覧ください。"),
            std::vector<std::string>{"https://shop.example/sale?id=1&x=2"});
  EXPECT_EQ(urls("See https://a.example/x. Or (https://b.example/y), or https://en.wikipedia.org/wiki/Foo_(bar)!"),
            (std::vector<std::string>{"https://a.example/x", "https://b.example/y", "https://en.wikipedia.org/wiki/Foo_(bar)"}));
  EXPECT_EQ(urls("HTTP://UPPER.example/A\nhttp://x.example/%E3%81%82 <https://angle.example/>"),
            (std::vector<std::string>{"HTTP://UPPER.example/A", "http://x.example/%E3%81%82", "https://angle.example/"}));
  EXPECT_TRUE(urls("mailto:a@example.com tel:+81 xhttps://no.example https:// http").empty());
}

TEST(ClickTracking, EachFieldIsReadAsWhatItIs) {
  const Fields fields = {
      {"subject", "Sale https://shop.example/sale"},  // not a link anyone clicks: left alone
      {"html", R"(<p><a class="b" href="https://shop.example/sale?a=1&amp;b=2">Sale</a> <A HREF='https://shop.example/new'>new</A>)"
               R"( <a href=https://shop.example/bare>bare</a> <img src="https://cdn.example/i.png"> <a href="mailto:x@example.com">m</a>)"
               R"( <a href="https://gw.example/u/TOKEN">unsubscribe</a> <area href="https://shop.example/map"> <abbr title="https://x.example/t">t</abbr></p>)"},
      {"text", "Sale: https://shop.example/sale?a=1&b=2 and https://shop.example/new"},
      {"link", "https://app.example/open/42"},
      {"title", "https://shop.example/title"},
  };
  TrackedContent t = track(fields);
  EXPECT_EQ(t.targets, (std::vector<std::string>{"https://shop.example/sale?a=1&b=2", "https://shop.example/new",
                                                 "https://shop.example/bare", "https://shop.example/map",
                                                 "https://app.example/open/42"}));
  ASSERT_EQ(t.fields.size(), fields.size());
  EXPECT_EQ(t.fields[0], fields[0]);
  EXPECT_EQ(t.fields[1].second,
            R"(<p><a class="b" href="https://gw.example/c/T0">Sale</a> <A HREF='https://gw.example/c/T1'>new</A>)"
            R"( <a href=https://gw.example/c/T2>bare</a> <img src="https://cdn.example/i.png"> <a href="mailto:x@example.com">m</a>)"
            R"( <a href="https://gw.example/u/TOKEN">unsubscribe</a> <area href="https://gw.example/c/T3"> <abbr title="https://x.example/t">t</abbr></p>)");
  // The same URL in the text part is the same link, with the same index.
  EXPECT_EQ(t.fields[2].second, "Sale: https://gw.example/c/T0 and https://gw.example/c/T1");
  EXPECT_EQ(t.fields[3].second, "https://gw.example/c/T4");
  EXPECT_EQ(t.fields[4], fields[4]);
}

TEST(ClickTracking, ContentWithoutLinksIsUnchanged) {
  const Fields fields = {{"text", "こんにちは"}, {"html", "<p>No <b>links</b> <a name=x>here</a></p><"}};
  TrackedContent t = track(fields);
  EXPECT_TRUE(t.targets.empty());
  EXPECT_EQ(t.fields, fields);
}

TEST(OpenTracking, ThePixelGoesBeforeTheEndOfTheBodyOrAtTheEndAndOnlyIntoHtml) {
  const std::string img =
      R"(<img src="https://gw.example/o/T" width="1" height="1" alt="" style="display:block;border:0">)";
  auto html_of = [&](const Fields& fields) {
    for (const auto& [k, v] : with_open_pixel(fields, "https://gw.example/o/T"))
      if (k == "html") return v;
    return std::string("(none)");
  };
  EXPECT_EQ(html_of({{"html", "<html><BODY><p>x</p></BODY></html>"}}), "<html><BODY><p>x</p>" + img + "</BODY></html>");
  EXPECT_EQ(html_of({{"html", "<p>x</p>"}}), "<p>x</p>" + img);
  const Fields text_only = {{"subject", "s"}, {"text", "x"}};
  EXPECT_EQ(with_open_pixel(text_only, "https://gw.example/o/T"), text_only);
}

TEST(ClickTracking, ScannersAndPreviewsAreNotClicks) {
  for (const char* ua : {"", "Mozilla/5.0 (compatible; Googlebot/2.1)", "facebookexternalhit/1.1",
                         "Slackbot-LinkExpanding 1.0", "curl/7.88.1", "python-requests/2.31",
                         "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/120.0",
                         "Barracuda Sentinel (EE)", "WhatsApp/2.23.20"})
    EXPECT_TRUE(is_link_scanner(ua)) << ua;
  for (const char* ua : {"Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
                         "Version/17.1 Mobile/15E148 Safari/604.1",
                         "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 "
                         "Safari/537.36 Edg/120.0", "Line/13.20.0"})
    EXPECT_FALSE(is_link_scanner(ua)) << ua;
}

}  // namespace
}  // namespace tayori::links
