// The policy engine's pure decisions, table-driven where the cases form a table. No clock, no store:
// the time is pinned and the recipient's state is built by hand.
#include <gtest/gtest.h>

#include <map>

#include "common/time.hpp"
#include "core/clearance.hpp"  // core::policy_facts: the message as the policy reads it
#include "policy/policy.hpp"

namespace tayori::policy {
namespace {

int64_t utc(const char* text) { return *parse_rfc3339_ms(text); }

core::Message message(Purpose purpose = Purpose::marketing, std::vector<std::string> channels = {"sms", "email"}) {
  core::Message m;
  m.id = "m-1";
  m.recipient.id = "r-1";
  m.recipient.timezone = "Asia/Tokyo";
  m.recipient.contacts = {{"email", "hanako@example.jp"}, {"phone", "+819012345678"}};
  m.purpose = purpose;
  m.category = "campaign";
  m.channels = std::move(channels);
  m.content = {{"text", "hello"}};
  return m;
}

PolicyConfig demo_config() {
  PolicyConfig c;
  c.default_timezone = "Asia/Tokyo";
  QuietHoursRule night;
  night.name = "marketing_night";
  night.channels = {"sms", "push", "line"};
  night.from_minute = 21 * 60;
  night.to_minute = 8 * 60;
  night.spread_ms = 30 * 60'000;
  c.quiet_hours.push_back(night);
  CapRule daily;
  daily.name = "marketing_daily";
  daily.limit = 3;
  daily.window_ms = 86'400'000;
  c.caps.push_back(daily);
  return c;
}

ChannelLookup lookup() {
  return [](const std::string& name) -> std::optional<ChannelView> {
    if (name == "email") return ChannelView{"email", true};
    if (name == "sms") return ChannelView{"phone", true};
    if (name == "push") return ChannelView{"push.fcm", true};
    if (name == "down") return ChannelView{"email", false};
    return std::nullopt;
  };
}

RecipientState opted_in(const std::vector<std::string>& channels, Purpose p = Purpose::marketing) {
  RecipientState s;
  for (const auto& c : channels)
    s.consent.push_back({c, p, ConsentState::opted_in, "api", "", utc("2026-01-01T00:00:00Z")});
  return s;
}

struct Scenario {
  core::Message m = message();
  RecipientState state = opted_in({"sms", "email"});
  PolicyConfig config = demo_config();
  int64_t now = utc("2026-11-24T03:00:00Z");  // 12:00 in Tokyo
  double jitter = 0.0;
  int from = 0;
  bool explain = true;
  std::map<std::string, ChannelView> circuits;  // channels whose circuit is open, as routing sees them
  Decision go() {
    auto zone = TimeZone::load(m.recipient.timezone.empty() ? config.default_timezone : m.recipient.timezone);
    ChannelLookup l = [this](const std::string& name) -> std::optional<ChannelView> {
      auto it = circuits.find(name);
      return it != circuits.end() ? std::optional<ChannelView>(it->second) : lookup()(name);
    };
    return decide({core::policy_facts(m), from, state, config, l, *zone, now, jitter, explain});
  }
};

// Checks that `d` sends on `channel` having skipped exactly one channel before it, for `reason` by `rule`. By
// value: json's const operator[] asserts on a missing key, where a test should fail.
void expect_sent_after_one_skip(Decision d, const std::string& channel, const std::string& reason,
                                const std::string& rule) {
  EXPECT_EQ(d.verdict, Verdict::send);
  EXPECT_EQ(d.channel, channel);
  ASSERT_EQ(d.detail["skipped"].size(), 1u);
  EXPECT_EQ(d.detail["skipped"][0]["reason"], reason);
  EXPECT_EQ(d.detail["skipped"][0]["rule"], rule);
}

TEST(Decide, SendsOnTheFirstConsentedChannelAtNoon) {
  Scenario r;
  Decision d = r.go();
  EXPECT_EQ(d.verdict, Verdict::send);
  EXPECT_EQ(d.channel, "sms");
  EXPECT_EQ(d.contact, "+819012345678");
  EXPECT_EQ(d.channel_index, 0);
}

TEST(Decide, MarketingWithoutConsentSkipsTheChannel) {
  Scenario r;
  r.state = opted_in({"email"});  // no record for sms: the marketing default (opted_out) applies
  expect_sent_after_one_skip(r.go(), "email", "no_consent", "consent.default");
}

TEST(Decide, AnOptOutBeatsTheDefaultAndIsExplained) {
  Scenario r;
  r.m.purpose = Purpose::transactional;
  r.state = {};
  r.state.consent.push_back({"sms", Purpose::transactional, ConsentState::opted_out, "sms_keyword", "STOP", 1});
  Decision d = r.go();
  EXPECT_EQ(d.channel, "email");  // transactional email: implied consent
  EXPECT_EQ(d.detail["skipped"][0]["rule"], "consent.recorded");
  EXPECT_EQ(d.trace[0].detail["source"], "sms_keyword");
}

TEST(Decide, ACategoryOptOutSuppressesMarketingOfThatCategoryOnEveryChannel) {
  Scenario r;
  r.state.consent.push_back(
      {category_scope("campaign"), Purpose::marketing, ConsentState::opted_out, "response", "m1", 2});
  Decision d = r.go();
  EXPECT_EQ(d.verdict, Verdict::suppress);
  EXPECT_EQ(d.reason, "category_opted_out");
  EXPECT_EQ(d.rule, "consent.category");
  EXPECT_EQ(d.detail["category"], "campaign");
  EXPECT_EQ(d.trace.back().rule, "consent.category");
  r.m.category = "other";  // another category still goes
  EXPECT_EQ(r.go().verdict, Verdict::send);
  r.m.category = "campaign";
  r.m.purpose = Purpose::transactional;  // a transactional message of it too
  EXPECT_EQ(r.go().verdict, Verdict::send);
  r.m.purpose = Purpose::marketing;  // opted in again: the latest record wins
  r.state.consent.push_back({category_scope("campaign"), Purpose::marketing, ConsentState::opted_in, "api", "", 3});
  EXPECT_EQ(r.go().verdict, Verdict::send);
}

TEST(Decide, WithoutExplainTheTraceIsEmptyButTheDetailIsNot) {
  Scenario r;
  r.explain = false;
  r.state = opted_in({"email"});
  Decision d = r.go();
  EXPECT_EQ(d.verdict, Verdict::send);
  EXPECT_TRUE(d.trace.empty());
  EXPECT_EQ(d.detail["skipped"][0]["rule"], "consent.default");
  r.explain = true;
  EXPECT_EQ(r.go().trace.size(), 4u);  // consent skip (sms), consent pass (email), quiet hours, caps
}

TEST(Decide, ASuppressedContactIsNeverUsedEvenForTransactional) {
  Scenario r;
  r.m.purpose = Purpose::transactional;
  r.state.suppressed["+819012345678"] = {"+819012345678", "unreachable", "twilio.30005", 1};
  r.state.suppressed["hanako@example.jp"] = {"hanako@example.jp", "hard_bounce", "smtp.550", 1};
  Decision d = r.go();
  EXPECT_EQ(d.verdict, Verdict::suppress);
  EXPECT_EQ(d.reason, "no_usable_channel");
  EXPECT_EQ(d.detail["skipped"][0]["reason"], "suppressed_contact");
  EXPECT_EQ(d.detail["skipped"][1]["reason"], "suppressed_contact");
}

TEST(Decide, UnavailableOrUnknownChannelsAndMissingContactsAreSkippedWithReasons) {
  Scenario r;
  r.m.channels = {"fax", "down", "push", "email"};
  r.state = opted_in({"email", "down", "push"});
  Decision d = r.go();
  EXPECT_EQ(d.channel, "email");
  std::vector<std::string> reasons;
  for (const auto& s : d.detail["skipped"]) reasons.push_back(s["reason"]);
  EXPECT_EQ(reasons, (std::vector<std::string>{"channel_not_configured", "channel_unavailable", "no_contact"}));
}

TEST(Decide, AnOpenCircuitIsSkippedForTheNextChannel) {
  Scenario r;
  r.circuits["sms"] = ChannelView{"phone", true, r.now + 5'000, 0};
  expect_sent_after_one_skip(r.go(), "email", "circuit_open", "circuit_breaker.sms");
}

TEST(Decide, WhenEveryUsableChannelsCircuitIsOpenTheMessageWaitsForTheEarliest) {
  Scenario r;
  r.jitter = 0.5;
  r.circuits["sms"] = ChannelView{"phone", true, r.now + 9'000, 2'000};
  r.circuits["email"] = ChannelView{"email", true, r.now + 5'000, 4'000};
  Decision d = r.go();
  EXPECT_EQ(d.verdict, Verdict::defer);
  EXPECT_EQ(d.reason, "circuit_open");
  EXPECT_EQ(d.rule, "circuit_breaker.email");
  EXPECT_EQ(d.until_ms, r.now + 5'000 + 2'000);  // its reopening, spread by jitter * spread
  EXPECT_EQ(d.detail["skipped"].size(), 2u);

  // A channel the message cannot use anyway does not make it wait: no consent for email leaves nothing.
  r.state = opted_in({"push"});
  d = r.go();
  EXPECT_EQ(d.verdict, Verdict::suppress);
  EXPECT_EQ(d.reason, "no_usable_channel");
  EXPECT_EQ(d.detail["skipped"][0]["reason"], "no_consent");

  // It would expire before the circuit reopens: dropped, saying so.
  r.state = opted_in({"sms", "email"});
  r.m.expires_at_ms = r.now + 6'000;
  d = r.go();
  EXPECT_EQ(d.verdict, Verdict::suppress);
  EXPECT_EQ(d.reason, "expired");
  EXPECT_EQ(d.detail["expires_first"], true);
}

TEST(Decide, FallbackStartsFromTheGivenIndex) {
  Scenario r;
  r.from = 1;
  EXPECT_EQ(r.go().channel, "email");
  r.from = 2;
  EXPECT_EQ(r.go().reason, "no_usable_channel");
}

TEST(Decide, AnExpiredMessageIsSuppressedBeforeAnythingElse) {
  Scenario r;
  r.m.expires_at_ms = r.now;
  Decision d = r.go();
  EXPECT_EQ(d.verdict, Verdict::suppress);
  EXPECT_EQ(d.reason, "expired");
}

struct QuietCase {
  const char* name;
  const char* now;  // UTC
  Purpose purpose;
  const char* channel;
  Verdict verdict;
  const char* until;  // local, when deferred
};

class QuietHours : public ::testing::TestWithParam<QuietCase> {};

TEST_P(QuietHours, DefersToTheWindowsEndInTheRecipientsZone) {
  const QuietCase& c = GetParam();
  Scenario r;
  r.m.purpose = c.purpose;
  r.m.channels = {c.channel};
  r.state = opted_in({c.channel}, c.purpose);
  r.now = utc(c.now);
  Decision d = r.go();
  EXPECT_EQ(d.verdict, c.verdict);
  if (c.verdict == Verdict::defer) {
    EXPECT_EQ(d.detail["until"], c.until);
    EXPECT_EQ(d.rule, "quiet_hours.marketing_night");
  }
}

INSTANTIATE_TEST_SUITE_P(
    Table, QuietHours,
    ::testing::Values(
        QuietCase{"evening", "2026-11-24T13:30:00Z", Purpose::marketing, "sms", Verdict::defer,
                  "2026-11-25T08:00:00+09:00"},  // 22:30 Tokyo -> tomorrow 08:00
        QuietCase{"early_morning", "2026-11-23T21:00:00Z", Purpose::marketing, "sms", Verdict::defer,
                  "2026-11-24T08:00:00+09:00"},  // 06:00 Tokyo -> today 08:00
        QuietCase{"window_opens", "2026-11-24T12:00:00Z", Purpose::marketing, "sms", Verdict::defer,
                  "2026-11-25T08:00:00+09:00"},  // 21:00 exactly is inside
        QuietCase{"window_closes", "2026-11-24T23:00:00Z", Purpose::marketing, "sms", Verdict::send, ""},  // 08:00
        QuietCase{"daytime", "2026-11-24T03:00:00Z", Purpose::marketing, "sms", Verdict::send, ""},
        QuietCase{"email_not_covered", "2026-11-24T13:30:00Z", Purpose::marketing, "email", Verdict::send, ""},
        QuietCase{"transactional_bypasses", "2026-11-24T13:30:00Z", Purpose::transactional, "sms", Verdict::send,
                  ""}),
    [](const auto& info) { return std::string(info.param.name); });

TEST(QuietHoursRules, SpreadTheReopeningWithJitter) {
  Scenario r;
  r.m.channels = {"sms"};
  r.now = utc("2026-11-24T13:30:00Z");
  r.jitter = 0.5;  // half of the 30-minute spread
  Decision d = r.go();
  EXPECT_EQ(d.detail["until"], "2026-11-25T08:15:00+09:00");
  EXPECT_EQ(d.until_ms, utc("2026-11-24T23:15:00Z"));
}

TEST(QuietHoursRules, DropActionAndExpiryInsideTheWindowSuppress) {
  Scenario r;
  r.m.channels = {"sms"};
  r.now = utc("2026-11-24T13:30:00Z");
  r.m.expires_at_ms = utc("2026-11-24T20:00:00Z");  // 05:00 Tokyo: before the window ends
  Decision d = r.go();
  EXPECT_EQ(d.verdict, Verdict::suppress);
  EXPECT_EQ(d.reason, "expires_in_quiet_hours");

  Scenario drop;
  drop.m.channels = {"sms"};
  drop.now = r.now;
  drop.config.quiet_hours[0].action = QuietHoursRule::Action::drop;
  EXPECT_EQ(drop.go().reason, "quiet_hours");
}

TEST(QuietHoursRules, UseTheRecipientsZoneAndFallBackToTheDefault) {
  Scenario r;
  r.m.channels = {"sms"};
  r.now = utc("2026-11-24T13:30:00Z");  // 22:30 Tokyo, but 14:30 in Paris
  r.m.recipient.timezone = "Europe/Paris";
  EXPECT_EQ(r.go().verdict, Verdict::send);
  r.m.recipient.timezone = "";  // default zone: Asia/Tokyo
  EXPECT_EQ(r.go().verdict, Verdict::defer);
}

TEST(QuietHoursRules, WindowEndIsCorrectAcrossADstChange) {
  // New York falls back on 2026-11-01: 21:00 EDT on Oct 31 to 08:00 EST on Nov 1 is 12 hours, not 11.
  auto ny = TimeZone::load("America/New_York");
  QuietHoursRule night{"night", {}, std::nullopt, 21 * 60, 8 * 60, QuietHoursRule::Action::defer, 0};
  auto v = quiet_hours({night}, "sms", Purpose::marketing, *ny, utc("2026-11-01T01:00:00Z"), 0.0);  // 21:00 EDT
  ASSERT_TRUE(v.quiet);
  EXPECT_EQ(v.until_ms, utc("2026-11-01T13:00:00Z"));  // 08:00 EST
  EXPECT_EQ(format_local(v.until_ms, *ny), "2026-11-01T08:00:00-05:00");
}

TEST(Caps, CountWithinTheRollingWindowAcrossChannels) {
  Scenario r;
  r.now = utc("2026-11-24T03:00:00Z");
  for (int h : {1, 5, 20}) r.state.slots.push_back({"old-" + std::to_string(h), h == 5 ? "email" : "sms",
                                                    Purpose::marketing, "campaign", r.now - h * 3'600'000LL});
  Decision d = r.go();
  EXPECT_EQ(d.verdict, Verdict::suppress);
  EXPECT_EQ(d.reason, "frequency_cap");
  EXPECT_EQ(d.rule, "caps.marketing_daily");
  EXPECT_EQ(d.detail["limit"], 3);
  EXPECT_EQ(d.detail["window"], "1d");
  // The oldest slot leaving the window frees the way.
  r.state.slots[2].at_ms = r.now - 86'400'000;
  EXPECT_EQ(r.go().verdict, Verdict::send);
}

TEST(Caps, TransactionalAndOtherPurposesDoNotCount) {
  Scenario r;
  for (int i = 0; i < 5; ++i) r.state.slots.push_back({"t" + std::to_string(i), "sms", Purpose::transactional, "", r.now - 1000});
  EXPECT_EQ(r.go().verdict, Verdict::send);
  r.m.purpose = Purpose::transactional;
  r.state = opted_in({"sms"}, Purpose::transactional);
  for (int i = 0; i < 5; ++i) r.state.slots.push_back({"m" + std::to_string(i), "sms", Purpose::marketing, "", r.now - 1000});
  EXPECT_EQ(r.go().verdict, Verdict::send) << "transactional bypasses caps unless a rule names it";
}

TEST(Caps, ChannelScopeCategoryAndDeferUntilASlotFrees) {
  CapRule per_channel{"sms_weekly", CapRule::Scope::channel, {"sms"}, std::nullopt, "", 2, 7 * 86'400'000LL,
                      CapRule::OnExceed::defer};
  int64_t now = utc("2026-11-24T03:00:00Z");
  std::vector<CapSlot> slots = {{"a", "sms", Purpose::marketing, "", now - 3 * 86'400'000LL},
                                {"b", "sms", Purpose::marketing, "", now - 86'400'000LL},
                                {"c", "email", Purpose::marketing, "", now - 1000}};
  auto v = check_caps({per_channel}, slots, "sms", Purpose::marketing, "", now);
  ASSERT_TRUE(v.exceeded);
  EXPECT_EQ(v.counted, 2);
  EXPECT_EQ(v.until_ms, now - 3 * 86'400'000LL + 7 * 86'400'000LL);
  EXPECT_FALSE(check_caps({per_channel}, slots, "email", Purpose::marketing, "", now).exceeded);

  CapRule category{"promo", CapRule::Scope::all, {}, std::nullopt, "promo", 1, 86'400'000, CapRule::OnExceed::drop};
  std::vector<CapSlot> one = {{"p", "email", Purpose::marketing, "promo", now - 1000}};
  EXPECT_TRUE(check_caps({category}, one, "sms", Purpose::marketing, "promo", now).exceeded);
  EXPECT_FALSE(check_caps({category}, one, "sms", Purpose::marketing, "news", now).exceeded);
}

TEST(Caps, DeferredCapVerdictCarriesTheLocalTime) {
  Scenario r;
  r.config.caps[0].on_exceed = CapRule::OnExceed::defer;
  for (int h : {1, 2, 3}) r.state.slots.push_back({"s" + std::to_string(h), "sms", Purpose::marketing, "", r.now - h * 3'600'000LL});
  Decision d = r.go();
  EXPECT_EQ(d.verdict, Verdict::defer);
  EXPECT_EQ(d.until_ms, r.now - 3 * 3'600'000LL + 86'400'000);
  EXPECT_EQ(d.detail["until"], "2026-11-25T09:00:00+09:00");
}

}  // namespace
}  // namespace tayori::policy
