// core/inbound: the pure decisions of two-way communication (responses, follow-ups, opt-in/out, receipts,
// numbered replies, one-click unsubscribe), and the applier against a real SQLite store (de-duplication,
// follow-up cancellation, category opt-out reaching the policy).
#include "common/time.hpp"
#include "core/inbound.hpp"
#include "crypto/crypto.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <set>

#include "test_support.hpp"

namespace tayori {
namespace {

using core::InboundDecision;
using core::Original;
using plugin::ProviderReport;
using plugin::ReportKind;

constexpr int64_t kNow = 1'800'000'000'000;  // 2027-01-15T08:00:00Z

class FixedClock final : public Clock {
 public:
  int64_t now_ms() const override { return now.load(); }
  std::atomic<int64_t> now{kNow};
};

core::Json message_json(const std::string& id = "m1") {
  return core::Json::parse(R"({
    "id": ")" + id + R"(", "recipient": {"id": "r1", "contacts": {"phone": "+819012345678", "line": "U1"}},
    "purpose": "marketing", "category": "news", "channels": ["sms"],
    "content": {"text": "Sale"},
    "responses": [{"id": "interested", "label": "気になる"},
                  {"id": "later", "label": "あとで", "follow_up": {"after": "P2D"}},
                  {"id": "not_interested", "label": "興味なし"}]})");
}

Original original(const std::string& id = "m1") {
  store::MessageRecord r;
  r.id = id;
  r.api_key = "upstream";
  r.payload = core::canonical_json(message_json(id));
  r.channel = "sms";
  auto o = core::read_original(r);
  EXPECT_TRUE(o);
  return *o;
}

// ---- Message validation of `responses` ----

TEST(ResponsesValidation, AcceptsOptionsWithIsoAndTayoriDelays) {
  core::ValidationRules rules;
  auto p = core::parse_message(message_json(), rules);
  ASSERT_TRUE(p.message) << (p.errors.empty() ? "" : p.errors[0].pointer + " " + p.errors[0].detail);
  ASSERT_EQ(p.message->responses.size(), 3u);
  EXPECT_EQ(p.message->responses[1].follow_up_after_ms, 2 * 86'400'000LL);
  EXPECT_EQ(core::parse_delay_ms("PT1S"), 1000);
  EXPECT_EQ(core::parse_delay_ms("P1DT2H30M"), 86'400'000LL + 2 * 3'600'000LL + 30 * 60'000LL);
  EXPECT_EQ(core::parse_delay_ms("P1W"), 7 * 86'400'000LL);
  EXPECT_EQ(core::parse_delay_ms("1s"), 1000);
  EXPECT_FALSE(core::parse_delay_ms("P"));
  EXPECT_FALSE(core::parse_delay_ms("PT"));
  EXPECT_FALSE(core::parse_delay_ms("P1H"));  // hours belong after T
  EXPECT_FALSE(core::parse_delay_ms("P1M"));  // months vary in length
}

TEST(ResponsesValidation, ADelayThatRepeatsAUnitOrOverflowsIsRefusedNotWrapped) {
  // Before: each repeat added 999999999 weeks again, and 16 of them wrapped int64_t into a small or
  // negative delay that passed the 366-day check.
  std::string repeated = "P";
  for (int i = 0; i < 16; ++i) repeated += "999999999W";
  EXPECT_FALSE(core::parse_delay_ms(repeated));
  EXPECT_FALSE(core::parse_delay_ms("P1D1D"));
  EXPECT_FALSE(core::parse_delay_ms("PT1S1H"));  // units in ISO 8601's order only
  EXPECT_FALSE(core::parse_delay_ms("PT1H1H"));
  EXPECT_EQ(core::parse_delay_ms("P1WT1S"), 7 * 86'400'000LL + 1000);
  EXPECT_FALSE(core::parse_delay_ms("999999999999d"));  // 12 digits of days is past int64_t milliseconds
  EXPECT_FALSE(parse_duration_ms("999999999999d"));
  EXPECT_EQ(parse_duration_ms("999999999999ms"), 999'999'999'999LL);
}

TEST(ResponsesValidation, NamesEveryBadOptionByPointer) {
  core::Json j = message_json();
  j["responses"] = core::Json::parse(R"([
    {"id": "Bad-Id", "label": "x"},
    {"id": "ok", "label": "あいうえおかきくけこさしすせそたちつてとな"},
    {"id": "ok", "label": "y", "follow_up": {"after": "soon"}},
    {"id": "t", "label": "z", "follow_up": {"after": "1d", "template": "reminder"}, "extra": 1}])");
  core::ValidationRules rules;
  auto p = core::parse_message(j, rules);
  ASSERT_FALSE(p.message);
  std::set<std::string> pointers;
  for (const auto& e : p.errors) pointers.insert(e.pointer);
  EXPECT_TRUE(pointers.count("/responses/0/id"));
  EXPECT_TRUE(pointers.count("/responses/1/label"));  // 21 characters
  EXPECT_TRUE(pointers.count("/responses/2/id"));     // repeats "ok"
  EXPECT_TRUE(pointers.count("/responses/2/follow_up/after"));
  EXPECT_TRUE(pointers.count("/responses/3/follow_up/template"));  // no templates configured
  EXPECT_TRUE(pointers.count("/responses/3/extra"));
  j["responses"] = core::Json::array();
  EXPECT_FALSE(core::parse_message(j, rules).message);
}

// ---- Responses ----

TEST(DecideResponse, RecordsTheAnswerAndCancelsEarlierFollowUps) {
  InboundDecision d = core::decide_response(original(), "interested", "sms", "link", {}, kNow);
  ASSERT_TRUE(d.writes);
  ASSERT_EQ(d.writes->events.size(), 1u);
  EXPECT_EQ(d.writes->events[0].event.type, "responded");
  EXPECT_EQ(core::Json::parse(d.writes->events[0].event.detail_json),
            core::Json::parse(R"({"option":"interested","channel":"sms","via":"link"})"));
  EXPECT_EQ(d.writes->cancel_follow_ups_of, "m1");
  EXPECT_TRUE(d.writes->follow_ups.empty());
  EXPECT_TRUE(d.writes->consent.empty());
}

TEST(DecideResponse, LaterSchedulesTheOriginalAgainAfterTheDelayWithoutAFollowUpOfItsOwn) {
  InboundDecision d = core::decide_response(original(), "later", "sms", "postback", {}, kNow);
  ASSERT_TRUE(d.writes);
  ASSERT_EQ(d.writes->follow_ups.size(), 1u);
  const auto& f = d.writes->follow_ups[0];
  EXPECT_EQ(f.parent_id, "m1");
  EXPECT_EQ(f.message.id, "m1~follow_up~later");
  EXPECT_EQ(f.message.due_at_ms, kNow + 2 * 86'400'000LL);
  core::Json payload = core::Json::parse(f.message.payload);
  EXPECT_EQ(payload["id"], "m1~follow_up~later");
  EXPECT_EQ(payload["send_at"], format_rfc3339_ms(kNow + 2 * 86'400'000LL));
  EXPECT_FALSE(payload["responses"][1].contains("follow_up"));
  EXPECT_EQ(payload["content"]["text"], "Sale");
}

TEST(DecideResponse, AnUnknownOptionChangesNothing) {
  InboundDecision d = core::decide_response(original(), "maybe", "sms", "app", {}, kNow);
  EXPECT_FALSE(d.writes);
  EXPECT_NE(d.ignored.find("maybe"), std::string::npos);
}

TEST(DecideResponse, OptOutCategoryRuleOptsOutOfTheMessagesCategory) {
  std::vector<config::ResponseRule> rules = {{"not_interested", "category"}};
  InboundDecision d = core::decide_response(original(), "not_interested", "sms", "link", rules, kNow);
  ASSERT_TRUE(d.writes);
  ASSERT_EQ(d.writes->consent.size(), 1u);
  EXPECT_EQ(d.writes->consent[0].first, "r1");
  EXPECT_EQ(d.writes->consent[0].second.channel, "category:news");
  EXPECT_EQ(d.writes->consent[0].second.state, policy::ConsentState::opted_out);
  EXPECT_EQ(d.writes->consent[0].second.source, "response");
  ASSERT_EQ(d.writes->events.size(), 2u);
  EXPECT_EQ(d.writes->events[1].event.type, "opted_out");
}

TEST(DecideUnsubscribe, OptsOutOfMarketingOnTheChannel) {
  InboundDecision d = core::decide_unsubscribe(original(), "email", kNow);
  ASSERT_TRUE(d.writes);
  ASSERT_EQ(d.writes->consent.size(), 1u);
  EXPECT_EQ(d.writes->consent[0].second.channel, "email");
  EXPECT_EQ(d.writes->consent[0].second.purpose, policy::Purpose::marketing);
  EXPECT_EQ(d.writes->consent[0].second.source, "list_unsubscribe");
}

// ---- Provider reports ----

// A provider's report of `kind` from `contact`; a test sets what else its report carries.
ProviderReport report(ReportKind kind, const std::string& contact, const std::string& text = "") {
  ProviderReport e;
  e.kind = kind;
  e.contact = contact;
  e.text = text;
  return e;
}

// The facts of `channel` (of `plugin`, where the decision reads it) as the applier would look them up.
core::InboundFacts facts(const std::string& channel, const std::string& plugin = "") {
  core::InboundFacts f;
  f.channel = channel;
  f.plugin = plugin;
  return f;
}

// A Twilio STOP from `contact` and the facts of channel sms.
std::pair<ProviderReport, core::InboundFacts> sms_stop(const std::string& contact,
                                                       std::vector<std::string> recipient_ids) {
  core::InboundFacts f = facts("sms", "sms_twilio");
  f.recipient_ids = std::move(recipient_ids);
  return {report(ReportKind::opt_out, contact, "STOP"), f};
}

TEST(DecideInbound, StopOptsOutOfBothPurposesOnTheChannelWithItsSource) {
  auto [e, f] = sms_stop("+819012345678", {"r1"});
  e.report_id = "SM1";
  InboundDecision d = core::decide_inbound(e, f, {}, kNow);
  ASSERT_TRUE(d.writes);
  ASSERT_EQ(d.writes->consent.size(), 2u);
  for (const auto& [rid, c] : d.writes->consent) {
    EXPECT_EQ(c.channel, "sms");
    EXPECT_EQ(c.state, policy::ConsentState::opted_out);
    EXPECT_EQ(c.source, "sms_keyword");
  }
  EXPECT_TRUE(d.writes->suppress.empty());
  EXPECT_EQ(d.writes->seen_report_id, "SM1");
  ASSERT_EQ(d.writes->events.size(), 1u);
  EXPECT_EQ(d.writes->events[0].message_id, "");
  EXPECT_EQ(d.writes->events[0].recipient_id, "r1");
}

// A number several recipients share (a family's): a STOP opts every one of them out, not only the latest.
TEST(DecideInbound, AStopReachesEveryRecipientOfTheNumber) {
  auto [e, f] = sms_stop("+819012345678", {"r2", "r1"});
  InboundDecision d = core::decide_inbound(e, f, {}, kNow);
  ASSERT_TRUE(d.writes);
  std::multiset<std::string> opted_out;
  for (const auto& [rid, c] : d.writes->consent) {
    EXPECT_EQ(c.state, policy::ConsentState::opted_out);
    opted_out.insert(rid);
  }
  EXPECT_EQ(opted_out, (std::multiset<std::string>{"r1", "r1", "r2", "r2"}));  // both purposes each
  ASSERT_EQ(d.writes->events.size(), 2u);
  EXPECT_EQ(d.writes->events[0].recipient_id, "r2");
  EXPECT_EQ(d.writes->events[1].recipient_id, "r1");
  EXPECT_TRUE(d.writes->suppress.empty());
}

// A STOP from a number no profile has yet is recorded as a suppression of the number itself, so a profile
// that later gives it is not messaged; the channel's START lifts it.
TEST(DecideInbound, AStopFromAnUnknownNumberSuppressesTheNumber) {
  auto [e, f] = sms_stop("+819099999999", {});
  InboundDecision d = core::decide_inbound(e, f, {}, kNow);
  ASSERT_TRUE(d.writes) << d.ignored;
  ASSERT_EQ(d.writes->suppress.size(), 1u);
  EXPECT_EQ(d.writes->suppress[0].contact, "+819099999999");
  EXPECT_EQ(d.writes->suppress[0].reason, "opted_out");
  EXPECT_EQ(d.writes->suppress[0].source, "channel.sms");
  EXPECT_TRUE(d.writes->consent.empty());
  e.kind = ReportKind::opt_in;
  e.text = "START";
  e.reactivate_contact = true;
  d = core::decide_inbound(e, f, {}, kNow);
  ASSERT_TRUE(d.writes);
  ASSERT_EQ(d.writes->unsuppress.size(), 1u);
  EXPECT_EQ(d.writes->unsuppress[0].source, "channel.sms");
}

TEST(DecideInbound, UnfollowSuppressesAndFollowLiftsOnlyThisChannelsSuppression) {
  ProviderReport e = report(ReportKind::opt_out, "U1");
  e.deactivate_contact = true;
  core::InboundFacts f = facts("line", "line");
  InboundDecision d = core::decide_inbound(e, f, {}, kNow);  // no recipient known: the contact is still suppressed
  ASSERT_TRUE(d.writes);
  ASSERT_EQ(d.writes->suppress.size(), 1u);
  EXPECT_EQ(d.writes->suppress[0].source, "channel.line");
  e.kind = ReportKind::opt_in;
  e.deactivate_contact = false;
  e.reactivate_contact = true;
  f.recipient_ids = {"r1"};
  d = core::decide_inbound(e, f, {}, kNow);
  ASSERT_TRUE(d.writes);
  ASSERT_EQ(d.writes->unsuppress.size(), 1u);
  EXPECT_EQ(d.writes->unsuppress[0].source, "channel.line");
  EXPECT_EQ(d.writes->consent[0].second.source, "line_follow");
}

TEST(DecideInbound, ANumberedReplyIsAResponseToTheOpenQuestion) {
  EXPECT_EQ(core::option_for_number(R"(["interested","later","not_interested"])", "2"), "later");
  EXPECT_FALSE(core::option_for_number(R"(["interested"])", "2"));
  EXPECT_FALSE(core::option_for_number(R"(["interested"])", "0"));
  ProviderReport e = report(ReportKind::reply, "+819012345678", "2");
  e.option = "2";
  core::InboundFacts f = facts("sms");
  f.original = original();
  f.option = "later";
  InboundDecision d = core::decide_inbound(e, f, {}, kNow);
  ASSERT_TRUE(d.writes);
  EXPECT_EQ(d.writes->events[0].event.type, "responded");
  EXPECT_EQ(d.writes->follow_ups.size(), 1u);
}

TEST(DecideInbound, FreeTextIsAReplyAndAForgedRefChangesNothing) {
  ProviderReport e = report(ReportKind::reply, "", "hello");
  core::InboundFacts f = facts("line");
  f.recipient_ids = {"r1"};
  InboundDecision d = core::decide_inbound(e, f, {}, kNow);
  ASSERT_TRUE(d.writes);
  EXPECT_EQ(d.writes->events[0].event.type, "replied");
  e.kind = ReportKind::response;
  e.ref = "forged";
  f.refused = "a response ref that is forged";
  EXPECT_FALSE(core::decide_inbound(e, f, {}, kNow).writes);
}

TEST(DecideInbound, AFailureReceiptForADeadNumberSuppressesIt) {
  ProviderReport e = report(ReportKind::failed, "+819012345678");
  e.provider_message_id = "SM9";
  e.reason = "twilio.30005";
  e.deactivate_contact = true;
  core::InboundFacts f = facts("sms");
  f.original = original();
  InboundDecision d = core::decide_inbound(e, f, {}, kNow);
  ASSERT_TRUE(d.writes);
  ASSERT_EQ(d.writes->suppress.size(), 1u);
  EXPECT_EQ(d.writes->suppress[0].reason, "twilio.30005");
  EXPECT_EQ(d.writes->events[0].event.type, "failed");
  EXPECT_EQ(d.writes->events[1].event.type, "contact_deactivated");
  f.original.reset();
  EXPECT_FALSE(core::decide_inbound(e, f, {}, kNow).writes);  // unknown provider id
}

TEST(MintResponses, SignsARefPerOptionThatVerifiesBackToTheOption) {
  core::ValidationRules rules;
  auto m = *core::parse_message(message_json(), rules).message;
  links::LinkSigner signer("https://gw.example.com", "secret");
  auto options = core::mint_responses(m, "line", signer, kNow / 1000 + 3600);
  ASSERT_EQ(options.size(), 3u);
  EXPECT_LE(options[1].ref.size(), 300u);  // LINE postback data
  EXPECT_EQ(options[1].url, "https://gw.example.com/r/" + options[1].ref);
  auto v = signer.verify(options[1].ref, kNow / 1000);
  ASSERT_TRUE(v.ok());
  EXPECT_EQ(v.claims.option, "later");
  EXPECT_EQ(v.claims.channel, "line");
  EXPECT_TRUE(core::mint_responses(m, "line", links::LinkSigner(), 0)[0].ref.empty());
}

// ---- The applier on a real store ----

class InboundApplierTest : public test::StoreFixture {
 protected:
  InboundApplierTest() : StoreFixture("tayori_inbound_") {}

  void SetUp() override {
    StoreFixture::SetUp();
    store::NewMessage m;
    m.id = "m1";
    m.recipient_id = "r1";
    m.recipient = store::RecipientUpdate::parse(R"({"id":"r1","contacts":{"phone":"+819012345678","line":"U1"}})");
    m.api_key = "upstream";
    m.payload = core::canonical_json(message_json());
    m.payload_hash = crypto::sha256_hex(m.payload);
    m.due_at_ms = kNow;
    accept({m}, kNow);
    applier_ = std::make_unique<core::InboundApplier>(*store_, clock_, links::LinkSigner("https://gw", "k"),
                                                      std::vector<config::ResponseRule>{{"not_interested", "category"}});
  }

  int apply(const std::string& channel, const std::string& plugin, std::vector<ProviderReport> events) {
    return await<int>([&](auto done) { applier_->apply_reports(channel, plugin, events, std::move(done)); });
  }
  // What the answer `option` to m1 came to: the event recorded, or why none was.
  tayori::Result<std::string> respond(const std::string& option) {
    std::promise<tayori::Result<std::string>> answered;
    applier_->respond("m1", option, "", "app",
                      [&](const core::InboundApplier::Answer& a) { answered.set_value(a.recorded); });
    return answered.get_future().get();
  }
  std::vector<std::string> states(const std::string& id) {
    return test::query_column(path_, "SELECT state FROM messages WHERE id = '" + id + "'");
  }

  FixedClock clock_;
  std::unique_ptr<core::InboundApplier> applier_;
};

TEST_F(InboundApplierTest, ARedeliveredEventIsAppliedOnce) {
  ProviderReport e = report(ReportKind::opt_out, "U1");
  e.report_id = "evt-1";
  e.deactivate_contact = true;
  EXPECT_EQ(apply("line", "line", {e}), 1);
  EXPECT_EQ(apply("line", "line", {e}), 0);
  EXPECT_EQ(store_->consent_history("r1").size(), 2u);  // marketing and transactional, once
  EXPECT_EQ(store_->suppressions({"U1"}).size(), 1u);
  e.kind = ReportKind::opt_in;
  e.report_id = "evt-2";
  e.deactivate_contact = false;
  e.reactivate_contact = true;
  EXPECT_EQ(apply("line", "line", {e}), 1);
  EXPECT_TRUE(store_->suppressions({"U1"}).empty());
}

TEST_F(InboundApplierTest, LaterSchedulesAFollowUpThatALaterAnswerCancels) {
  EXPECT_EQ(respond("later").value(), "responded");
  auto follow_up = store_->find("m1~follow_up~later");
  ASSERT_TRUE(follow_up);
  EXPECT_EQ(follow_up->state, store::State::scheduled);
  EXPECT_EQ(test::query_column(path_, "SELECT parent_id FROM messages WHERE id = 'm1~follow_up~later'"),
            std::vector<std::string>{"m1"});
  EXPECT_EQ(respond("interested").value(), "responded");
  EXPECT_EQ(store_->find("m1~follow_up~later")->state, store::State::cancelled);
  auto types = test::event_types(store_->events("m1"));
  EXPECT_EQ(std::count(types.begin(), types.end(), "responded"), 2);
  EXPECT_EQ(std::count(types.begin(), types.end(), "follow_up_scheduled"), 1);
  EXPECT_EQ(std::count(types.begin(), types.end(), "follow_up_cancelled"), 1);
  // "later" again: a new follow-up under a fresh id.
  EXPECT_EQ(respond("later").value(), "responded");
  ASSERT_TRUE(store_->find("m1~follow_up~later~2"));
  EXPECT_EQ(core::Json::parse(store_->find("m1~follow_up~later~2")->payload)["id"], "m1~follow_up~later~2");
  EXPECT_EQ(respond("maybe").error().code, ErrorCode::not_found);  // an option m1 does not offer
}

TEST_F(InboundApplierTest, NotInterestedOptsOutOfTheCategoryAndThePolicySuppressesIt) {
  EXPECT_EQ(respond("not_interested").value(), "responded");
  auto consent = store_->consent_current("r1");
  ASSERT_EQ(consent.size(), 1u);
  EXPECT_EQ(consent[0].channel, "category:news");
  EXPECT_TRUE(policy::category_opt_out(consent, "news"));
  EXPECT_FALSE(policy::category_opt_out(consent, "other"));
}

TEST_F(InboundApplierTest, ANumberedReplyAnswersTheLatestOpenQuestionOfThatNumber) {
  await([&](auto done) {
    store_->put_question("+819012345678", "sms", {"m1", R"(["interested","later","not_interested"])", kNow},
                         std::move(done));
  });
  ProviderReport e = report(ReportKind::reply, "+819012345678", "2");
  e.report_id = "SMreply";
  e.option = "2";
  EXPECT_EQ(apply("sms", "sms_twilio", {e}), 1);
  EXPECT_TRUE(store_->find("m1~follow_up~later"));
}

TEST_F(InboundApplierTest, ReceiptsFindTheMessageByTheProvidersId) {
  auto claimed = store_->claim_due(kNow, 10).value();
  ASSERT_EQ(claimed.size(), 1u);
  store::Transition t;
  t.message_id = "m1";
  t.to = store::State::delivered;
  t.channel = "sms";
  t.provider_message_id = "SM42";
  StoreFixture::apply(t, kNow);
  ASSERT_TRUE(store_->find_by_provider_id("SM42"));
  ProviderReport e = report(ReportKind::failed, "+819012345678");
  e.report_id = "SM42:undelivered";
  e.provider_message_id = "SM42";
  e.reason = "twilio.30005";
  e.deactivate_contact = true;
  EXPECT_EQ(apply("sms", "sms_twilio", {e}), 1);
  EXPECT_EQ(store_->suppressions({"+819012345678"}).size(), 1u);
  EXPECT_EQ(store_->recipients_by_contact("+819012345678"), std::vector<std::string>{"r1"});
}

}  // namespace
}  // namespace tayori
