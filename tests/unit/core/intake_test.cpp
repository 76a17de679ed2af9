// Tests for intake's answer (gateway/core/intake.cpp, answer_intake): the JSON text written member by member
// is the value each case calls for, byte for byte as dump_json writes that value (keys in order), for a
// single message and a batch, with every status a message can have, and with an id that is not UTF-8.
#include <gtest/gtest.h>

#include <set>
#include <string>
#include <vector>

#include "common/json.hpp"
#include "core/intake.hpp"

namespace tayori::core {
namespace {

const std::set<std::string> kChannels = {"sms"};

ValidationRules rules() {
  ValidationRules r;
  r.channels = &kChannels;
  return r;
}

Json message(const std::string& id) {
  return {{"id", id},
          {"recipient", {{"id", "u-" + id}, {"contacts", {{"phone", "+819012345678"}}}}},
          {"purpose", "transactional"},
          {"channels", {"sms"}},
          {"content", {{"text", "hello"}}}};
}

Intake prepare(const Json& body) { return prepare_intake(body, rules(), 100, "key", 1'780'000'000'000); }

store::AcceptResult result(store::AcceptStatus status, store::State state) { return {status, state, std::nullopt}; }

TEST(IntakeAnswer, ABatchNamesEachMessageWithItsStatusInTheTextDumpJsonWrites) {
  Json bad = message("bad-\xc3\x28");  // an id that is not UTF-8, refused and echoed
  bad["purpose"] = "sometimes";
  Json body = {{"messages", {message("a"), message("b"), bad, message("c"), Json::object()}}};
  Intake intake = prepare(body);
  ASSERT_EQ(intake.to_store.size(), 3u);
  IntakeAnswer a = answer_intake(intake, {result(store::AcceptStatus::accepted, store::State::scheduled),
                                          result(store::AcceptStatus::duplicate, store::State::delivered),
                                          result(store::AcceptStatus::conflict, store::State::dispatched)});
  EXPECT_EQ(a.status, 202);
  EXPECT_FALSE(a.problem);
  EXPECT_EQ(a.accepted, 1);
  EXPECT_EQ(a.duplicate, 1);
  EXPECT_EQ(a.rejected, 2);
  EXPECT_EQ(a.conflict, 1);
  Json bad_errors = Json::array();
  for (const auto& e : intake.items[2].errors) bad_errors.push_back({{"pointer", e.pointer}, {"detail", e.detail}});
  ASSERT_EQ(bad_errors.size(), 2u);  // the id's characters, and the purpose
  Json empty_errors = Json::array();
  for (const auto& e : intake.items[4].errors) empty_errors.push_back({{"pointer", e.pointer}, {"detail", e.detail}});
  ASSERT_FALSE(empty_errors.empty());
  const Json expected = {{"accepted", 1},
                         {"duplicate", 1},
                         {"rejected", 2},
                         {"conflict", 1},
                         {"results",
                          {{{"id", "a"}, {"index", 0}, {"status", "accepted"}, {"state", "scheduled"}},
                           {{"id", "b"}, {"index", 1}, {"status", "duplicate"}, {"state", "delivered"}},
                           {{"id", "bad-\xc3\x28"}, {"index", 2}, {"status", "rejected"}, {"errors", bad_errors}},
                           {{"id", "c"},
                            {"index", 3},
                            {"status", "conflict"},
                            {"state", "dispatched"},
                            {"detail", "id \"c\" was already used for a different message"}},
                           {{"id", nullptr}, {"index", 4}, {"status", "rejected"}, {"errors", empty_errors}}}}};
  EXPECT_EQ(a.body, dump_json(expected, InvalidUtf8::replace));
  EXPECT_NE(a.body.find("bad-\xef\xbf\xbd("), std::string::npos) << a.body;  // U+FFFD for the invalid byte
}

TEST(IntakeAnswer, ASingleMessageIsAnsweredWithItsOwnResult) {
  Intake intake = prepare(message("one"));
  IntakeAnswer a = answer_intake(intake, {result(store::AcceptStatus::accepted, store::State::dispatched)});
  EXPECT_EQ(a.status, 202);
  EXPECT_EQ(a.body, R"({"id":"one","state":"dispatched","status":"accepted"})");

  IntakeAnswer again = answer_intake(intake, {result(store::AcceptStatus::conflict, store::State::scheduled)});
  EXPECT_EQ(again.status, 422);
  EXPECT_TRUE(again.problem);
  Json problem = parse_json(again.body);
  EXPECT_EQ(problem["detail"], "id \"one\" was already used for a different message");
  EXPECT_EQ(problem["errors"], Json::parse(R"([{"detail":"id \"one\" was already used for a different message",)"
                                           R"("pointer":"/id"}])"));
}

TEST(IntakeAnswer, ABatchWithNothingAcceptedIsAProblemListingEveryError) {
  Json bad = message("x");
  bad.erase("channels");
  Intake intake = prepare(Json{{"messages", {bad}}});
  IntakeAnswer a = answer_intake(intake, {});
  EXPECT_EQ(a.status, 400);
  EXPECT_TRUE(a.problem);
  Json problem = parse_json(a.body);
  EXPECT_EQ(problem["detail"], "no message of the batch could be accepted");
  EXPECT_EQ(problem["errors"][0]["pointer"], "/messages/0/channels");

  Intake malformed = prepare(Json{{"messages", Json::array()}});
  IntakeAnswer m = answer_intake(malformed, {});
  EXPECT_EQ(m.status, 400);
  EXPECT_EQ(parse_json(m.body)["detail"], "the batch is malformed");
}

}  // namespace
}  // namespace tayori::core
