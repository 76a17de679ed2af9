// slack_webhook without the gateway: tayori/testing.hpp loads the built plugin into a fake host, so each test
// says what a delivery becomes on the wire and what each of Slack's answers means.
// Its tests follow the test `tayori new-plugin` writes, as signed_webhook's do, on purpose: an example shows a
// plugin author the shape their own tests start from, and stands alone, so the steps are not shared.
#include <gtest/gtest.h>
#include <tayori/testing.hpp>

namespace {

using tayori::testing::Delivery;
using tayori::testing::Plugin;
using tayori::testing::Response;

const std::string kWebhook = "https://hooks.slack.com/services/T000/B000/XXXXXXXXXXXXXXXXXXXXXXXX";

Plugin make() { return Plugin::load(PLUGIN_PATH, {{"webhook_url", kWebhook}}); }

Delivery deploy_done() {
  Delivery d;
  d.contact = "U024BE7LH";
  d.content = {{"text", "Deploy *42* finished"}};
  return d;
}

TEST(SlackWebhook, PostsTheTextMentioningTheMember) {
  Plugin p = make();
  ASSERT_TRUE(p.ok()) << p.error();
  auto built = p.build(deploy_done());
  ASSERT_TRUE(built.ok()) << built.error;
  ASSERT_EQ(built.requests.size(), 1u);
  const auto& r = built.requests[0];
  EXPECT_EQ(r.method, "POST");
  EXPECT_EQ(r.url, kWebhook);
  EXPECT_EQ(r.header("content-type"), "application/json; charset=utf-8");
  EXPECT_EQ(r.body, R"({"text":"<@U024BE7LH> Deploy *42* finished"})");  // mrkdwn (*bold*) passes
}

TEST(SlackWebhook, ContentCannotPingTheChannelOrForgeLinks) {
  Plugin p = make();
  Delivery d = deploy_done();
  d.content = {{"text", "<!channel> see <https://evil.example|your bank> & \"reply\""}};
  auto built = p.build(d);
  ASSERT_TRUE(built.ok()) << built.error;
  EXPECT_EQ(built.requests[0].body,
            R"({"text":"<@U024BE7LH> &lt;!channel&gt; see &lt;https://evil.example|your bank&gt; &amp; \"reply\""})");
}

TEST(SlackWebhook, ATitleLaysTheMessageOutInBlocks) {
  Plugin p = make();
  Delivery d = deploy_done();
  d.content.emplace_back("title", "Deploys");
  auto built = p.build(d);
  ASSERT_TRUE(built.ok()) << built.error;
  EXPECT_EQ(built.requests[0].body,
            R"({"text":"<@U024BE7LH> Deploy *42* finished","blocks":[)"
            R"({"type":"header","text":{"type":"plain_text","text":"Deploys"}},)"
            R"({"type":"section","text":{"type":"mrkdwn","text":"<@U024BE7LH> Deploy *42* finished"}}]})");
}

TEST(SlackWebhook, RefusesWhatSlackWouldRefuseBeforeSending) {
  Plugin p = make();
  auto error_of = [&](const Delivery& d) { return p.build(d).error; };
  Delivery d = deploy_done();
  d.content = {};
  EXPECT_EQ(error_of(d), "content: slack_webhook needs a non-empty text field");
  for (const char* contact : {"", "U", "u024be7lh", "C024BE7LH", "U1> <!channel", "hanako@example.jp"}) {
    d = deploy_done();
    d.contact = contact;
    EXPECT_EQ(error_of(d), "contact: not a Slack member id (U… or W…)") << contact;
  }
  d = deploy_done();
  d.contact = "W0123ABCD";  // an Enterprise Grid member
  EXPECT_EQ(error_of(d), "");
  d.content.emplace_back("title", std::string(151, 'x'));
  EXPECT_EQ(error_of(d), "content: title is longer than a Slack header block's 150 characters");
  d.content = {{"title", std::string(150, 'x')}, {"text", std::string(2989, 'y')}};  // 3001 with the mention
  EXPECT_EQ(error_of(d), "content: text is longer than a Slack section block's 3000 characters");
}

TEST(SlackWebhook, ClassifiesSlacksAnswers) {
  Plugin p = make();
  EXPECT_TRUE(p.classify(deploy_done(), {200, {}, "ok"}).delivered());

  struct Case {
    int status;
    std::string body, reason;
    bool deactivates;
  };
  for (const Case& c :
       {Case{400, "invalid_payload", "slack.invalid_payload", false}, Case{400, "no_text", "slack.no_text", false},
        Case{403, "action_prohibited", "slack.action_prohibited", false},
        Case{404, "channel_not_found", "slack.channel_not_found", true},
        Case{404, "no_service", "slack.no_service", true},
        Case{410, "channel_is_archived", "slack.channel_is_archived", true},
        Case{400, "<html>Bad Request</html>", "slack.http_400", false}}) {
    auto o = p.classify(deploy_done(), {c.status, {}, c.body});
    EXPECT_TRUE(o.permanent()) << c.body;
    EXPECT_EQ(o.reason, c.reason);
    EXPECT_EQ(o.deactivate_contact, c.deactivates) << c.body;
  }

  auto limited = p.classify(deploy_done(), {429, {{"Retry-After", "30"}}, "rate_limited"});
  EXPECT_TRUE(limited.retry());
  EXPECT_EQ(limited.reason, "slack.rate_limited");
  EXPECT_EQ(limited.retry_after_ms, 30'000);
  auto broken = p.classify(deploy_done(), {500, {}, "rollup_error"});
  EXPECT_TRUE(broken.retry());
  EXPECT_EQ(broken.reason, "slack.rollup_error");
  auto down = p.classify(deploy_done(), Response::transport_failure("timed out"));
  EXPECT_TRUE(down.retry());
  EXPECT_EQ(down.reason, "slack.transport");
}

TEST(SlackWebhook, TheWebhookUrlIsRequiredAndHttpsOutsideThisMachine) {
  EXPECT_EQ(Plugin::load(PLUGIN_PATH, {}).error(), "webhook_url: is required");
  EXPECT_EQ(Plugin::load(PLUGIN_PATH, {{"webhook_url", "http://hooks.slack.com/services/T/B/X"}}).error(),
            "webhook_url: must be https:// (plain http only to 127.0.0.1, [::1] or localhost), without credentials");
  EXPECT_EQ(Plugin::load(PLUGIN_PATH, {{"webhook_url", "http://127.0.0.1:8080/services/T/B/X"}}).error(), "");
}

}  // namespace
