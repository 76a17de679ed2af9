// Tests for the policy engine's state in the Store, on SQLite here and on PostgreSQL in pg_store_tests (the same
// file), one fresh database per test: the recipient profile (merged on accept,
// replaced by PUT, erased on request), the consent history and its current view, suppressions, frequency-cap
// slots, the migration of a version-1 file, and the `suppressed` state in counts and purge.
// Asynchronous completions are awaited with promises, never with sleeps.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <future>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "core/message.hpp"
#include "store/ops/messages.hpp"
#include "store/ops/suppressions.hpp"
#include "store/sqlite_store.hpp"
#ifdef TAYORI_STORE_TESTS_ON_POSTGRES
#include "store/postgres/pg_connection.hpp"
#endif
#include "crypto/crypto.hpp"
#include "test_support.hpp"

namespace tayori::store {
namespace {

using policy::Purpose;
using nlohmann::json;
using policy::CapSlot;
using policy::ConsentRecord;
using policy::ConsentState;
using policy::Suppression;
using test::event_types;
using test::user_version;
using ::testing::Contains;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;
using ::testing::UnorderedElementsAre;

NewMessage message_for(const std::string& id, const std::string& recipient_id, const std::string& recipient_json,
                       int64_t due_at_ms = 1'000) {
  NewMessage m;
  m.id = id;
  m.recipient_id = recipient_id;
  if (!recipient_json.empty()) m.recipient = RecipientUpdate::parse(recipient_json);
  m.api_key = "upstream";
  m.payload = R"({"id":")" + id + R"(","secret":"personal data"})";
  m.payload_hash = crypto::sha256_hex(m.payload);
  m.due_at_ms = due_at_ms;
  m.events = {{"accepted", "{}"}};
  return m;
}

std::vector<std::string> contacts_of(const std::vector<Suppression>& list) {
  return test::pluck(list, &Suppression::contact);
}

std::vector<std::string> slot_ids(const std::vector<CapSlot>& slots) {
  auto out = test::pluck(slots, &CapSlot::message_id);
  std::sort(out.begin(), out.end());
  return out;
}

// "channel/purpose/state/source/evidence@at": one string per record, so a whole history compares at once.
std::vector<std::string> describe(const std::vector<ConsentRecord>& records) {
  std::vector<std::string> out;
  for (const auto& r : records)
    out.push_back(r.channel + "/" + std::string(policy::to_string(r.purpose)) + "/" + std::string(policy::to_string(r.state)) +
                  "/" + r.source + "/" + r.evidence + "@" + std::to_string(r.at_ms));
  return out;
}

class StorePolicyTestBase : public test::StoreFixture {
 protected:
  StorePolicyTestBase() : StoreFixture("tayori_store_policy_") {}

  // Each wrapper waits for the operation's completion (the commit) and checks that it succeeded.
  void accept_one(NewMessage m, int64_t now_ms) {
    auto r = accept({std::move(m)}, now_ms);
    ASSERT_EQ(r.size(), 1u);
    EXPECT_EQ(r[0].status, AcceptStatus::accepted);
  }
  void consent(const std::string& recipient, ConsentRecord r) {
    await([&](auto done) { store_->append_consent(recipient, {std::move(r)}, std::move(done)); });
  }
  bool unsuppress(const std::string& contact) {
    return await<bool>([&](auto done) { store_->remove_suppression(contact, std::move(done)); });
  }
  void release(const std::string& recipient, const std::string& message_id) {
    await([&](auto done) { store_->release_slot(recipient, message_id, std::move(done)); });
  }
  // Accepts `id` for `recipient`, claims it and moves it to the final state `to` at `now_ms`.
  // Not store_test's finish(): here the message has a recipient, and a suppressed end carries its reason and event.
  void finished(const std::string& id, const std::string& recipient, State to, int64_t now_ms) {
    accept_one(message_for(id, recipient, "", now_ms), now_ms);
    auto claimed = store_->claim_due(now_ms, 1).value();
    ASSERT_EQ(claimed.size(), 1u);
    ASSERT_EQ(claimed[0].id, id);
    Transition t;
    t.message_id = id;
    t.to = to;
    t.channel = "email";
    t.last_reason = to == State::suppressed ? "frequency_cap" : "";
    t.events = {{to == State::suppressed ? "suppressed" : std::string(to_string(to)), "{}"}};
    apply(t, now_ms);
    ASSERT_EQ(store_->find(id)->state, to);
  }
};

// What every engine must do: run on SQLite here, on PostgreSQL in pg_store_tests (the same file).
class StorePolicyTest : public StorePolicyTestBase, public ::testing::WithParamInterface<test::StoreBackend> {
 protected:
  test::StoreBackend backend() const override { return GetParam(); }
};
TAYORI_STORE_ENGINE_SUITE(StorePolicyTest);

// The file's schema versions (PRAGMA user_version) and migrations from older files.
class SqliteStorePolicyTest : public StorePolicyTestBase {};

// ---- The recipient profile -----------------------------------------------------------------------

TEST_P(StorePolicyTest, AcceptMergesTheProfilePerContactKindAndTheLaterMessageWins) {
  accept_one(message_for("m1", "u1",
                         R"({"id":"u1","timezone":"Asia/Tokyo","locale":"ja-JP","contacts":{"email":"a@example.jp",)"
                         R"("phone":"+819000000001","push":[{"platform":"fcm","token":"tok-1"}]}})"),
             1'000);
  accept_one(message_for("m2", "u1",
                         R"({"id":"u1","timezone":"Asia/Seoul","contacts":{"phone":"+819000000002","line":"U123",)"
                         R"("push":[{"platform":"apns","token":"tok-2"}]}})"),
             2'000);

  auto p = store_->recipient("u1");
  ASSERT_TRUE(p.has_value());
  EXPECT_EQ(p->id, "u1");
  EXPECT_EQ(p->timezone, "Asia/Seoul");  // the later message named one
  EXPECT_EQ(p->locale, "ja-JP");         // the later message did not: kept
  EXPECT_FALSE(p->erased);
  EXPECT_EQ(p->updated_at_ms, 2'000);
  // email kept, phone replaced, line added, push replaced as a whole list.
  EXPECT_EQ(json::parse(p->contacts_json),
            json::parse(R"({"email":"a@example.jp","phone":"+819000000002","line":"U123",)"
                        R"("push":[{"platform":"apns","token":"tok-2"}]})"));
}

TEST_P(StorePolicyTest, AClaimedAcceptAnswersTheProfileAsItsCommitLeftIt) {
  auto claimed = [&](const std::string& id, const std::string& recipient_json, int64_t now_ms) {
    NewMessage m = message_for(id, "u1", recipient_json, now_ms);
    m.claim = true;
    auto r = accept({std::move(m)}, now_ms);
    EXPECT_EQ(r.size(), 1u);
    return r.empty() ? AcceptResult{} : r[0];
  };
  // New: the message's recipient data is the profile.
  AcceptResult first =
      claimed("c1", R"({"id":"u1","timezone":"Asia/Tokyo","contacts":{"email":"a@example.jp"}})", 1'000);
  ASSERT_TRUE(first.claimed && first.recipient);
  EXPECT_EQ(first.recipient->id, "u1");
  EXPECT_EQ(first.recipient->timezone, "Asia/Tokyo");
  EXPECT_EQ(first.recipient->locale, "");
  EXPECT_EQ(json::parse(first.recipient->contacts_json), json::parse(R"({"email":"a@example.jp"})"));
  EXPECT_EQ(first.recipient->updated_at_ms, 1'000);
  // The same again: nothing written, the stored profile answered.
  AcceptResult same = claimed("c2", R"({"id":"u1","contacts":{"email":"a@example.jp"}})", 2'000);
  ASSERT_TRUE(same.recipient);
  EXPECT_EQ(same.recipient->timezone, "Asia/Tokyo");  // stored, though this message named none
  EXPECT_EQ(json::parse(same.recipient->contacts_json), json::parse(R"({"email":"a@example.jp"})"));
  EXPECT_EQ(same.recipient->updated_at_ms, 1'000);
  // Merged: the stored e-mail address and zone beside the message's phone and locale.
  AcceptResult merged = claimed("c3", R"({"id":"u1","locale":"ja-JP","contacts":{"phone":"+819000000001"}})", 3'000);
  ASSERT_TRUE(merged.recipient);
  EXPECT_EQ(merged.recipient->timezone, "Asia/Tokyo");
  EXPECT_EQ(merged.recipient->locale, "ja-JP");
  EXPECT_EQ(json::parse(merged.recipient->contacts_json),
            json::parse(R"({"email":"a@example.jp","phone":"+819000000001"})"));
  // Each answer is what a read of the store gives.
  auto stored = store_->recipient("u1");
  ASSERT_TRUE(stored);
  EXPECT_EQ(stored->contacts_json, merged.recipient->contacts_json);
  EXPECT_EQ(stored->updated_at_ms, merged.recipient->updated_at_ms);
  // A message left in the store for a claim answers none, and one without recipient data has none to answer.
  auto unclaimed = accept({message_for("s1", "u1", R"({"id":"u1","locale":"en-US"})", 4'000)}, 4'000);
  ASSERT_EQ(unclaimed.size(), 1u);
  EXPECT_EQ(unclaimed[0].status, AcceptStatus::accepted);
  EXPECT_FALSE(unclaimed[0].recipient);
  EXPECT_FALSE(claimed("c4", "", 5'000).recipient);
}

TEST_P(StorePolicyTest, WithinOneBatchTheLaterMessageWinsAndRecipientsStaySeparate) {
  accept({message_for("b1", "u1", R"({"id":"u1","locale":"en-US","contacts":{"email":"first@example.com"}})"),
          message_for("b2", "u2", R"({"id":"u2","locale":"fr-FR","contacts":{"email":"other@example.com"}})"),
          message_for("b3", "u1", R"({"id":"u1","locale":"ja-JP","contacts":{"email":"second@example.com"}})")},
         5'000);
  auto u1 = store_->recipient("u1");
  auto u2 = store_->recipient("u2");
  ASSERT_TRUE(u1.has_value());
  ASSERT_TRUE(u2.has_value());
  EXPECT_EQ(u1->locale, "ja-JP");
  EXPECT_EQ(json::parse(u1->contacts_json), json::parse(R"({"email":"second@example.com"})"));
  EXPECT_EQ(u2->locale, "fr-FR");
  EXPECT_EQ(json::parse(u2->contacts_json), json::parse(R"({"email":"other@example.com"})"));
  EXPECT_EQ(u2->timezone, "");
}

TEST_P(StorePolicyTest, AMessageWithoutRecipientDataCreatesNoProfile) {
  accept_one(message_for("m1", "u-bare", ""), 1'000);
  EXPECT_FALSE(store_->recipient("u-bare").has_value());
  EXPECT_FALSE(store_->recipient("nobody").has_value());
}

TEST_P(StorePolicyTest, PutRecipientReplacesTheWholeProfile) {
  put_recipient({"u1", "Asia/Tokyo", "ja-JP", R"({"email":"a@example.jp","phone":"+819000000001"})", 0, false}, 1'000);
  auto p = store_->recipient("u1");
  ASSERT_TRUE(p.has_value());
  EXPECT_EQ(p->timezone, "Asia/Tokyo");
  EXPECT_EQ(p->locale, "ja-JP");
  EXPECT_EQ(json::parse(p->contacts_json), json::parse(R"({"email":"a@example.jp","phone":"+819000000001"})"));
  EXPECT_EQ(p->updated_at_ms, 1'000);  // the write's time, not the struct's
  EXPECT_FALSE(p->erased);

  // PUT is a replacement, not a merge: what it does not name is gone.
  put_recipient({"u1", "", "en-GB", R"({"line":"U9"})", 0, false}, 2'000);
  p = store_->recipient("u1");
  ASSERT_TRUE(p.has_value());
  EXPECT_EQ(p->timezone, "");
  EXPECT_EQ(p->locale, "en-GB");
  EXPECT_EQ(json::parse(p->contacts_json), json::parse(R"({"line":"U9"})"));
  EXPECT_EQ(p->updated_at_ms, 2'000);
}

TEST_P(StorePolicyTest, PutAfterEraseStartsAFreshProfile) {
  put_recipient({"u1", "Asia/Tokyo", "ja-JP", R"({"email":"a@example.jp"})", 0, false}, 1'000);
  EXPECT_TRUE(erase("u1", 2'000));
  ASSERT_TRUE(store_->recipient("u1")->erased);
  put_recipient({"u1", "Europe/Paris", "fr-FR", R"({"email":"new@example.fr"})", 0, false}, 3'000);
  auto p = store_->recipient("u1");
  ASSERT_TRUE(p.has_value());
  EXPECT_FALSE(p->erased);
  EXPECT_EQ(p->timezone, "Europe/Paris");
  EXPECT_EQ(json::parse(p->contacts_json), json::parse(R"({"email":"new@example.fr"})"));
}

// ---- Right to erasure ----------------------------------------------------------------------------

TEST_P(StorePolicyTest, EraseDropsPersonalDataCancelsScheduledAndKeepsTheTimeline) {
  const std::string who = R"({"id":"u1","timezone":"Asia/Tokyo","locale":"ja-JP","contacts":{"email":"a@example.jp"}})";
  finished("done", "u1", State::delivered, 500);
  accept_one(message_for("s1", "u1", who, 10'000), 1'000);
  accept_one(message_for("s2", "u1", "", 20'000), 1'000);
  accept_one(message_for("other", "u2", R"({"id":"u2","contacts":{"email":"b@example.jp"}})", 10'000), 1'000);
  store_->take_slot("u1", {"done", "email", Purpose::marketing, "news", 500});
  const std::string done_payload_before = store_->find("done")->payload;
  ASSERT_NE(done_payload_before, R"({"erased":true})");

  EXPECT_TRUE(erase("u1", 5'000));

  auto p = store_->recipient("u1");
  ASSERT_TRUE(p.has_value());
  EXPECT_TRUE(p->erased);
  EXPECT_EQ(p->timezone, "");
  EXPECT_EQ(p->locale, "");
  EXPECT_EQ(json::parse(p->contacts_json), json::object());
  EXPECT_EQ(p->updated_at_ms, 5'000);

  for (const char* id : {"s1", "s2"}) {
    SCOPED_TRACE(id);
    auto m = store_->find(id);
    ASSERT_TRUE(m.has_value());
    EXPECT_EQ(m->state, State::cancelled);
    EXPECT_EQ(m->payload, R"({"erased":true})");
    auto events = store_->events(id);
    EXPECT_THAT(event_types(events), ElementsAre("accepted", "cancelled"));
    ASSERT_EQ(events.size(), 2u);
    EXPECT_EQ(json::parse(events[1].detail_json), json::parse(R"({"reason":"recipient_erased"})"));
    EXPECT_EQ(events[1].at_ms, 5'000);
  }
  // A delivered message keeps its state and timeline; only its content goes.
  auto done = store_->find("done");
  ASSERT_TRUE(done.has_value());
  EXPECT_EQ(done->state, State::delivered);
  EXPECT_EQ(done->payload, R"({"erased":true})");
  EXPECT_THAT(event_types(store_->events("done")), ElementsAre("accepted", "delivered"));
  // The anonymous cap counter stays (a recipient cannot escape caps by erasure).
  EXPECT_THAT(slot_ids(store_->slots_since("u1", 0)), ElementsAre("done"));
  // Nobody else is touched.
  auto other = store_->find("other");
  ASSERT_TRUE(other.has_value());
  EXPECT_EQ(other->state, State::scheduled);
  EXPECT_EQ(other->payload, R"({"id":"other","secret":"personal data"})");
  EXPECT_EQ(json::parse(store_->recipient("u2")->contacts_json), json::parse(R"({"email":"b@example.jp"})"));
  // The cancelled ones are no longer due: only `other` is.
  EXPECT_EQ(store_->next_due_ms(), 10'000);
  auto counts = store_->count_by_state();
  EXPECT_EQ(counts[State::cancelled], 2);
  EXPECT_EQ(counts[State::delivered], 1);
  EXPECT_EQ(counts[State::scheduled], 1);
}

TEST_P(StorePolicyTest, EraseOfAnUnknownRecipientIsNotFoundAndChangesNothing) {
  accept_one(message_for("m1", "u1", R"({"id":"u1","contacts":{"email":"a@example.jp"}})"), 1'000);
  EXPECT_FALSE(erase("ghost", 2'000));
  EXPECT_FALSE(store_->recipient("ghost").has_value());
  EXPECT_EQ(store_->find("m1")->state, State::scheduled);
  EXPECT_FALSE(store_->recipient("u1")->erased);
}

TEST_P(StorePolicyTest, EraseFindsARecipientKnownOnlyFromItsMessages) {
  accept_one(message_for("m1", "u-bare", "", 9'000), 1'000);
  EXPECT_TRUE(erase("u-bare", 2'000));
  auto m = store_->find("m1");
  ASSERT_TRUE(m.has_value());
  EXPECT_EQ(m->state, State::cancelled);
  EXPECT_EQ(m->payload, R"({"erased":true})");
}

TEST_P(StorePolicyTest, AnErasedRecipientWhoAppearsAgainStartsAfresh) {
  accept_one(message_for("m1", "u1",
                         R"({"id":"u1","timezone":"Asia/Tokyo","locale":"ja-JP",)"
                         R"("contacts":{"email":"a@example.jp","phone":"+819000000001"}})"),
             1'000);
  ASSERT_TRUE(erase("u1", 2'000));
  accept_one(message_for("m2", "u1", R"({"id":"u1","contacts":{"email":"new@example.jp"}})"), 3'000);
  auto p = store_->recipient("u1");
  ASSERT_TRUE(p.has_value());
  EXPECT_FALSE(p->erased);
  EXPECT_EQ(p->timezone, "");  // nothing of the erased profile comes back
  EXPECT_EQ(p->locale, "");
  EXPECT_EQ(json::parse(p->contacts_json), json::parse(R"({"email":"new@example.jp"})"));
  EXPECT_EQ(p->updated_at_ms, 3'000);
  EXPECT_EQ(store_->find("m2")->state, State::scheduled);  // the new message is not cancelled
  EXPECT_EQ(store_->find("m1")->state, State::cancelled);

  // One who comes back with no contacts at all (the erased profile's are empty too, so nothing changed in
  // them) is a recipient again all the same, with an empty profile.
  accept_one(message_for("m3", "u2", R"({"id":"u2","timezone":"Asia/Tokyo","contacts":{"line":"U2"}})"), 1'000);
  ASSERT_TRUE(erase("u2", 2'000));
  accept_one(message_for("m4", "u2", R"({"id":"u2"})"), 3'000);
  auto back = store_->recipient("u2");
  ASSERT_TRUE(back.has_value());
  EXPECT_FALSE(back->erased);
  EXPECT_EQ(back->timezone, "");
  EXPECT_EQ(json::parse(back->contacts_json), json::object());
  EXPECT_EQ(back->updated_at_ms, 3'000);
  EXPECT_THAT(store_->recipients_by_contact("U2"), IsEmpty());
}

// ---- Consent ---------------------------------------------------------------------------------------

// An inbound STOP or unfollow names a contact point, which several recipients may share (a family's
// number): the lookup finds every one of them, by index (table contact_points, kept in step with each
// profile's contacts through PUT, the merge of an accepted message, and erasure).
TEST_P(StorePolicyTest, EveryRecipientOfAContactPointIsFoundAndTheIndexFollowsTheProfiles) {
  const std::string shared = "+819000000001";
  put_recipient({"mother", "", "ja-JP", R"({"phone":"+819000000001","email":"m@example.jp"})", 0, false}, 1'000);
  put_recipient({"son", "", "ja-JP", R"({"phone":"+819000000001"})", 0, false}, 2'000);
  accept_one(message_for("m1", "daughter", R"({"id":"daughter","contacts":{"phone":"+819000000001","push":[{"platform":"fcm","token":"t"}]}})"), 3'000);
  put_recipient({"other", "", "", R"({"phone":"+819000000002"})", 0, false}, 4'000);
  EXPECT_THAT(store_->recipients_by_contact(shared), ElementsAre("daughter", "son", "mother"));  // latest first
  EXPECT_THAT(store_->recipients_by_contact("m@example.jp"), ElementsAre("mother"));
  EXPECT_THAT(store_->recipients_by_contact("+819000000003"), IsEmpty());
  EXPECT_THAT(store_->recipients_by_contact(""), IsEmpty());

  // A profile that changes its number leaves the old one; the merge of a message moves it too.
  put_recipient({"son", "", "ja-JP", R"({"phone":"+819000000003"})", 0, false}, 5'000);
  accept_one(message_for("m2", "mother", R"({"id":"mother","contacts":{"phone":"+819000000004"}})"), 6'000);
  EXPECT_THAT(store_->recipients_by_contact(shared), ElementsAre("daughter"));
  EXPECT_THAT(store_->recipients_by_contact("+819000000003"), ElementsAre("son"));
  EXPECT_THAT(store_->recipients_by_contact("m@example.jp"), ElementsAre("mother"));  // the merge keeps other kinds
  // Erasure drops its contact points.
  EXPECT_TRUE(erase("daughter", 7'000));
  EXPECT_THAT(store_->recipients_by_contact(shared), IsEmpty());
  // An erased recipient who comes back is indexed again, even with the contacts it had.
  accept_one(message_for("m3", "daughter", R"({"id":"daughter","contacts":{"phone":"+819000000001"}})"), 8'000);
  EXPECT_THAT(store_->recipients_by_contact(shared), ElementsAre("daughter"));
  // A message that changes only the time zone keeps the index (and the profile's other contacts).
  accept_one(message_for("m4", "son", R"({"id":"son","timezone":"Asia/Tokyo","contacts":{"phone":"+819000000003"}})"),
             9'000);
  EXPECT_EQ(store_->recipient("son")->timezone, "Asia/Tokyo");
  EXPECT_THAT(store_->recipients_by_contact("+819000000003"), ElementsAre("son"));
  // The rows themselves, not only what the lookup (which skips erased recipients) shows: a recipient's rows are
  // found through its contacts (there is no index by recipient), so each replaced or erased contact's row is gone.
  EXPECT_TRUE(erase("other", 10'000));
  EXPECT_EQ(sorted_rows("SELECT contact || ' ' || recipient_id FROM contact_points"),
            "+819000000001 daughter,+819000000003 son,+819000000004 mother,m@example.jp mother");
}

// The migration that adds contact_points (SQLite 6, PostgreSQL 2) fills it from the profiles stored before.
TEST_P(StorePolicyTest, TheContactPointMigrationFillsTheIndexFromTheStoredProfiles) {
  put_recipient({"mother", "", "", R"({"phone":"+819000000001","push":[{"platform":"fcm","token":"t"}]})", 0, false}, 1'000);
  put_recipient({"son", "", "", R"({"phone":"+819000000001","line":"U1"})", 0, false}, 2'000);
  put_recipient({"gone", "", "", R"({"phone":"+819000000001"})", 0, false}, 3'000);
  ASSERT_TRUE(erase("gone", 4'000));
  store_.reset();
  // Back to the schema before the migration: the table did not exist.
  if (backend() == test::StoreBackend::sqlite) {
    test::exec_sql(path_,
                   std::string(test::kEventsByMessageIdSqlite) + "DROP TABLE contact_points; PRAGMA user_version = 5;");
  } else {
#ifdef TAYORI_STORE_TESTS_ON_POSTGRES
    store::postgres::PgOptions options;
    options.uri = pg_uri_;
    store::postgres::PgConnection c(options);
    c.exec(test::kEventsByMessageIdPostgres);
    c.exec("DROP TABLE contact_points");
    c.exec("DELETE FROM schema_version WHERE version >= 2");
#endif
  }
  open();
  EXPECT_THAT(store_->recipients_by_contact("+819000000001"), ElementsAre("son", "mother"));
  EXPECT_THAT(store_->recipients_by_contact("U1"), ElementsAre("son"));
  EXPECT_THAT(store_->recipients_by_contact("t"), IsEmpty());  // push tokens are not contact points
}

TEST_P(StorePolicyTest, ConsentHistoryIsKeptInOrderAndCurrentIsTheLatestPerChannelAndPurpose) {
  consent("u1", {"email", Purpose::marketing, ConsentState::opted_in, "api", "form#12", 1'000});
  consent("u1", {"sms", Purpose::marketing, ConsentState::opted_in, "sms_keyword", "START", 2'000});
  consent("u2", {"email", Purpose::marketing, ConsentState::opted_out, "api", "", 2'500});
  consent("u1", {"email", Purpose::marketing, ConsentState::opted_out, "list_unsubscribe", "mailto", 3'000});
  consent("u1", {"email", Purpose::transactional, ConsentState::opted_out, "api", "", 4'000});

  EXPECT_THAT(describe(store_->consent_history("u1")),
              ElementsAre("email/marketing/opted_in/api/form#12@1000", "sms/marketing/opted_in/sms_keyword/START@2000",
                          "email/marketing/opted_out/list_unsubscribe/mailto@3000",
                          "email/transactional/opted_out/api/@4000"));
  // Current: one record per channel x purpose, in no particular order.
  EXPECT_THAT(describe(store_->consent_current("u1")),
              UnorderedElementsAre("sms/marketing/opted_in/sms_keyword/START@2000",
                          "email/marketing/opted_out/list_unsubscribe/mailto@3000",
                          "email/transactional/opted_out/api/@4000"));
  EXPECT_THAT(describe(store_->consent_current("u2")), ElementsAre("email/marketing/opted_out/api/@2500"));
  EXPECT_THAT(store_->consent_history("nobody"), IsEmpty());
  EXPECT_THAT(store_->consent_current("nobody"), IsEmpty());

  // Opting in again appends; the history still holds every record.
  consent("u1", {"email", Purpose::marketing, ConsentState::opted_in, "api", "form#13", 5'000});
  EXPECT_EQ(store_->consent_history("u1").size(), 5u);
  EXPECT_THAT(describe(store_->consent_current("u1")),
              UnorderedElementsAre("sms/marketing/opted_in/sms_keyword/START@2000", "email/transactional/opted_out/api/@4000",
                          "email/marketing/opted_in/api/form#13@5000"));
}

TEST_P(StorePolicyTest, ConsentSurvivesReopen) {
  consent("u1", {"line", Purpose::marketing, ConsentState::opted_in, "line_follow", "", 1'000});
  reopen();
  EXPECT_THAT(describe(store_->consent_current("u1")), ElementsAre("line/marketing/opted_in/line_follow/@1000"));
}

// ---- Suppressions ------------------------------------------------------------------------------------

// A contact point may be stored both in clear and in its erased form (an erased recipient's suppression, then the
// same address suppressed again in clear): the lookup takes the row in clear, which has the reason as recorded.
// The erased form alone still suppresses, under the contact point asked about.
TEST_P(StorePolicyTest, ASuppressionInClearWinsOverItsErasedForm) {
  suppress({ops::suppression_key("a@example.jp"), "erased", "erasure", 500});
  suppress({"a@example.jp", "hard_bounce", "email", 1'000});
  suppress({ops::suppression_key("b@example.jp"), "erased", "erasure", 600});
  auto found = store_->suppressions({"a@example.jp", "b@example.jp", "c@example.jp"});
  ASSERT_EQ(found.size(), 2u);
  EXPECT_EQ(found[0].contact, "a@example.jp");
  EXPECT_EQ(found[0].reason, "hard_bounce");
  EXPECT_EQ(found[1].contact, "b@example.jp");
  EXPECT_EQ(found[1].reason, "erased");
}

TEST_P(StorePolicyTest, SuppressionsUpsertLookUpByContactAndRemove) {
  suppress({"a@example.jp", "hard_bounce", "email", 1'000});
  suppress({"+819000000001", "unregistered", "sms", 2'000});
  suppress({"a@example.jp", "manual", "api", 3'000});  // the same contact again: replaced, not duplicated

  auto found = store_->suppressions({"a@example.jp", "nobody@example.jp", "+819000000001"});
  ASSERT_EQ(found.size(), 2u);
  EXPECT_EQ(found[0].contact, "a@example.jp");
  EXPECT_EQ(found[0].reason, "manual");
  EXPECT_EQ(found[0].source, "api");
  EXPECT_EQ(found[0].at_ms, 3'000);
  EXPECT_EQ(found[1].contact, "+819000000001");
  EXPECT_EQ(found[1].reason, "unregistered");
  EXPECT_EQ(found[1].source, "sms");
  EXPECT_EQ(found[1].at_ms, 2'000);
  EXPECT_THAT(store_->suppressions({}), IsEmpty());
  EXPECT_THAT(contacts_of(store_->list_suppressions("", 100)), ElementsAre("+819000000001", "a@example.jp"));

  EXPECT_TRUE(unsuppress("a@example.jp"));
  EXPECT_FALSE(unsuppress("a@example.jp"));  // already gone
  EXPECT_FALSE(unsuppress("never@example.jp"));
  EXPECT_THAT(contacts_of(store_->suppressions({"a@example.jp", "+819000000001"})), ElementsAre("+819000000001"));
}

TEST_P(StorePolicyTest, ListSuppressionsPaginatesByContactAfterACursor) {
  for (const char* c : {"e@x", "a@x", "d@x", "b@x", "c@x"}) suppress({c, "stop", "sms", 1'000});
  EXPECT_THAT(contacts_of(store_->list_suppressions("", 2)), ElementsAre("a@x", "b@x"));
  EXPECT_THAT(contacts_of(store_->list_suppressions("b@x", 2)), ElementsAre("c@x", "d@x"));
  EXPECT_THAT(contacts_of(store_->list_suppressions("d@x", 2)), ElementsAre("e@x"));
  EXPECT_THAT(store_->list_suppressions("e@x", 2), IsEmpty());
  // The cursor need not be a stored contact.
  EXPECT_THAT(contacts_of(store_->list_suppressions("bb", 10)), ElementsAre("c@x", "d@x", "e@x"));
}

// ---- Frequency-cap slots ---------------------------------------------------------------------------

TEST_P(StorePolicyTest, TakeSlotIsIdempotentPerMessage) {
  store_->take_slot("u1", {"m1", "email", Purpose::marketing, "news", 1'000});
  // The same message cleared again after a crash: it re-takes its own slot, it does not add one.
  store_->take_slot("u1", {"m1", "sms", Purpose::marketing, "news", 2'000});
  auto slots = store_->slots_since("u1", 0);
  ASSERT_EQ(slots.size(), 1u);
  EXPECT_EQ(slots[0].message_id, "m1");
  EXPECT_EQ(slots[0].channel, "sms");
  EXPECT_EQ(slots[0].purpose, Purpose::marketing);
  EXPECT_EQ(slots[0].category, "news");
  EXPECT_EQ(slots[0].at_ms, 2'000);
  // A different message is a different slot; another recipient's slots are theirs.
  store_->take_slot("u1", {"m2", "email", Purpose::transactional, "", 2'500});
  store_->take_slot("u2", {"m1", "email", Purpose::marketing, "", 2'500});
  EXPECT_THAT(slot_ids(store_->slots_since("u1", 0)), ElementsAre("m1", "m2"));
  EXPECT_THAT(slot_ids(store_->slots_since("u2", 0)), ElementsAre("m1"));
  auto u1 = store_->slots_since("u1", 2'000);  // only m2 is after 2000
  ASSERT_EQ(u1.size(), 1u);
  EXPECT_EQ(u1[0].purpose, Purpose::transactional);
  EXPECT_EQ(u1[0].category, "");
}

// A decision's three reads as one question: the same answers as asking each, for this recipient and these
// contact points only; slots only when asked for, the held (taken, not yet committed) ones included.
TEST_P(StorePolicyTest, DecisionStateIsConsentSuppressionsAndSlotsOfThatRecipientAndItsContacts) {
  consent("u1", {"email", Purpose::marketing, ConsentState::opted_in, "api", "form#1", 1'000});
  consent("u1", {"email", Purpose::marketing, ConsentState::opted_out, "api", "", 2'000});
  consent("u2", {"sms", Purpose::marketing, ConsentState::opted_in, "api", "", 1'000});
  suppress({"a@example.jp", "hard_bounce", "email", 1'000});
  suppress({"other@example.jp", "manual", "api", 1'000});
  store_->take_slot("u1", {"m1", "email", Purpose::marketing, "news", 1'000});
  store_->take_slot("u1", {"m2", "email", Purpose::marketing, "news", 3'000});
  store_->take_slot("u2", {"m3", "email", Purpose::marketing, "news", 3'000});

  policy::RecipientState state = store_->decision_state("u1", {"a@example.jp", "+819000000001"}, 2'000);
  EXPECT_THAT(describe(state.consent), ElementsAre("email/marketing/opted_out/api/@2000"));
  ASSERT_EQ(state.suppressed.size(), 1u);
  EXPECT_EQ(state.suppressed.at("a@example.jp").reason, "hard_bounce");
  EXPECT_THAT(slot_ids(state.slots), ElementsAre("m2"));
  EXPECT_THAT(slot_ids(store_->decision_state("u1", {}, 0).slots), ElementsAre("m1", "m2"));

  // Without caps no slot is read; an unknown recipient has an empty state.
  EXPECT_THAT(store_->decision_state("u1", {"a@example.jp"}, std::nullopt).slots, IsEmpty());
  policy::RecipientState nobody = store_->decision_state("nobody", {"nobody@example.jp"}, 0);
  EXPECT_THAT(nobody.consent, IsEmpty());
  EXPECT_THAT(nobody.suppressed, IsEmpty());
  EXPECT_THAT(nobody.slots, IsEmpty());

  // Asked again after the slots committed and a reopen: the same answer from the tables alone.
  reopen();
  EXPECT_THAT(slot_ids(store_->decision_state("u1", {"a@example.jp"}, 0).slots), ElementsAre("m1", "m2"));
  EXPECT_EQ(store_->decision_state("u1", {"a@example.jp"}, 0).suppressed.count("a@example.jp"), 1u);
}

// Where the store is its database's only writer (SQLite), a decision about a recipient with nothing stored is
// answered from memory (store/presence_filter.hpp). Every kind of write must show in the very next decision
// once its completion has run, and a recipient with something stored must be read.
TEST_P(StorePolicyTest, DecisionStateShowsEveryWriteOnceCommittedAndReadsOnlyWhatMayBeStored) {
  const bool filtered = backend() == test::StoreBackend::sqlite;
  auto from_memory = [&] { return store_->decision_reads().from_memory; };
  // Each kind of row on a recipient of its own, so that no other row makes the store read anyway.
  auto state = [&](const std::string& recipient, const std::string& contact) {
    return store_->decision_state(recipient, {contact, "+819000000000"}, 0);
  };

  int64_t unread = from_memory();
  EXPECT_THAT(state("u-consent", "c@example.jp").consent, IsEmpty());
  EXPECT_EQ(from_memory(), unread + (filtered ? 1 : 0));
  consent("u-consent", {"sms", Purpose::marketing, ConsentState::opted_in, "api", "", 1'000});
  unread = from_memory();
  EXPECT_THAT(describe(state("u-consent", "c@example.jp").consent), ElementsAre("sms/marketing/opted_in/api/@1000"));
  EXPECT_EQ(from_memory(), unread);  // read from the table

  suppress({"s@example.jp", "hard_bounce", "email", 1'000});
  EXPECT_EQ(state("u-suppressed", "s@example.jp").suppressed.count("s@example.jp"), 1u);
  EXPECT_TRUE(unsuppress("s@example.jp"));
  EXPECT_THAT(state("u-suppressed", "s@example.jp").suppressed, IsEmpty());

  // A slot counts while held, and from its insert on: between the two there is no moment it is missed. A
  // waited-for write behind it in the writer's order shows it committed (and no longer held).
  auto slots = [&] { return slot_ids(state("u-slots", "t@example.jp").slots); };
  store_->take_slot("u-slots", {"s1", "sms", Purpose::marketing, "", 2'000});
  EXPECT_THAT(slots(), ElementsAre("s1"));
  consent("someone-else", {"sms", Purpose::marketing, ConsentState::opted_in, "api", "", 1'000});
  EXPECT_THAT(slots(), ElementsAre("s1"));
  release("u-slots", "s1");
  EXPECT_THAT(slots(), IsEmpty());
  store_->take_slot("u-slots", {"s2", "sms", Purpose::marketing, "", 500});
  consent("someone-else", {"sms", Purpose::marketing, ConsentState::opted_in, "api", "", 1'000});
  EXPECT_EQ(store_->purge_slots(1'000).value(), 1);
  unread = from_memory();
  EXPECT_THAT(slots(), IsEmpty());
  // Its slots and suppression gone, a recipient is answered from memory again.
  EXPECT_THAT(state("u-suppressed", "s@example.jp").suppressed, IsEmpty());
  EXPECT_EQ(from_memory(), unread + (filtered ? 2 : 0));

  // The suppression of an erased recipient's contact point is stored under its erased form, and still found.
  put_recipient({"u-erased", "", "", R"({"email":"y@example.jp"})", 0, false}, 1'000);
  suppress({"y@example.jp", "hard_bounce", "email", 1'000});
  EXPECT_TRUE(erase("u-erased", 2'000));
  ASSERT_THAT(contacts_of(store_->list_suppressions("", 10)), ElementsAre(ops::suppression_key("y@example.jp")));
  EXPECT_EQ(state("u-new", "y@example.jp").suppressed.count("y@example.jp"), 1u);

  // What was stored before the store opened counts as well.
  reopen();
  EXPECT_THAT(describe(state("u-consent", "c@example.jp").consent), ElementsAre("sms/marketing/opted_in/api/@1000"));
  EXPECT_EQ(state("u-new", "y@example.jp").suppressed.count("y@example.jp"), 1u);
  suppress({"s@example.jp", "hard_bounce", "email", 3'000});
  store_->take_slot("u-slots", {"s3", "sms", Purpose::marketing, "", 4'000});
  consent("someone-else", {"sms", Purpose::marketing, ConsentState::opted_in, "api", "", 1'000});
  reopen();
  EXPECT_EQ(state("u-suppressed", "s@example.jp").suppressed.count("s@example.jp"), 1u);
  EXPECT_THAT(slots(), ElementsAre("s3"));
  unread = from_memory();
  EXPECT_THAT(state("nobody", "nobody@example.jp").consent, IsEmpty());
  EXPECT_EQ(from_memory(), unread + (filtered ? 1 : 0));
}

TEST_P(StorePolicyTest, ReleaseSlotGivesBackOnlyThatMessagesSlot) {
  store_->take_slot("u1", {"m1", "email", Purpose::marketing, "", 1'000});
  store_->take_slot("u1", {"m2", "email", Purpose::marketing, "", 1'100});
  store_->take_slot("u2", {"m1", "email", Purpose::marketing, "", 1'200});
  release("u1", "m1");
  EXPECT_THAT(slot_ids(store_->slots_since("u1", 0)), ElementsAre("m2"));
  EXPECT_THAT(slot_ids(store_->slots_since("u2", 0)), ElementsAre("m1"));
  release("u1", "never-taken");  // harmless
  EXPECT_THAT(slot_ids(store_->slots_since("u1", 0)), ElementsAre("m2"));
  // A release without a completion is still applied (a waited-for write behind it in the writer's order
  // shows it committed), and a slot taken since counts before its own commit.
  store_->release_slot("u1", "m2", nullptr);
  release("u1", "fence");
  store_->take_slot("u1", {"later", "email", Purpose::marketing, "", 1'300});
  EXPECT_THAT(slot_ids(store_->slots_since("u1", 0)), ElementsAre("later"));
}

TEST_P(StorePolicyTest, SlotsSinceIsAnOpenWindowAndPurgeDropsOldSlots) {
  for (int i = 1; i <= 3; ++i)
    store_->take_slot("u1", {"m" + std::to_string(i), "email", Purpose::marketing, "", i * 1'000});
  store_->take_slot("u2", {"x", "email", Purpose::marketing, "", 500});
  EXPECT_THAT(slot_ids(store_->slots_since("u1", 999)), ElementsAre("m1", "m2", "m3"));
  EXPECT_THAT(slot_ids(store_->slots_since("u1", 1'000)), ElementsAre("m2", "m3"));  // (since, ...]: 1000 is out
  EXPECT_THAT(slot_ids(store_->slots_since("u1", 3'000)), IsEmpty());

  EXPECT_EQ(store_->purge_slots(2'000).value(), 2);  // u1's m1 (1000) and u2's x (500): strictly before 2000
  EXPECT_THAT(slot_ids(store_->slots_since("u1", 0)), ElementsAre("m2", "m3"));
  EXPECT_THAT(store_->slots_since("u2", 0), IsEmpty());
  EXPECT_EQ(store_->purge_slots(2'000).value(), 0);
}

// ---- The `suppressed` state --------------------------------------------------------------------------

TEST_P(StorePolicyTest, SuppressedIsCountedAndPurgedLikeOtherFinishedStates) {
  finished("sup-old", "u1", State::suppressed, 1'000);
  finished("sup-new", "u1", State::suppressed, 5'000);
  accept_one(message_for("waiting", "u1", "", 99'000), 1'000);
  auto counts = store_->count_by_state();
  EXPECT_EQ(counts[State::suppressed], 2);
  EXPECT_EQ(counts[State::scheduled], 1);
  EXPECT_EQ(store_->find("sup-old")->last_reason, "frequency_cap");
  EXPECT_TRUE(is_final(State::suppressed));
  EXPECT_EQ(parse_state("suppressed"), State::suppressed);

  EXPECT_EQ(store_->purge_finished(3'000).value(), 1);
  EXPECT_FALSE(store_->find("sup-old").has_value());
  EXPECT_THAT(store_->events("sup-old"), IsEmpty());
  EXPECT_TRUE(store_->find("sup-new").has_value());
  EXPECT_TRUE(store_->find("waiting").has_value());
  counts = store_->count_by_state();
  EXPECT_EQ(counts[State::suppressed], 1);
  EXPECT_EQ(counts[State::scheduled], 1);
}

// ---- Migration from version 1 --------------------------------------------------------------------------

#ifndef TAYORI_STORE_TESTS_ON_POSTGRES
// Builds the schema exactly as migration 1 shipped it, with one scheduled and one delivered message.
void build_v1_file(const std::string& path) {
  test::exec_sql(path, std::string(test::kStoreSchemaV1) + R"sql(
    INSERT INTO messages(id, api_key, payload_hash, payload, state, channel_index, channel, attempts, created_at,
                         updated_at, due_at, send_at, expires_at, last_reason)
      VALUES ('v1-msg', 'upstream', 'hash-1', '{"id":"v1-msg","kept":true}', 'scheduled', 1, 'sms', 2, 100, 200,
              7000, 6000, 90000, 'provider timeout'),
             ('v1-done', 'upstream', 'hash-2', '{}', 'delivered', 0, 'email', 1, 100, 150, 150, NULL, NULL, '');
    INSERT INTO events(message_id, type, at, detail) VALUES ('v1-msg', 'accepted', 100, '{"api_key":"upstream"}'),
                                                            ('v1-msg', 'requeued', 200, '{}');
    PRAGMA user_version = 1;
  )sql");
}
#endif

#ifndef TAYORI_STORE_TESTS_ON_POSTGRES
TEST_F(SqliteStorePolicyTest, AVersion1FileIsMigratedToTheCurrentVersionAndKeepsItsData) {
  const std::string v1 = (dir_ / "v1.db").string();
  ASSERT_NO_FATAL_FAILURE(build_v1_file(v1));
  ASSERT_EQ(user_version(v1), 1);
  // As if 38 newer events had been deleted since: AUTOINCREMENT had given numbers up to 40.
  test::exec_sql(v1, "UPDATE sqlite_sequence SET seq = 40 WHERE name = 'events'");

  store_ = open_sqlite({v1});
  path_ = v1;
  EXPECT_EQ(user_version(v1), 13);
  // Migration 10: the messages in arrival order (created_at, then id), each index as a new file has it.
  EXPECT_THAT(test::query_column(v1, "SELECT id FROM messages ORDER BY rowid"), ElementsAre("v1-done", "v1-msg"));
  const std::string fresh = (dir_ / "fresh.db").string();
  open_sqlite({fresh}).reset();
  auto messages_schema = [](const std::string& path) {
    return test::query_column(path,
                              "SELECT name || ': ' || sql FROM sqlite_master WHERE tbl_name = 'messages' "
                              "AND sql IS NOT NULL ORDER BY name");
  };
  EXPECT_THAT(messages_schema(v1), testing::SizeIs(8));  // the table and its seven indexes
  EXPECT_EQ(messages_schema(v1), messages_schema(fresh));
  // Migration 11: the messages numbered as they were ordered, each event given its message's number, and the
  // timeline's index on that number.
  EXPECT_THAT(test::query_column(v1, "SELECT seq || ':' || id FROM messages ORDER BY seq"),
              ElementsAre("1:v1-done", "2:v1-msg"));
  EXPECT_THAT(test::query_column(v1, "SELECT message_seq || ':' || type FROM events ORDER BY seq"),
              ElementsAre("2:accepted", "2:requeued"));
  auto events_schema = [](const std::string& path) {
    return test::query_column(path,
                              "SELECT name || ': ' || sql FROM sqlite_master WHERE tbl_name = 'events' "
                              "AND sql IS NOT NULL ORDER BY name");
  };
  EXPECT_EQ(events_schema(v1), events_schema(fresh));
  EXPECT_THAT(test::query_column(v1, "SELECT name FROM pragma_index_info('events_message') ORDER BY seqno"),
              ElementsAre("message_seq", "seq"));
  // Migration 12: the events kept their numbers, and the last number AUTOINCREMENT gave is remembered.
  EXPECT_THAT(test::query_column(v1, "SELECT seq FROM events ORDER BY seq"), ElementsAre("1", "2"));
  EXPECT_THAT(test::query_column(v1, "SELECT name || ':' || last FROM numbers_given"), ElementsAre("events:40"));

  auto m = store_->find("v1-msg");
  ASSERT_TRUE(m.has_value());
  EXPECT_EQ(m->api_key, "upstream");
  EXPECT_EQ(m->payload_hash, "hash-1");
  EXPECT_EQ(m->payload, R"({"id":"v1-msg","kept":true})");
  EXPECT_EQ(m->state, State::scheduled);
  EXPECT_EQ(m->channel_index, 1);
  EXPECT_EQ(m->channel, "sms");
  EXPECT_EQ(m->attempts, 2);
  EXPECT_EQ(m->created_at_ms, 100);
  EXPECT_EQ(m->updated_at_ms, 200);
  EXPECT_EQ(m->due_at_ms, 7'000);
  EXPECT_EQ(m->send_at_ms, 6'000);
  EXPECT_EQ(m->expires_at_ms, 90'000);
  EXPECT_EQ(m->last_reason, "provider timeout");
  // Migration 3: the retry budget of its channel starts afresh (attempts before it were not counted per channel).
  EXPECT_EQ(m->channel_attempts, 0);
  EXPECT_FALSE(m->channel_since_ms.has_value());
  auto events = store_->events("v1-msg");
  EXPECT_THAT(event_types(events), ElementsAre("accepted", "requeued"));
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[0].detail_json, R"({"api_key":"upstream"})");
  EXPECT_EQ(store_->next_due_ms(), 7'000);

  // Migration 2's tables work on the migrated file.
  accept_one(message_for("v2-msg", "u1", R"({"id":"u1","locale":"ja-JP","contacts":{"email":"a@example.jp"}})"), 8'000);
  EXPECT_EQ(store_->recipient("u1")->locale, "ja-JP");
  consent("u1", {"email", Purpose::marketing, ConsentState::opted_in, "api", "", 8'000});
  EXPECT_EQ(store_->consent_current("u1").size(), 1u);
  suppress({"dead@example.jp", "hard_bounce", "email", 8'000});
  EXPECT_EQ(store_->suppressions({"dead@example.jp"}).size(), 1u);
  store_->take_slot("u1", {"v2-msg", "email", Purpose::marketing, "", 8'000});
  EXPECT_THAT(slot_ids(store_->slots_since("u1", 0)), ElementsAre("v2-msg"));
  // The old message belongs to no recipient: erasing u1 leaves it alone.
  EXPECT_TRUE(erase("u1", 9'000));
  EXPECT_EQ(store_->find("v1-msg")->state, State::scheduled);
  EXPECT_EQ(store_->find("v1-msg")->payload, R"({"id":"v1-msg","kept":true})");
  EXPECT_EQ(store_->find("v2-msg")->state, State::cancelled);
  // The finished index was rebuilt with `suppressed`; the v1 delivered row is still purged.
  EXPECT_EQ(store_->purge_finished(1'000).value(), 1);
  EXPECT_FALSE(store_->find("v1-done").has_value());

  // A message accepted after the migration comes after those it kept, and its events carry its number.
  EXPECT_THAT(test::query_column(v1, "SELECT seq || ':' || id FROM messages ORDER BY seq"),
              ElementsAre("2:v1-msg", "3:v2-msg"));
  EXPECT_THAT(test::query_column(v1, "SELECT DISTINCT message_seq FROM events WHERE message_id = 'v2-msg'"),
              ElementsAre("3"));
  // Its events are numbered above every number AUTOINCREMENT gave.
  EXPECT_THAT(test::query_column(v1, "SELECT MIN(seq) > 40 FROM events WHERE message_id = 'v2-msg'"), ElementsAre("1"));

  // Reopening does not migrate again.
  store_.reset();
  store_ = open_sqlite({v1});
  EXPECT_EQ(user_version(v1), 13);
  EXPECT_TRUE(store_->find("v1-msg").has_value());
  EXPECT_EQ(store_->consent_history("u1").size(), 1u);
}
#endif

#ifndef TAYORI_STORE_TESTS_ON_POSTGRES
TEST_F(SqliteStorePolicyTest, ANewFileIsAtTheCurrentVersionWithThePolicyTables) {
  EXPECT_EQ(user_version(path_), 13);
  // Schema 5: no index holds a state that every transition would move, except as a partial index of the
  // rows one query looks for.
  auto indexes = test::query_column(path_,
                                    "SELECT name || ':' || (sql LIKE '%WHERE%') FROM sqlite_master WHERE type = 'index' "
                                    "AND tbl_name = 'messages' AND sql IS NOT NULL ORDER BY name");
  EXPECT_THAT(indexes, ElementsAre("messages_due:1", "messages_finished:1", "messages_in_flight:1",
                                   "messages_parent:1", "messages_provider_message:1", "messages_recipient:0",
                                   "messages_replayable:1"));
  auto tables = test::query_column(path_,
                                   "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' "
                                   "ORDER BY name");
  EXPECT_THAT(tables,
              ElementsAre("cap_slots", "consent", "contact_points", "events", "inbound_seen", "messages",
                          "numbers_given", "questions", "recipients", "stats", "suppressions", "webhook_cursors"));
  // Schema 13: contact_points has its primary key alone (a recipient's rows are found through its contacts).
  EXPECT_THAT(test::query_column(path_,
                                 "SELECT name FROM sqlite_master WHERE type = 'index' AND "
                                 "tbl_name = 'contact_points' AND sql IS NOT NULL"),
              IsEmpty());
}

// The presence filter counts an insert before its commit (store/presence_filter.hpp); a group that does not
// commit gives back what it counted. A consent refused for a full database leaves its recipient answered from
// memory again, as one that never had a row, while one committed before is read.
TEST_F(SqliteStorePolicyTest, AConsentTheDatabaseRefusedLeavesNothingCountedForItsRecipient) {
  reopen_limited_to(128 * 1024);
  const std::string evidence(4'000, 'x');
  std::string refused;
  for (int i = 0; i < 200 && refused.empty(); ++i) {
    const std::string recipient = "full-" + std::to_string(i);
    std::promise<Result<void>> done;
    auto answered = done.get_future();
    store_->append_consent(recipient, {{"sms", Purpose::marketing, ConsentState::opted_in, "api", evidence, 1'000}},
                           [&done](Result<void> r) { done.set_value(std::move(r)); });
    if (!answered.get()) refused = recipient;
  }
  ASSERT_FALSE(refused.empty()) << "128 KiB held 200 consent records of 4 KB";
  ASSERT_NE(refused, "full-0");
  const int64_t before = store_->decision_reads().from_memory;
  EXPECT_THAT(store_->decision_state(refused, {}, 0).consent, IsEmpty());
  EXPECT_EQ(store_->decision_reads().from_memory, before + 1);
  EXPECT_THAT(store_->decision_state("full-0", {}, 0).consent, testing::SizeIs(1));
  EXPECT_EQ(store_->decision_reads().from_memory, before + 1);
}

// Schema 8: SQLite checks every partial index's WHERE at each write of a row, and an IN list of more than two
// values there is a temporary b-tree built and dropped per write. No insert or state change of a message may
// pay for one (EXPLAIN's opcode column, OpenEphemeral).
TEST_F(SqliteStorePolicyTest, NoInsertOrStateChangeOfAMessageBuildsATemporaryBTree) {
  for (const char* write : {"INSERT INTO messages(id, api_key, payload_hash, payload, state, created_at, updated_at, "
                            "due_at, recipient_id) VALUES('m', 'k', 'h', '{}', 'scheduled', 1, 1, 1, 'u')",
                            "UPDATE messages SET state = 'delivered', updated_at = 2 WHERE id = 'm'",
                            "DELETE FROM messages WHERE id = 'm'"}) {
    auto opcodes = test::query_column(path_, std::string("EXPLAIN ") + write, 1);
    EXPECT_FALSE(opcodes.empty()) << write;
    EXPECT_THAT(opcodes, Not(Contains("OpenEphemeral"))) << write;
  }
  // Purge asks with the index's own words, so it reads by the index.
  auto plan = test::query_column(
      path_, "EXPLAIN QUERY PLAN DELETE FROM messages WHERE state NOT IN ('scheduled', 'dispatched') AND updated_at < 5",
      3);
  EXPECT_THAT(plan, Contains(HasSubstr("messages_finished")));
}

// A receipt finds its message, and an answer its scheduled follow-ups, through their partial indexes. With
// `col = ?1` alone the index's `col != ''` was not implied, and each was a scan of every message: on the
// inbound path, and for follow-ups inside the writer's group commit.
TEST_F(SqliteStorePolicyTest, LookupsOnPartiallyIndexedColumnsReadTheirIndex) {
  const std::pair<const char*, const char*> lookups[] = {{ops::kSelectByProviderId, "messages_provider_message"},
                                                          {ops::kSelectPendingFollowUps, "messages_parent"}};
  for (const auto& [sql, index] : lookups) {
    auto plan = test::query_column(path_, std::string("EXPLAIN QUERY PLAN ") + sql, 3);
    EXPECT_THAT(plan, Contains(HasSubstr(index))) << sql;
    EXPECT_THAT(plan, Not(Contains(HasSubstr("SCAN")))) << sql;
  }
}
#endif

}  // namespace
}  // namespace tayori::store
