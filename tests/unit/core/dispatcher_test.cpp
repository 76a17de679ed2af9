// Tests for the dispatcher's pure decisions (gateway/core/dispatcher.cpp): which channel a message goes
// to, what one attempt's outcome means (delivered, retry with full-jitter backoff, fallback, failure),
// and the delivery handed to a plugin. No store, no plugin, no clock: every input is given.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <map>
#include <set>
#include <string>
#include <vector>

#include "common/time.hpp"
#include "core/dispatcher.hpp"
#include "crypto/crypto.hpp"
#include "policy/policy.hpp"
#include "policy/timezone.hpp"

namespace tayori::core {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;

constexpr int64_t kNow = 1'795'474'800'000;  // 2026-11-23T23:00:00Z
constexpr int64_t kDispatchedAt = kNow - 250;

// Channels as configured: name -> the recipient contact kind it uses.
const std::map<std::string, std::string> kConfigured = {
    {"push", "push.fcm"}, {"apns", "push.apns"}, {"sms", "phone"}, {"email", "email"}, {"line", "line"}};

policy::ChannelLookup lookup_in(const std::map<std::string, std::string>& configured,
                                const std::set<std::string>& unavailable = {}) {
  return [configured, unavailable](const std::string& name) -> std::optional<policy::ChannelView> {
    auto it = configured.find(name);
    if (it == configured.end()) return std::nullopt;
    return policy::ChannelView{it->second, !unavailable.count(name)};
  };
}

Message message(std::vector<std::string> channels) {
  Message m;
  m.id = "order-1";
  m.recipient.id = "user-42";
  m.recipient.locale = "ja-JP";
  m.recipient.timezone = "Asia/Tokyo";
  m.recipient.contacts = {{"email", "hanako@example.jp"}, {"phone", "+819012345678"}};
  m.recipient.push = {{"fcm", "fcm-token"}};
  m.purpose = Purpose::transactional;  // consented by default, outside quiet hours and caps: routing alone
  m.category = "orders.shipped";
  m.channels = std::move(channels);
  m.content = {{"text", "Shipped"}, {"subject", "Your order"}};
  m.metadata = {{"campaign", "c1"}};
  return m;
}

const policy::TimeZone& utc() {
  static const policy::TimeZone zone = *policy::TimeZone::load("UTC");
  return zone;
}

// The channel choice, as the dispatcher makes it: policy::decide with nothing but routing in play.
policy::Decision choose(const Message& m, int from_index, const policy::ChannelLookup& lookup,
                        const policy::RecipientState& state = {}) {
  static const policy::PolicyConfig config;
  policy::DecisionInput in{policy_facts(m), from_index, state, config, lookup, utc(), kNow, 0.0};
  return policy::decide(in);
}

using P = std::pair<std::string, std::string>;

std::vector<P> skips(const Json& skipped) {
  std::vector<P> out;
  for (const auto& s : skipped) out.emplace_back(s.at("channel").get<std::string>(), s.at("reason").get<std::string>());
  return out;
}

// ---- channel choice (policy::decide's `route` step) and choice_of -------------------------------------

TEST(ChooseChannel, TakesTheFirstChannelInPreferenceOrder) {
  policy::Decision d = choose(message({"push", "sms", "email"}), 0, lookup_in(kConfigured));
  EXPECT_EQ(d.verdict, policy::Verdict::send);
  ChannelChoice r = choice_of(d);
  EXPECT_EQ(r.channel_index, 0);
  EXPECT_EQ(r.channel, "push");
  EXPECT_EQ(r.contact, "fcm-token");
  EXPECT_TRUE(r.skipped.empty());

  r = choice_of(choose(message({"email", "push"}), 0, lookup_in(kConfigured)));
  EXPECT_EQ(r.channel, "email");
  EXPECT_EQ(r.contact, "hanako@example.jp");
}

TEST(ChooseChannel, SkipsWithReasons) {
  auto configured = kConfigured;
  configured.erase("sms");  // removed by a reload after the message was accepted
  policy::Decision d = choose(message({"apns", "sms", "line", "push", "email"}), 0, lookup_in(configured, {"push"}));
  EXPECT_EQ(d.verdict, policy::Verdict::send);
  ChannelChoice r = choice_of(d);
  EXPECT_EQ(r.channel_index, 4);
  EXPECT_EQ(r.channel, "email");
  EXPECT_EQ(r.contact, "hanako@example.jp");
  EXPECT_THAT(skips(r.skipped), ElementsAre(P{"apns", "no_contact"}, P{"sms", "channel_not_configured"},
                                            P{"line", "no_contact"}, P{"push", "channel_unavailable"}));
}

TEST(ChooseChannel, SuppressedContactIsSkippedEvenForTransactional) {
  policy::RecipientState state;
  state.suppressed["fcm-token"] = {"fcm-token", "unregistered", "push", kNow - 1000};
  ChannelChoice r = choice_of(choose(message({"push", "email"}), 0, lookup_in(kConfigured), state));
  EXPECT_EQ(r.channel, "email");
  EXPECT_THAT(skips(r.skipped), ElementsAre(P{"push", "suppressed_contact"}));
}

TEST(ChooseChannel, FromIndexStartsTheSearchThereForFallback) {
  Message m = message({"push", "line", "sms", "email"});
  ChannelChoice r = choice_of(choose(m, 1, lookup_in(kConfigured)));
  EXPECT_EQ(r.channel_index, 2);
  EXPECT_EQ(r.channel, "sms");
  EXPECT_EQ(r.contact, "+819012345678");
  EXPECT_THAT(skips(r.skipped), ElementsAre(P{"line", "no_contact"}));  // "push" (before from_index) not mentioned

  r = choice_of(choose(m, 3, lookup_in(kConfigured)));
  EXPECT_EQ(r.channel, "email");
  EXPECT_EQ(r.channel_index, 3);
  EXPECT_TRUE(r.skipped.empty());
}

TEST(ChooseChannel, NegativeFromIndexStartsAtTheBeginning) {
  ChannelChoice r = choice_of(choose(message({"push", "email"}), -3, lookup_in(kConfigured)));
  EXPECT_EQ(r.channel_index, 0);
  EXPECT_EQ(r.channel, "push");
}

TEST(ChooseChannel, NoneFoundSuppressesWithTheSkips) {
  policy::Decision d = choose(message({"line", "fax", "apns"}), 0, lookup_in(kConfigured));
  EXPECT_EQ(d.verdict, policy::Verdict::suppress);
  EXPECT_EQ(d.reason, "no_usable_channel");
  EXPECT_EQ(d.channel, "");
  EXPECT_EQ(d.channel_index, -1);
  EXPECT_EQ(d.detail["reason"], "no_usable_channel");
  EXPECT_THAT(skips(d.detail["skipped"]), ElementsAre(P{"line", "no_contact"}, P{"fax", "channel_not_configured"},
                                                      P{"apns", "no_contact"}));

  // Past the end (the last channel failed permanently): nothing to try, nothing skipped.
  d = choose(message({"email"}), 1, lookup_in(kConfigured));
  EXPECT_EQ(d.verdict, policy::Verdict::suppress);
  EXPECT_EQ(d.reason, "no_usable_channel");
  EXPECT_TRUE(d.detail["skipped"].empty());
}

TEST(ChooseChannel, AsksTheLookupOnlyForChannelsItConsiders) {
  std::vector<std::string> asked;
  policy::ChannelLookup lookup = [&](const std::string& name) -> std::optional<policy::ChannelView> {
    asked.push_back(name);
    return lookup_in(kConfigured)(name);
  };
  ChannelChoice r = choice_of(choose(message({"push", "line", "sms", "email"}), 1, lookup));
  EXPECT_EQ(r.channel, "sms");
  EXPECT_THAT(asked, ElementsAre("line", "sms"));  // stops at the first usable channel
}

TEST(ChoiceOf, CopiesTheDecisionAndItsSkips) {
  policy::Decision d;
  d.verdict = policy::Verdict::send;
  d.channel_index = 2;
  d.channel = "sms";
  d.contact = "+819012345678";
  d.detail = {{"skipped", Json::parse(R"([{"channel":"push","reason":"no_contact"}])")}};
  ChannelChoice r = choice_of(d);
  EXPECT_EQ(r.channel_index, 2);
  EXPECT_EQ(r.channel, "sms");
  EXPECT_EQ(r.contact, "+819012345678");
  EXPECT_EQ(r.skipped, Json::parse(R"([{"channel":"push","reason":"no_contact"}])"));
  d.detail = Json::object();
  EXPECT_EQ(choice_of(d).skipped, Json::array());
}

// ---- decide_after_attempt -----------------------------------------------------------------------------

store::MessageRecord record(int attempts, int channel_index = 0) {
  store::MessageRecord r;
  r.id = "order-1";
  r.state = store::State::dispatched;
  r.attempts = attempts;
  r.channel_attempts = attempts;
  r.channel_since_ms = kDispatchedAt;
  r.channel_index = channel_index;
  r.due_at_ms = kNow - 60'000;
  return r;
}

config::RetryPolicy dispatcher_config(int max_attempts = 5, int64_t retry_base_ms = 1'000) {
  config::RetryPolicy c;
  c.max_attempts = max_attempts;
  c.base_ms = retry_base_ms;
  return c;
}

plugin::DeliveryOutcome outcome(plugin::OutcomeKind kind, std::string reason = "", int64_t retry_after_ms = 0) {
  plugin::DeliveryOutcome o;
  o.kind = kind;
  o.reason = std::move(reason);
  o.retry_after_ms = retry_after_ms;
  return o;
}

ChannelChoice chosen(const Message& m, int from_index = 0) {
  return choice_of(choose(m, from_index, lookup_in(kConfigured)));
}

std::vector<std::string> types(const store::Transition& t) {
  std::vector<std::string> out;
  for (const auto& e : t.events) out.push_back(e.type);
  return out;
}

Json detail(const store::Transition& t, size_t i) { return Json::parse(t.events.at(i).detail_json); }

TEST(DecideAfterAttempt, DeliveredRecordsDispatchedAndDelivered) {
  Message m = message({"email", "sms"});
  store::Transition t = decide_after_attempt(record(1), m, chosen(m), outcome(plugin::OutcomeKind::delivered),
                                             dispatcher_config(), kDispatchedAt, kNow, 0.5);
  EXPECT_EQ(t.message_id, "order-1");
  EXPECT_EQ(t.to, store::State::delivered);
  EXPECT_EQ(t.channel, "email");
  EXPECT_EQ(t.channel_index, 0);
  EXPECT_EQ(t.due_at_ms, kNow - 60'000);  // unchanged
  EXPECT_EQ(t.last_reason, "");
  ASSERT_THAT(types(t), ElementsAre("dispatched", "delivered"));
  EXPECT_EQ(t.events[0].at_ms, kDispatchedAt);  // the attempt started then
  EXPECT_EQ(t.events[1].at_ms, 0);               // the time of the write
  EXPECT_EQ(detail(t, 0), (Json{{"channel", "email"}, {"attempt", 1}}));
  EXPECT_EQ(detail(t, 1), (Json{{"channel", "email"}}));
  // In the canonical form every detail is stored in (dump_json's).
  EXPECT_EQ(t.events[0].detail_json, dump_json(detail(t, 0)));
  EXPECT_EQ(t.events[1].detail_json, dump_json(detail(t, 1)));
}

// A provider's id that is not UTF-8 is kept as given on the message, and written with U+FFFD in the event's JSON.
TEST(DecideAfterAttempt, AProviderIdThatIsNotUtf8IsReplacedInTheEventOnly) {
  Message m = message({"email"});
  plugin::DeliveryOutcome o = outcome(plugin::OutcomeKind::delivered);
  o.provider_message_id = "id-\xFF";
  store::Transition t = decide_after_attempt(record(1), m, chosen(m), o, dispatcher_config(), kDispatchedAt, kNow, 0.5);
  EXPECT_EQ(t.provider_message_id, "id-\xFF");
  EXPECT_EQ(t.events[1].detail_json, "{\"channel\":\"email\",\"provider_message_id\":\"id-\xEF\xBF\xBD\"}");
}

TEST(DecideAfterAttempt, DeliveredCarriesTheProviderMessageIdAndSkips) {
  Message m = message({"line", "push", "email"});
  plugin::DeliveryOutcome o = outcome(plugin::OutcomeKind::delivered);
  o.provider_message_id = "projects/p/messages/0:1500415314455276%31bd1c9631bd1c96";
  store::Transition t =
      decide_after_attempt(record(3, 0), m, chosen(m), o, dispatcher_config(), kDispatchedAt, kNow, 0.5);
  EXPECT_EQ(t.to, store::State::delivered);
  EXPECT_EQ(t.channel, "push");
  EXPECT_EQ(t.channel_index, 1);
  ASSERT_THAT(types(t), ElementsAre("dispatched", "delivered"));
  EXPECT_EQ(detail(t, 0), Json::parse(R"({"channel": "push", "attempt": 3,
                                         "skipped": [{"channel": "line", "reason": "no_contact"}]})"));
  EXPECT_EQ(detail(t, 1)["provider_message_id"], "projects/p/messages/0:1500415314455276%31bd1c9631bd1c96");
  // Recorded on the message too: receipts and replies find it by this id (Store::find_by_provider_id).
  EXPECT_EQ(t.provider_message_id, "projects/p/messages/0:1500415314455276%31bd1c9631bd1c96");
}

struct BackoffCase {
  int attempts;
  int64_t base_ms;
  double jitter;
  int64_t expected_wait_ms;
};

class DecideBackoff : public ::testing::TestWithParam<BackoffCase> {};

TEST_P(DecideBackoff, FullJitterOfTheCappedExponential) {
  const BackoffCase& c = GetParam();
  Message m = message({"email"});
  store::Transition t =
      decide_after_attempt(record(c.attempts), m, chosen(m), outcome(plugin::OutcomeKind::retry, "http_503"),
                           dispatcher_config(1000, c.base_ms), kDispatchedAt, kNow, c.jitter);
  EXPECT_EQ(t.to, store::State::scheduled);
  EXPECT_EQ(t.due_at_ms, kNow + c.expected_wait_ms);
  EXPECT_EQ(t.channel, "email");
  EXPECT_EQ(t.channel_index, 0);
  EXPECT_EQ(t.last_reason, "http_503");
  ASSERT_THAT(types(t), ElementsAre("dispatched", "retry_scheduled"));
  EXPECT_EQ(detail(t, 1), (Json{{"channel", "email"},
                                {"reason", "http_503"},
                                {"until", format_rfc3339_ms(kNow + c.expected_wait_ms)}}));
}

// due = now + jitter * min(cap = 1h, base * 2^(attempts-1))
INSTANTIATE_TEST_SUITE_P(Table, DecideBackoff,
                         ::testing::Values(BackoffCase{1, 1'000, 0.5, 500},          // 0.5 * 1s
                                           BackoffCase{2, 1'000, 0.5, 1'000},        // 0.5 * 2s
                                           BackoffCase{3, 1'000, 0.5, 2'000},        // 0.5 * 4s
                                           BackoffCase{5, 1'000, 0.5, 8'000},        // 0.5 * 16s
                                           BackoffCase{4, 5'000, 0.25, 10'000},      // 0.25 * 40s
                                           BackoffCase{10, 5'000, 0.5, 1'280'000},   // 0.5 * 2560s (under the cap)
                                           BackoffCase{11, 5'000, 0.5, 1'800'000},   // 5120s capped at 3600s
                                           BackoffCase{40, 5'000, 0.5, 1'800'000},   // huge exponents stay capped
                                           BackoffCase{999, 1, 0.5, 1'800'000},      // no overflow: the cap holds
                                           BackoffCase{3, 1'000, 0.0, 1},            // never "now": at least 1ms
                                           BackoffCase{1, 1'000, 0.9999, 999}));     // truncated, below the ceiling

TEST(DecideAfterAttempt, RetryAfterIsHonouredExactly) {
  Message m = message({"email"});
  for (double jitter : {0.0, 0.5, 0.99}) {
    store::Transition t =
        decide_after_attempt(record(2), m, chosen(m), outcome(plugin::OutcomeKind::retry, "http_429", 42'000),
                             dispatcher_config(), kDispatchedAt, kNow, jitter);
    EXPECT_EQ(t.to, store::State::scheduled);
    EXPECT_EQ(t.due_at_ms, kNow + 42'000) << jitter;
  }
  // Longer than the backoff cap: still honoured (the provider said so).
  store::Transition t =
      decide_after_attempt(record(1), m, chosen(m), outcome(plugin::OutcomeKind::retry, "http_429", 7'200'000),
                           dispatcher_config(), kDispatchedAt, kNow, 0.5);
  EXPECT_EQ(t.due_at_ms, kNow + 7'200'000);
}

TEST(DecideAfterAttempt, RetryAtMaxAttemptsFallsBackThenDies) {
  Message m = message({"email", "sms"});
  // The channel's budget is spent: the next channel takes over at once, with a fresh budget.
  store::Transition t = decide_after_attempt(record(5), m, chosen(m), outcome(plugin::OutcomeKind::retry, "timeout"),
                                             dispatcher_config(5), kDispatchedAt, kNow, 0.5);
  EXPECT_EQ(t.to, store::State::scheduled);
  EXPECT_EQ(t.channel_index, 1);
  EXPECT_TRUE(t.next_channel);
  EXPECT_EQ(t.due_at_ms, kNow);
  EXPECT_EQ(t.last_reason, "timeout");
  ASSERT_THAT(types(t), ElementsAre("dispatched", "attempt_failed"));
  EXPECT_EQ(detail(t, 1), (Json{{"channel", "email"},
                                {"reason", "max_attempts"},
                                {"attempts", 5},
                                {"since", format_rfc3339_ms(kDispatchedAt)},
                                {"last_reason", "timeout"},
                                {"fallback_to", "sms"}}));

  // On the last channel it is a dead letter, with the last provider answer.
  Message alone = message({"email"});
  t = decide_after_attempt(record(5), alone, chosen(alone), outcome(plugin::OutcomeKind::retry, "http 503: busy"),
                           dispatcher_config(5), kDispatchedAt, kNow, 0.5);
  EXPECT_EQ(t.to, store::State::dead);
  EXPECT_FALSE(t.next_channel);
  EXPECT_EQ(t.last_reason, "http 503: busy");
  EXPECT_EQ(t.due_at_ms, kNow - 60'000);
  ASSERT_THAT(types(t), ElementsAre("dispatched", "dead"));
  EXPECT_EQ(detail(t, 1)["reason"], "max_attempts");
  EXPECT_EQ(detail(t, 1)["last_reason"], "http 503: busy");

  // One attempt fewer is still retried on the same channel.
  t = decide_after_attempt(record(4), m, chosen(m), outcome(plugin::OutcomeKind::retry, "timeout"),
                           dispatcher_config(5), kDispatchedAt, kNow, 0.5);
  EXPECT_EQ(t.to, store::State::scheduled);
  EXPECT_EQ(t.channel_index, 0);

  // max_attempts = 1: the first retryable failure spends the channel.
  t = decide_after_attempt(record(1), alone, chosen(alone), outcome(plugin::OutcomeKind::retry, "timeout"),
                           dispatcher_config(1), kDispatchedAt, kNow, 0.5);
  EXPECT_EQ(t.to, store::State::dead);
}

TEST(DecideAfterAttempt, MaxAgeCountsFromTheFirstAttemptOnTheChannel) {
  Message m = message({"email"});
  config::RetryPolicy retry = dispatcher_config(100, 1'000);
  retry.max_age_ms = 60'000;
  store::MessageRecord r = record(3);
  // The next retry (0.5 * 4s = 2s) would still fall within a minute of the first attempt.
  r.channel_since_ms = kNow - 57'000;
  store::Transition t = decide_after_attempt(r, m, chosen(m), outcome(plugin::OutcomeKind::retry, "timeout"), retry,
                                             kDispatchedAt, kNow, 0.5);
  EXPECT_EQ(t.to, store::State::scheduled);
  EXPECT_EQ(t.due_at_ms, kNow + 2'000);
  // It would not: dead, by max_age.
  r.channel_since_ms = kNow - 58'001;
  t = decide_after_attempt(r, m, chosen(m), outcome(plugin::OutcomeKind::retry, "timeout"), retry, kDispatchedAt, kNow,
                           0.5);
  EXPECT_EQ(t.to, store::State::dead);
  EXPECT_EQ(detail(t, 1)["reason"], "max_age");
}

TEST(DecideAfterAttempt, TheChannelsCapBoundsTheWait) {
  Message m = message({"email"});
  config::RetryPolicy retry = dispatcher_config(100, 1'000);
  retry.cap_ms = 10'000;
  store::Transition t = decide_after_attempt(record(9), m, chosen(m), outcome(plugin::OutcomeKind::retry, "timeout"),
                                             retry, kDispatchedAt, kNow, 0.5);
  EXPECT_EQ(t.due_at_ms, kNow + 5'000);  // 0.5 * min(10s, 256s)
}

TEST(DecideAfterAttempt, RetryPastExpiryFailsAsExpired) {
  Message m = message({"email"});
  m.expires_at_ms = kNow + 10'000;
  // Retry-After 10s lands exactly on expires_at: too late.
  store::Transition t =
      decide_after_attempt(record(1), m, chosen(m), outcome(plugin::OutcomeKind::retry, "http_429", 10'000),
                           dispatcher_config(), kDispatchedAt, kNow, 0.5);
  EXPECT_EQ(t.to, store::State::failed);
  EXPECT_EQ(t.last_reason, "http_429");
  ASSERT_THAT(types(t), ElementsAre("dispatched", "failed"));
  EXPECT_EQ(detail(t, 1), (Json{{"channel", "email"}, {"reason", "expired"}, {"last_reason", "http_429"}}));

  // One millisecond earlier is still in time.
  t = decide_after_attempt(record(1), m, chosen(m), outcome(plugin::OutcomeKind::retry, "http_429", 9'999),
                           dispatcher_config(), kDispatchedAt, kNow, 0.5);
  EXPECT_EQ(t.to, store::State::scheduled);
  EXPECT_EQ(t.due_at_ms, kNow + 9'999);

  // Backoff (no Retry-After) past expiry: 0.5 * 2^(4-1) * 1s = 4s > 3s left.
  m.expires_at_ms = kNow + 3'000;
  t = decide_after_attempt(record(4), m, chosen(m), outcome(plugin::OutcomeKind::retry, "http_503"),
                           dispatcher_config(), kDispatchedAt, kNow, 0.5);
  EXPECT_EQ(t.to, store::State::failed);
  EXPECT_EQ(detail(t, 1)["reason"], "expired");
}

TEST(DecideAfterAttempt, PermanentFallsBackToTheNextChannelNow) {
  Message m = message({"push", "email", "sms"});
  plugin::DeliveryOutcome o = outcome(plugin::OutcomeKind::permanent, "unregistered");
  store::Transition t = decide_after_attempt(record(2), m, chosen(m), o, dispatcher_config(), kDispatchedAt, kNow, 0.5);
  EXPECT_EQ(t.to, store::State::scheduled);
  EXPECT_EQ(t.due_at_ms, kNow);
  EXPECT_EQ(t.channel_index, 1);
  EXPECT_EQ(t.channel, "push");  // the channel last used
  EXPECT_EQ(t.last_reason, "unregistered");
  ASSERT_THAT(types(t), ElementsAre("dispatched", "attempt_failed"));
  EXPECT_EQ(detail(t, 1), (Json{{"channel", "push"}, {"reason", "unregistered"}, {"fallback_to", "email"}}));
}

TEST(DecideAfterAttempt, FallbackMovesPastTheChannelActuallyUsed) {
  // The choice skipped "line" (no contact) and used "email" at index 1: the next turn is index 2.
  Message m = message({"line", "email", "sms"});
  ChannelChoice choice = chosen(m);
  ASSERT_EQ(choice.channel_index, 1);
  store::Transition t = decide_after_attempt(record(1), m, choice, outcome(plugin::OutcomeKind::permanent, "bounced"),
                                             dispatcher_config(), kDispatchedAt, kNow, 0.5);
  EXPECT_EQ(t.to, store::State::scheduled);
  EXPECT_EQ(t.channel_index, 2);
  EXPECT_EQ(detail(t, 1)["fallback_to"], "sms");
  EXPECT_EQ(detail(t, 0)["skipped"], Json::parse(R"([{"channel": "line", "reason": "no_contact"}])"));
}

TEST(DecideAfterAttempt, PermanentOnTheLastChannelFails) {
  Message m = message({"push", "email"});
  store::Transition t = decide_after_attempt(record(1, 1), m, chosen(m, 1),
                                             outcome(plugin::OutcomeKind::permanent, "mailbox_unavailable"),
                                             dispatcher_config(), kDispatchedAt, kNow, 0.5);
  EXPECT_EQ(t.to, store::State::failed);
  EXPECT_EQ(t.channel, "email");
  EXPECT_EQ(t.channel_index, 1);
  EXPECT_EQ(t.last_reason, "mailbox_unavailable");
  ASSERT_THAT(types(t), ElementsAre("dispatched", "failed"));
  EXPECT_EQ(detail(t, 1), (Json{{"channel", "email"}, {"reason", "mailbox_unavailable"}}));
}

TEST(DecideAfterAttempt, DeactivateContactIsCarriedInTheEvent) {
  plugin::DeliveryOutcome o = outcome(plugin::OutcomeKind::permanent, "unregistered");
  o.deactivate_contact = true;
  // With a fallback …
  Message m = message({"push", "email"});
  store::Transition t = decide_after_attempt(record(1), m, chosen(m), o, dispatcher_config(), kDispatchedAt, kNow, 0.5);
  EXPECT_EQ(detail(t, 1), (Json{{"channel", "push"},
                                {"reason", "unregistered"},
                                {"deactivate_contact", true},
                                {"fallback_to", "email"}}));
  // … and without one.
  Message only = message({"push"});
  t = decide_after_attempt(record(1), only, chosen(only), o, dispatcher_config(), kDispatchedAt, kNow, 0.5);
  EXPECT_EQ(t.to, store::State::failed);
  EXPECT_EQ(detail(t, 1), (Json{{"channel", "push"}, {"reason", "unregistered"}, {"deactivate_contact", true}}));
  // Not set: not mentioned.
  o.deactivate_contact = false;
  t = decide_after_attempt(record(1), only, chosen(only), o, dispatcher_config(), kDispatchedAt, kNow, 0.5);
  EXPECT_FALSE(detail(t, 1).contains("deactivate_contact"));
}

// ---- fail_before_attempt ------------------------------------------------------------------------------

TEST(FailBeforeAttempt, FailsSayingWhyAndKeepsThePlace) {
  store::MessageRecord r = record(2, 1);
  r.channel = "push";
  const std::string detail_json = R"({"reason":"no_usable_channel","skipped":[]})";
  store::Transition t = fail_before_attempt(r, "no_usable_channel", detail_json);
  EXPECT_EQ(t.message_id, "order-1");
  EXPECT_EQ(t.to, store::State::failed);
  EXPECT_EQ(t.channel, "push");
  EXPECT_EQ(t.channel_index, 1);
  EXPECT_EQ(t.due_at_ms, kNow - 60'000);
  EXPECT_EQ(t.last_reason, "no_usable_channel");
  ASSERT_EQ(t.events.size(), 1u);
  EXPECT_EQ(t.events[0].type, "failed");
  EXPECT_EQ(t.events[0].detail_json, detail_json);
  EXPECT_EQ(t.events[0].at_ms, 0);
}

// ---- decide_after_error --------------------------------------------------------------------------------

TEST(DecideAfterError, RetriesWithTheBudgetThenEndsDeadSayingWhy) {
  config::RetryPolicy retry = dispatcher_config(3, 1'000);
  store::MessageRecord r = record(1, 1);
  r.recipient_id = "r-1";
  store::Transition t = decide_after_error(r, "type_error: platform is a number", retry, kNow, 0.5);
  EXPECT_EQ(t.to, store::State::scheduled);
  EXPECT_EQ(t.recipient_id, "r-1");
  EXPECT_EQ(t.channel_index, 1);
  EXPECT_FALSE(t.no_attempt);  // the claim counts: a message that always fails must run out of attempts
  EXPECT_EQ(t.due_at_ms, kNow + 500);  // 0.5 of base * 2^0
  EXPECT_EQ(t.last_reason, "internal_error: type_error: platform is a number");
  ASSERT_EQ(types(t), std::vector<std::string>{"retry_scheduled"});
  EXPECT_EQ(detail(t, 0)["reason"], "internal_error");
  EXPECT_EQ(detail(t, 0)["error"], "type_error: platform is a number");

  EXPECT_EQ(decide_after_error(record(2), "x", retry, kNow, 0.5).due_at_ms, kNow + 1'000);  // 0.5 of base * 2^1

  store::Transition last = decide_after_error(record(3), "x", retry, kNow, 0.5);
  EXPECT_EQ(last.to, store::State::dead);
  ASSERT_EQ(types(last), std::vector<std::string>{"dead"});
  EXPECT_EQ(detail(last, 0)["attempts"], 3);
  EXPECT_EQ(detail(last, 0)["last_reason"], "internal_error: x");
}

// ---- decide_without_attempt ----------------------------------------------------------------------------

TEST(DecideWithoutAttempt, DeferSchedulesAgainAtTheGivenTime) {
  store::MessageRecord r = record(0, 1);
  r.channel = "push";
  policy::Decision d;
  d.verdict = policy::Verdict::defer;
  d.until_ms = kNow + 9 * 3'600'000;
  d.reason = "quiet_hours";
  d.rule = "quiet_hours.night";
  d.detail = {{"reason", "quiet_hours"}, {"rule", "quiet_hours.night"}, {"until", "2026-11-24T08:00:00+09:00"}};
  store::Transition t = decide_without_attempt(r, d);
  EXPECT_EQ(t.message_id, "order-1");
  EXPECT_EQ(t.to, store::State::scheduled);
  EXPECT_EQ(t.due_at_ms, kNow + 9 * 3'600'000);
  EXPECT_EQ(t.channel, "push");  // where the message was: a deferral does not move it along
  EXPECT_EQ(t.channel_index, 1);
  EXPECT_EQ(t.last_reason, "quiet_hours");
  ASSERT_THAT(types(t), ElementsAre("deferred"));
  EXPECT_EQ(detail(t, 0), d.detail);
}

TEST(DecideWithoutAttempt, SuppressIsFinalWithTheReason) {
  policy::Decision d;
  d.verdict = policy::Verdict::suppress;
  d.reason = "frequency_cap";
  d.rule = "caps.marketing_daily";
  d.detail = {{"reason", "frequency_cap"}, {"rule", "caps.marketing_daily"}, {"limit", 3}, {"window", "1d"}};
  store::Transition t = decide_without_attempt(record(0), d);
  EXPECT_EQ(t.to, store::State::suppressed);
  EXPECT_EQ(t.due_at_ms, kNow - 60'000);  // unchanged
  EXPECT_EQ(t.last_reason, "frequency_cap");
  ASSERT_THAT(types(t), ElementsAre("suppressed"));
  EXPECT_EQ(detail(t, 0)["limit"], 3);
  EXPECT_EQ(detail(t, 0)["rule"], "caps.marketing_daily");
}

TEST(DecideWithoutAttempt, NoUsableChannelToChooseIsSuppressed) {
  policy::Decision d = choose(message({"line"}), 0, lookup_in(kConfigured));
  store::Transition t = decide_without_attempt(record(0), d);
  EXPECT_EQ(t.to, store::State::suppressed);
  EXPECT_EQ(t.last_reason, "no_usable_channel");
  EXPECT_EQ(detail(t, 0), Json::parse(R"({"reason": "no_usable_channel",
                                         "skipped": [{"channel": "line", "reason": "no_contact"}]})"));
}

// ---- make_delivery ------------------------------------------------------------------------------------

TEST(MakeDelivery, CarriesTheMessageAndChannelChoice) {
  Message m = message({"push", "email"});
  m.expires_at_ms = kNow + 3'600'000;
  ChannelChoice choice = chosen(m);
  m.purpose = Purpose::marketing;  // after the choice: marketing would need consent to be sent at all
  plugin::DeliveryRequest d = make_delivery(record(3), m, choice);
  EXPECT_EQ(d.message_id, "order-1");
  EXPECT_EQ(d.delivery_id, crypto::sha256_hex("order-1\npush").substr(0, 32));
  EXPECT_EQ(d.delivery_id.size(), 32u);
  EXPECT_EQ(d.attempt, 3u);
  EXPECT_EQ(d.recipient_id, "user-42");
  EXPECT_EQ(d.contact, "fcm-token");
  EXPECT_TRUE(d.marketing);
  EXPECT_EQ(d.category, "orders.shipped");
  EXPECT_EQ(d.locale, "ja-JP");
  EXPECT_EQ(d.timezone, "Asia/Tokyo");
  EXPECT_EQ(d.expires_at_ms, kNow + 3'600'000);
  EXPECT_THAT(d.content, IsEmpty());  // rendered per channel by the dispatcher, not copied here
  EXPECT_EQ(Json::parse(d.metadata_json), (Json{{"campaign", "c1"}}));
}

TEST(MakeDelivery, DefaultsForOptionalParts) {
  Message m = message({"email"});
  m.purpose = Purpose::transactional;
  m.metadata = Json::object();
  plugin::DeliveryRequest d = make_delivery(record(1), m, chosen(m));
  EXPECT_FALSE(d.marketing);
  EXPECT_EQ(d.expires_at_ms, 0);  // no expiry
  EXPECT_EQ(d.metadata_json, "{}");
  EXPECT_EQ(d.contact, "hanako@example.jp");
}

TEST(MakeDelivery, DeliveryIdIsStableAcrossAttemptsAndDiffersPerChannel) {
  Message m = message({"push", "email"});
  ChannelChoice push = chosen(m, 0);
  ChannelChoice email = chosen(m, 1);
  const std::string first = make_delivery(record(1), m, push).delivery_id;
  EXPECT_EQ(make_delivery(record(2), m, push).delivery_id, first);
  EXPECT_EQ(make_delivery(record(7, 1), m, push).delivery_id, first);
  EXPECT_NE(make_delivery(record(1), m, email).delivery_id, first);
  EXPECT_EQ(make_delivery(record(1), m, email).delivery_id, crypto::sha256_hex("order-1\nemail").substr(0, 32));
  Message other = m;
  other.id = "order-2";
  EXPECT_NE(make_delivery(record(1), other, push).delivery_id, first);
  // Lower-case hex only (a truncated SHA-256).
  for (char ch : first) EXPECT_TRUE((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f')) << first;
}

}  // namespace
}  // namespace tayori::core
