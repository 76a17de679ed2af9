// The `line` plugin's multicast (plugins/line, PROVIDERS.md "LINE Messaging API"): with a batch_window,
// concurrent deliveries of identical content leave as one POST /v2/bot/message/multicast, loaded by the
// real host and sent by the real transport to a scripted local LINE that keeps retry keys like LINE does
// (a key seen on an accepted request answers 409). Personalised content, and anything multicast refuses,
// goes by push.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>

#include "api/http_server.hpp"
#include "batch_test_support.hpp"
#include "config/config.hpp"
#include "plugin/channel.hpp"
#include "transport/http_transport.hpp"

namespace tayori::plugin {
namespace {

using testing::deliver_concurrently;
using testing::hex_id;

constexpr const char* kPush = "/v2/bot/message/push";
constexpr const char* kMulticast = "/v2/bot/message/multicast";
constexpr const char* kInvalidUser =
    R"j({"message":"The request body has 1 error(s)","details":[{"message":"Invalid user ID","property":"to"}]})j";

// LINE as far as these tests need it: push answers 200 with a sentMessages id (400 for the ids in `bad`),
// multicast answers what the test scripts (200 `{}` by default); a retry key already accepted gets 409.
class ScriptedLine final : public api::Handler {
 public:
  struct Seen {
    std::string path;
    std::string retry_key;
    std::string authorization;
    nlohmann::json body;
  };

  void handle(api::HttpRequest request, api::Responder respond) override {
    api::HttpResponse r;
    {
      std::lock_guard lock(mutex_);
      Seen seen{request.path, std::string(request.header("x-line-retry-key")),
                std::string(request.header("authorization")), nlohmann::json::parse(request.body, nullptr, false)};
      seen_.push_back(seen);
      if (accepted_.count(seen.retry_key)) {
        r.status = 409;
        r.body = R"({"message":"The retry key is already accepted"})";
      } else if (request.path == kMulticast) {
        r.status = multicast_status_;
        r.body = multicast_body_;
      } else if (bad_.count(seen.body.value("to", ""))) {
        r.status = 400;
        r.body = kInvalidUser;
      } else {
        r.body = R"({"sentMessages":[{"id":"p-)" + seen.body.value("to", "").substr(25) + R"("}]})";
      }
      if (r.status == 200) accepted_.insert(seen.retry_key);
    }
    respond(r);
  }
  void answer_multicasts(int status, std::string body) {
    std::lock_guard lock(mutex_);
    multicast_status_ = status;
    multicast_body_ = std::move(body);
  }
  void refuse_pushes_to(const std::string& user) {
    std::lock_guard lock(mutex_);
    bad_.insert(user);
  }
  std::vector<Seen> seen(const std::string& path) {
    std::lock_guard lock(mutex_);
    std::vector<Seen> out;
    for (auto& s : seen_)
      if (s.path == path) out.push_back(s);
    return out;
  }
  size_t count() {
    std::lock_guard lock(mutex_);
    return seen_.size();
  }

 private:
  std::mutex mutex_;
  std::vector<Seen> seen_;
  std::set<std::string> accepted_, bad_;
  int multicast_status_ = 200;
  std::string multicast_body_ = "{}";  // PROVIDERS.md: multicast answers 200 {}
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

class LineMulticast : public ::testing::Test {
 protected:
  void SetUp() override {
    port_ = server_.start("127.0.0.1", 0);
    reg_ = registry("    batch_window: 200ms\n");
    ASSERT_TRUE(reg_.registry) << (reg_.errors.empty() ? "" : reg_.errors[0].to_string());
    line_ = reg_.registry->find("line");
  }
  void TearDown() override { server_.stop(0); }

  RegistryResult registry(const std::string& channel_extra) {
    std::string yaml = "api_keys: [{name: t, key_env: K}]\nplugin_dirs: [" TAYORI_PLUGIN_DIR
                       "]\n"
                       "channels:\n  - name: line\n    plugin: line\n" +
                       channel_extra + "    settings:\n      base_url: http://127.0.0.1:" + std::to_string(port_) +
                       "\n      channel_access_token_env: LINE_TOKEN\n";
    loaded_ = config::load_string(yaml, "t.yaml", "/tmp", [](const std::string& name) {
      return name == "LINE_TOKEN" ? std::string("tok") : std::string("k");
    });
    if (!loaded_.config) return {{}, loaded_.errors};
    return build_registry(*loaded_.config, clock_, &transport_);
  }

  ScriptedLine line_server_;
  api::HttpServer server_{line_server_, api::ServerLimits{}, 2};
  uint16_t port_ = 0;
  SystemClock clock_;
  transport::HttpTransport transport_{transport::TransportOptions{}};
  config::LoadResult loaded_;
  RegistryResult reg_;
  Channel* line_ = nullptr;
};

TEST_F(LineMulticast, TwentyIdenticalDeliveriesLeaveAsOneMulticast) {
  EXPECT_EQ(line_->library().descriptor().batch_max, 500u);
  auto outcomes = deliver_concurrently(*line_, deliveries(20));
  ASSERT_EQ(line_server_.count(), 1u);
  auto sent = line_server_.seen(kMulticast);
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
  auto sent = line_server_.seen(kMulticast);
  ASSERT_EQ(sent.size(), 2u);
  EXPECT_EQ(line_server_.count(), 2u);
  auto text = [](const ScriptedLine::Seen& s) { return s.body["messages"][0]["text"].get<std::string>(); };
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
  auto pushes = line_server_.seen(kPush);
  EXPECT_EQ(pushes.size(), 20u);
  EXPECT_TRUE(line_server_.seen(kMulticast).empty());
  std::set<std::string> to;
  for (auto& p : pushes) to.insert(p.body["to"].get<std::string>());
  EXPECT_EQ(to, users(0, 20));
  for (auto& o : outcomes) {
    EXPECT_EQ(o.kind, OutcomeKind::delivered) << o.reason;
    EXPECT_EQ(o.provider_message_id.rfind("p-", 0), 0u);
  }
}

TEST_F(LineMulticast, ARefusedMulticastFallsBackToPushesAndOnlyTheBadIdFails) {
  line_server_.answer_multicasts(400, kInvalidUser);  // one bad id refuses the whole multicast
  line_server_.refuse_pushes_to(user(7));
  auto all = deliveries(20);
  auto outcomes = deliver_concurrently(*line_, all);
  EXPECT_EQ(line_server_.seen(kMulticast).size(), 1u);
  auto pushes = line_server_.seen(kPush);
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
    line_server_.answer_multicasts(c.status, c.body);
    size_t pushes_before = line_server_.seen(kPush).size();
    auto outcomes = deliver_concurrently(*line_, deliveries(3, "セール開始", 0, ++round));  // fresh retry keys
    EXPECT_EQ(line_server_.seen(kPush).size() - pushes_before, c.pushed ? 3u : 0u);
    for (auto& o : outcomes) {
      EXPECT_EQ(o.kind, c.kind) << o.reason;
      EXPECT_EQ(o.reason, c.reason);
    }
  }
  EXPECT_EQ(line_server_.seen(kMulticast).size(), std::size(cases));
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
  auto sent = line_server_.seen(kMulticast);
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
  EXPECT_TRUE(line_server_.seen(kMulticast).empty());
  EXPECT_EQ(line_server_.seen(kPush).size(), 3u);
  for (auto& o : outcomes) EXPECT_EQ(o.kind, OutcomeKind::delivered) << o.reason;
}

}  // namespace
}  // namespace tayori::plugin
