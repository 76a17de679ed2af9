// The `line` plugin's multicast (plugins/line, docs/providers.md "LINE Messaging API"): with a batch_window,
// concurrent deliveries of identical content leave as one POST /v2/bot/message/multicast, loaded by the
// real host and sent by the real transport to a scripted local LINE that keeps retry keys like LINE does
// (a key seen on an accepted request answers 409). Personalised content, and anything multicast refuses,
// goes by push.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <nlohmann/json.hpp>
#include <set>

#include "plugin_test_support.hpp"

namespace tayori::plugin {
namespace {

using testing::deliver_concurrently;
using testing::hex_id;

constexpr const char* kPush = "/v2/bot/message/push";
constexpr const char* kMulticast = "/v2/bot/message/multicast";
constexpr const char* kInvalidUser =
    R"j({"message":"The request body has 1 error(s)","details":[{"message":"Invalid user ID","property":"to"}]})j";

// A request as LINE saw it.
struct Seen {
  std::string path;
  std::string retry_key;
  std::string authorization;
  nlohmann::json body;
};

std::string user(unsigned n) { return hex_id("U", n); }

// `n` deliveries of `text` to users first..first+n-1; `round` makes the delivery ids of another batch.
std::vector<DeliveryRequest> deliveries(unsigned n, const std::string& text = "セール開始", unsigned first = 0,
                                        unsigned round = 0) {
  std::vector<DeliveryRequest> out;
  for (unsigned i = first; i < first + n; ++i) {
    DeliveryRequest d;
    d.message_id = "m-" + std::to_string(round) + "-" + std::to_string(i);
    d.delivery_id = hex_id("", i, round);
    d.contact = user(i);
    d.marketing = true;
    d.category = "sale";
    d.content = {{"text", text}};
    out.push_back(d);
  }
  return out;
}

std::set<std::string> users_of(const nlohmann::json& to) {
  std::set<std::string> out;
  for (auto& u : to) out.insert(u.get<std::string>());
  return out;
}
std::set<std::string> users(unsigned first, unsigned n) {
  std::set<std::string> out;
  for (unsigned i = first; i < first + n; ++i) out.insert(user(i));
  return out;
}

// LINE as far as these tests need it: push answers 200 with a sentMessages id (400 for the users in
// `bad_`), multicast answers what the test scripts (200 `{}` by default); a retry key already accepted gets
// 409.
class LineMulticast : public ::testing::Test {
 protected:
  void SetUp() override {
    line_server_.script(kMulticast, 200, "{}");  // docs/providers.md: multicast answers 200 {}
    line_server_.rule([this](const api::HttpRequest& request, api::HttpResponse scripted) {
      return answer(request, std::move(scripted));
    });
    reg_ = registry("    batch_window: 200ms\n");
    ASSERT_TRUE(reg_.registry) << (reg_.errors.empty() ? "" : reg_.errors[0].to_string());
    line_ = reg_.registry->find("line");
  }
  void TearDown() override { line_server_.stop(); }

  // Under line_server_'s lock.
  api::HttpResponse answer(const api::HttpRequest& request, api::HttpResponse multicast) {
    std::string key(request.header("x-line-retry-key"));
    api::HttpResponse r;
    if (accepted_.count(key)) {
      r.status = 409;
      r.body = R"({"message":"The retry key is already accepted"})";
    } else if (request.path == kMulticast) {
      r = std::move(multicast);
    } else if (std::string to = nlohmann::json::parse(request.body, nullptr, false).value("to", ""); bad_.count(to)) {
      r.status = 400;
      r.body = kInvalidUser;
    } else {
      r.body = R"({"sentMessages":[{"id":"p-)" + to.substr(25) + R"("}]})";
    }
    if (r.status == 200) accepted_.insert(key);
    return r;
  }
  void answer_multicasts(int status, std::string body) { line_server_.script(kMulticast, status, std::move(body)); }
  void refuse_pushes_to(const std::string& user) {
    auto lock = line_server_.lock();
    bad_.insert(user);
  }
  std::vector<Seen> seen(const std::string& path) {
    std::vector<Seen> out;
    for (const api::HttpRequest& r : line_server_.requests(path))
      out.push_back({r.path, std::string(r.header("x-line-retry-key")), std::string(r.header("authorization")),
                     nlohmann::json::parse(r.body, nullptr, false)});
    return out;
  }
  size_t count() { return line_server_.requests().size(); }

  RegistryResult registry(const std::string& channel_extra) {
    testing::OneChannel line{
        .name = "line",
        .plugin = "line",
        .settings = "      base_url: " + line_server_.url() + "\n      channel_access_token_env: LINE_TOKEN\n",
        .channel_extra = channel_extra};
    return testing::registry_for(line.yaml(), clock_, &transport_, "/tmp", {{"LINE_TOKEN", "tok"}});
  }

  std::set<std::string> accepted_, bad_;  // guarded by line_server_.lock()
  testing::ScriptedProvider line_server_;
  SystemClock clock_;
  transport::OutboundTransport transport_{transport::TransportOptions{}};
  RegistryResult reg_;
  Channel* line_ = nullptr;
};

TEST_F(LineMulticast, TwentyIdenticalDeliveriesLeaveAsOneMulticast) {
  EXPECT_EQ(line_->library().descriptor().batch_max, 500u);
  auto outcomes = deliver_concurrently(*line_, deliveries(20));
  ASSERT_EQ(count(), 1u);
  auto sent = seen(kMulticast);
  ASSERT_EQ(sent.size(), 1u);
  EXPECT_EQ(sent[0].authorization, "Bearer tok");
  EXPECT_EQ(sent[0].retry_key.size(), 36u);
  ASSERT_EQ(sent[0].body["to"].size(), 20u);
  EXPECT_EQ(users_of(sent[0].body["to"]), users(0, 20));  // 20 distinct user ids, each of them once
  EXPECT_EQ(sent[0].body["messages"], nlohmann::json::parse(R"([{"type":"text","text":"セール開始"}])"));
  EXPECT_EQ(sent[0].body.size(), 2u) << "exactly {to, messages}: " << sent[0].body;
  for (auto& o : outcomes) {
    EXPECT_EQ(o.kind, OutcomeKind::delivered) << o.reason;
    EXPECT_EQ(o.reason, "");
    EXPECT_EQ(o.provider_message_id, "");  // multicast's 200 {} names no message
  }
}

TEST_F(LineMulticast, TwoContentsLeaveAsTwoMulticasts) {
  auto all = deliveries(10, "おはよう");
  for (auto& d : deliveries(10, "こんばんは", 10)) all.push_back(d);
  auto outcomes = deliver_concurrently(*line_, all);
  auto sent = seen(kMulticast);
  ASSERT_EQ(sent.size(), 2u);
  EXPECT_EQ(count(), 2u);
  auto text = [](const Seen& s) { return s.body["messages"][0]["text"].get<std::string>(); };
  std::sort(sent.begin(), sent.end(), [&](auto& a, auto& b) { return text(a) < text(b); });  // お < こ
  EXPECT_EQ(sent[0].body["messages"][0]["text"], "おはよう");
  EXPECT_EQ(users_of(sent[0].body["to"]), users(0, 10));
  EXPECT_EQ(sent[1].body["messages"][0]["text"], "こんばんは");
  EXPECT_EQ(users_of(sent[1].body["to"]), users(10, 10));
  EXPECT_NE(sent[0].retry_key, sent[1].retry_key);
  for (auto& o : outcomes) EXPECT_EQ(o.kind, OutcomeKind::delivered) << o.reason;
}

TEST_F(LineMulticast, WithoutABatchWindowEveryDeliveryIsAPush) {
  RegistryResult plain = registry("");
  ASSERT_TRUE(plain.registry);
  auto outcomes = deliver_concurrently(*plain.registry->find("line"), deliveries(20));
  auto pushes = seen(kPush);
  EXPECT_EQ(pushes.size(), 20u);
  EXPECT_TRUE(seen(kMulticast).empty());
  std::set<std::string> to;
  for (auto& p : pushes) to.insert(p.body["to"].get<std::string>());
  EXPECT_EQ(to, users(0, 20));
  for (auto& o : outcomes) {
    EXPECT_EQ(o.kind, OutcomeKind::delivered) << o.reason;
    EXPECT_EQ(o.provider_message_id.rfind("p-", 0), 0u);
  }
}

TEST_F(LineMulticast, ARefusedMulticastFallsBackToPushesAndOnlyTheBadIdFails) {
  answer_multicasts(400, kInvalidUser);  // one bad id refuses the whole multicast
  refuse_pushes_to(user(7));
  auto all = deliveries(20);
  auto outcomes = deliver_concurrently(*line_, all);
  EXPECT_EQ(seen(kMulticast).size(), 1u);
  auto pushes = seen(kPush);
  ASSERT_EQ(pushes.size(), 20u);
  std::set<std::string> keys;
  for (auto& p : pushes) keys.insert(p.retry_key);
  EXPECT_EQ(keys.size(), 20u) << "each push carries its own delivery's key";
  for (size_t i = 0; i < all.size(); ++i) {
    SCOPED_TRACE(i);
    if (i == 7) {
      EXPECT_EQ(outcomes[i].kind, OutcomeKind::permanent);
      EXPECT_EQ(outcomes[i].reason, "line.400: The request body has 1 error(s); to: Invalid user ID");
    } else {
      EXPECT_EQ(outcomes[i].kind, OutcomeKind::delivered) << outcomes[i].reason;
      EXPECT_EQ(outcomes[i].provider_message_id, "p-" + all[i].contact.substr(25));
    }
  }
}

// Every multicast answer -> what each member gets, and whether the members were then pushed singly.
TEST_F(LineMulticast, MulticastAnswersBecomeOutcomes) {
  struct Case {
    int status;
    std::string body;
    OutcomeKind kind;
    std::string reason;
    bool pushed;
  };
  const Case cases[] = {
      {200, "{}", OutcomeKind::delivered, "", false},
      {409, R"({"message":"The retry key is already accepted"})", OutcomeKind::delivered, "line.409_already_accepted",
       false},
      {429, R"({"message":"Too many requests"})", OutcomeKind::retry, "line.429", false},
      {500, "", OutcomeKind::retry, "line.500", false},  // may have been accepted: nothing is resent now
      {503, "", OutcomeKind::retry, "line.503", false},
      {400, kInvalidUser, OutcomeKind::delivered, "", true},  // refused as a whole: each member by push
      {403, R"({"message":"Not allowed"})", OutcomeKind::delivered, "", true},
  };
  unsigned round = 0;
  for (const Case& c : cases) {
    SCOPED_TRACE(std::to_string(c.status) + " " + c.body);
    answer_multicasts(c.status, c.body);
    size_t pushes_before = seen(kPush).size();
    auto outcomes = deliver_concurrently(*line_, deliveries(3, "セール開始", 0, ++round));  // fresh retry keys
    EXPECT_EQ(seen(kPush).size() - pushes_before, c.pushed ? 3u : 0u);
    for (auto& o : outcomes) {
      EXPECT_EQ(o.kind, c.kind) << o.reason;
      EXPECT_EQ(o.reason, c.reason);
    }
  }
  EXPECT_EQ(seen(kMulticast).size(), std::size(cases));
}

TEST_F(LineMulticast, TheRetryKeyIsStableForTheSameMembersAndNewForOthers) {
  auto batch = deliveries(5);
  for (auto& o : deliver_concurrently(*line_, batch)) EXPECT_EQ(o.kind, OutcomeKind::delivered) << o.reason;
  // The same batch again (its retry after a lost answer), members handed over in another order.
  std::reverse(batch.begin(), batch.end());
  for (auto& d : batch) d.attempt = 2;
  for (auto& o : deliver_concurrently(*line_, batch)) {
    EXPECT_EQ(o.kind, OutcomeKind::delivered);
    EXPECT_EQ(o.reason, "line.409_already_accepted");  // LINE recognised the key: nobody got it twice
  }
  // Other company: a new key, accepted afresh.
  for (auto& o : deliver_concurrently(*line_, deliveries(4))) {
    EXPECT_EQ(o.kind, OutcomeKind::delivered);
    EXPECT_EQ(o.reason, "");
  }
  auto sent = seen(kMulticast);
  ASSERT_EQ(sent.size(), 3u);
  EXPECT_EQ(sent[0].retry_key, sent[1].retry_key);
  EXPECT_NE(sent[0].retry_key, sent[2].retry_key);
  const std::string& key = sent[0].retry_key;
  ASSERT_EQ(key.size(), 36u);
  for (size_t i = 0; i < key.size(); ++i)
    EXPECT_TRUE((i == 8 || i == 13 || i == 18 || i == 23) ? key[i] == '-' : std::isxdigit(key[i])) << key;
}

TEST_F(LineMulticast, ABatchWithAContactThatIsNotAUserIdIsPushed) {
  auto all = deliveries(3);
  all[1].contact = "C" + all[1].contact.substr(1);  // a group id: push takes it, multicast does not
  auto outcomes = deliver_concurrently(*line_, all);
  EXPECT_TRUE(seen(kMulticast).empty());
  EXPECT_EQ(seen(kPush).size(), 3u);
  for (auto& o : outcomes) EXPECT_EQ(o.kind, OutcomeKind::delivered) << o.reason;
}

}  // namespace
}  // namespace tayori::plugin
