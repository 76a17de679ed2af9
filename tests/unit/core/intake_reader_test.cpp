// Tests for intake read straight from a body's text (gateway/core/intake.cpp read_intake, intake_reader.cpp):
// for every body it reads, the Intake is the one parse_json and prepare_intake give (the messages, their
// canonical payloads and hashes, recipient updates, events and counts), whatever the order of the members, the
// white space and the escapes; every other body (an invalid message, a member it leaves to parse_message, a
// malformed envelope) it leaves to that path.
#include <gtest/gtest.h>

#include <set>
#include <string>

#include "common/json.hpp"
#include "core/intake.hpp"

namespace tayori::core {
namespace {

const std::set<std::string> kChannels = {"email", "sms", "line", "push"};
const std::set<std::string> kTemplates = {"welcome"};
constexpr int64_t kNow = 1'780'000'000'000;

ValidationRules rules() {
  ValidationRules r;
  r.channels = &kChannels;
  r.templates_available = true;
  r.templates = &kTemplates;
  r.max_metadata_bytes = 64;
  r.max_content_bytes = 100;
  return r;
}

std::optional<Intake> read(std::string_view body, int max_batch = 3) {
  return read_intake(body, rules(), max_batch, "key-a", kNow);
}

// Reads `body` both ways: the same Intake, field by field (so a failure names the field), then as a whole.
void expect_read_as_parsed(std::string_view body) {
  SCOPED_TRACE(std::string(body));
  std::optional<Intake> fast = read(body);
  ASSERT_TRUE(fast.has_value());
  Intake slow = prepare_intake(parse_json(body), rules(), 3, "key-a", kNow);
  ASSERT_FALSE(slow.to_store.empty());
  ASSERT_EQ(fast->to_store.size(), slow.to_store.size());
  for (size_t i = 0; i < slow.to_store.size(); ++i) {
    EXPECT_EQ(fast->to_store[i].payload, slow.to_store[i].payload);
    EXPECT_EQ(fast->to_store[i].payload_hash, slow.to_store[i].payload_hash);
    ASSERT_TRUE(fast->to_store[i].recipient.has_value());
    EXPECT_EQ(fast->to_store[i].recipient->contacts_json, slow.to_store[i].recipient->contacts_json);
    EXPECT_EQ(fast->to_store[i].recipient->contact_points, slow.to_store[i].recipient->contact_points);
    EXPECT_EQ(fast->to_store[i].recipient, slow.to_store[i].recipient);
    EXPECT_EQ(fast->to_store[i].events, slow.to_store[i].events);
    EXPECT_EQ(fast->to_store[i].counts, slow.to_store[i].counts);
    EXPECT_EQ(fast->validated[i], slow.validated[i]);
  }
  EXPECT_EQ(fast->batch, slow.batch);
  EXPECT_EQ(fast->items, slow.items);
  EXPECT_TRUE(*fast == slow);
}

// The bench's message (tools/bench/load.cpp): members in key order, no white space.
const char* const kTypical =
    R"({"category":"order","channels":["sms"],"content":{"body":"Order 7 is on its way.","subject":"Shipped",)"
    R"("text":"Order 7 is on its way.","title":"Shipped"},"id":"m-1","metadata":{"source":"load"},)"
    R"("purpose":"transactional","recipient":{"contacts":{"phone":"+819012345678"},"id":"u-7","locale":"ja-JP"}})";

TEST(IntakeReader, ReadsTheTypicalMessageAsParsingAndValidatingItDoes) { expect_read_as_parsed(kTypical); }

TEST(IntakeReader, MembersInAnyOrderWithWhiteSpaceAndEscapesComeOutCanonical) {
  // Reversed member order everywhere, white space between every token, escapes that decode to what they
  // name (\u00e9, \/, a surrogate pair), text that is already UTF-8, and a line feed in content.
  expect_read_as_parsed(
      "\n { \"recipient\" : { \"locale\":\"ja-JP\", \"id\" : \"u-\\u00e9\", \"timezone\":\"Asia/Tokyo\",\r\n"
      " \"contacts\": {\"phone\":\"+819012345678\", \"email\":\"hanako\\u0040example.jp\", \"line\":\"U1\"} },"
      "\t\"purpose\":\"marketing\", \"id\":\"m-2\", \"content\" : {\"text\":\"\xe4\xbe\xbf\xe3\x82\x8a "
      "\\ud83d\\udce8\\n"
      "a\\/b \\\"q\\\"\", \"subject\":\"S\"}, \"channels\":[\"sms\",\"email\"], \"category\":\"news\" } \n");
}

TEST(IntakeReader, ABatchWithEveryMemberItReadsIsTheBatchPrepareIntakeMakes) {
  expect_read_as_parsed(
      R"({"messages":[)"
      // A channel's own wording beside the shared fields, and an empty one (kept in the payload, no variant).
      R"({"id":"b-1","purpose":"marketing","channels":["sms","email"],)"
      R"("content":{"text":"hi","sms":{"text":"hi by SMS"},"email":{},"subject":"Hello"},)"
      R"("recipient":{"id":"u-1","contacts":{"phone":"+819012345678","email":"a@example.jp"}}},)"
      // A template, data of every JSON type, a send time and an expiry (a `scheduled` event), no contacts.
      R"({"template":"welcome","data":{"n":1,"x":-2.5e3,"big":12345678901234,"list":[true,false,null,{"k":"v"}],)"
      R"("z":{},"a":[]},"send_at":"2026-12-24T09:00:00+09:00","expires_at":"2026-12-25T00:00:00Z",)"
      R"("id":"b-2","purpose":"transactional","channels":["push"],"recipient":{"id":"u-2"}},)"
      // Push tokens of both platforms, an empty contacts object beside them, metadata.
      R"({"id":"b-3","purpose":"transactional","channels":["push"],"content":{"title":"T","body":"B"},)"
      R"("metadata":{"campaign":"winter","n":[1,2]},)"
      R"("recipient":{"id":"u-3","contacts":{"push":[{"token":"abc","platform":"fcm"},{"platform":"apns",)"
      R"("token":"def"}]}}})"
      R"(]})");
}

TEST(IntakeReader, ResponseOptionsAndTrackingAreReadAsParsed) {
  expect_read_as_parsed(
      R"({"id":"m","purpose":"marketing","channels":["line"],"content":{"text":"Winter sale?"},)"
      R"("track":{"opens":false,"clicks":true},"recipient":{"id":"u","contacts":{"line":"U1"}},"responses":[)"
      R"({"label":"\u8208\u5473\u3042\u308a","id":"interested"},)"  // a label in Japanese, escaped
      R"({"id":"later","label":"Remind me later","follow_up":{"template":"welcome","after":"P1D"}},)"
      R"({"follow_up":{"after":"12h"},"id":"no","label":"Not interested"}]})");
  expect_read_as_parsed(
      R"({"id":"m","purpose":"marketing","channels":["line"],"content":{"text":"x"},"track":{},)"
      R"("recipient":{"id":"u"},"responses":[{"id":"a","label":"A"},{"id":"b","label":"B"},{"id":"c","label":"C"},)"
      R"({"id":"d","label":"D"},{"id":"e","label":"E"},{"id":"f","label":"F"},{"id":"g","label":"G"},)"
      R"({"id":"h","label":"H"},{"id":"i","label":"I"},{"id":"j","label":"twenty characters!!!"}]})");  // ten
}

TEST(IntakeReader, TrackedLinksWithoutAPublicUrlAreLeftToParseMessage) {
  ValidationRules no_links = rules();
  no_links.links_available = false;
  auto body = [](const char* track) {
    return std::string(R"({"id":"m","purpose":"marketing","channels":["sms"],"content":{"text":"x"},"track":)") +
           track + R"(,"recipient":{"id":"u"}})";
  };
  EXPECT_TRUE(read_intake(body(R"({"clicks":false,"opens":false})"), no_links, 1, "k", kNow).has_value());
  EXPECT_FALSE(read_intake(body(R"({"clicks":true})"), no_links, 1, "k", kNow).has_value());
  EXPECT_FALSE(read_intake(body(R"({"opens":true})"), no_links, 1, "k", kNow).has_value());
}

TEST(IntakeReader, AnEmptyContactsObjectAndAnEmptyTokenListAreKeptAsGiven) {
  expect_read_as_parsed(R"({"id":"m","purpose":"transactional","channels":["sms"],"content":{"text":"x"},)"
                        R"("recipient":{"id":"u","contacts":{"push":[]}}})");
  expect_read_as_parsed(R"({"id":"m","purpose":"transactional","channels":["sms"],"content":{"text":"x"},)"
                        R"("recipient":{"id":"u","contacts":{}}})");
}

TEST(IntakeReader, ContentAndMetadataAtTheirLimitsAreRead) {
  // 100 bytes of content (the rules' limit) over a shared field and a channel's own; 64 bytes of metadata.
  expect_read_as_parsed(R"({"id":"m","purpose":"transactional","channels":["sms"],"content":{"a":")" +
                        std::string(60, 'a') + R"(","sms":{"c":")" + std::string(40, 'b') + R"("}},)" +
                        R"("metadata":{"k":")" + std::string(56, 'm') + R"("},"recipient":{"id":"u"}})");
}

TEST(IntakeReader, LeavesEveryOtherBodyToParseMessage) {
  auto with = [](const std::string& member) {
    return R"({"id":"m","purpose":"transactional","channels":["sms"],"content":{"text":"x"},)" + member +
           R"("recipient":{"id":"u","contacts":{"phone":"+819012345678"}}})";
  };
  auto recipient = [](const std::string& members) {
    return R"({"id":"m","purpose":"transactional","channels":["sms"],"content":{"text":"x"},"recipient":{"id":"u",)" +
           members + "}}";
  };
  ASSERT_TRUE(read(with("")).has_value());  // the shape the cases below each change once
  ASSERT_TRUE(read(recipient(R"("locale":"ja-JP")")).has_value());
  const std::string refused[] = {
      // What it leaves to parse_message, valid or not.
      with(R"("send_at":"2026-12-24T09:00:00",)"),  // a local time: the zone is looked up
      with(R"("category":null,)"),
      with(R"("id":"twice",)"),  // a member twice: the last one wins in the JSON
      with(R"("unknown":1,)"),
      // Invalid messages: parse_message names what is wrong.
      with(R"("category":"Not A Category",)"), with(R"("template":"nope",)"), with(R"("send_at":"soon",)"),
      with(R"("send_at":"2026-12-24T09:00:00Z","expires_at":"2026-12-24T08:00:00Z",)"),
      with(R"("metadata":{"long":"0123456789012345678901234567890123456789012345678901234567890"},)"),
      with(R"("data":[1],)"), with(R"("responses":[],)"),
      with(R"("responses":[{"id":"yes","label":"Yes"},{"id":"yes","label":"Again"}],)"),
      with(R"("responses":[{"id":"Yes","label":"Yes"}],)"), with(R"("responses":[{"id":"yes"}],)"),
      with(R"("responses":[{"id":"yes","label":"twenty-one characters"}],)"),
      with(R"("responses":[{"id":"yes","label":"Yes","follow_up":{"after":"367d"}}],)"),
      with(R"("responses":[{"id":"yes","label":"Yes","follow_up":{"template":"welcome"}}],)"),
      with(R"("responses":[{"id":"yes","label":"Yes","follow_up":{"after":"2d","template":"nope"}}],)"),
      with(R"("responses":[)" + std::string(R"({"id":"a","label":"A"},)") + R"({"id":"b","label":"B"},)" +
           R"({"id":"c","label":"C"},{"id":"d","label":"D"},{"id":"e","label":"E"},{"id":"f","label":"F"},)" +
           R"({"id":"g","label":"G"},{"id":"h","label":"H"},{"id":"i","label":"I"},{"id":"j","label":"J"},)" +
           R"({"id":"k","label":"K"}],)"),  // eleven
      with(R"("track":{"clicks":1},)"), with(R"("track":{"views":true},)"),
      R"({"id":"m","purpose":"transactional","channels":["sms","sms"],"content":{"text":"x"},"recipient":{"id":"u"}})",
      R"({"id":"m","purpose":"transactional","channels":["fax"],"content":{"text":"x"},"recipient":{"id":"u"}})",
      R"({"id":"m","purpose":"transactional","channels":[],"content":{"text":"x"},"recipient":{"id":"u"}})",
      R"({"id":"m","purpose":"transactional","channels":["sms"],"content":{},"recipient":{"id":"u"}})",
      R"({"id":"m","purpose":"transactional","channels":["sms"],"content":{"text":"a\u0007b"},"recipient":{"id":"u"}})",
      R"({"id":"m","purpose":"transactional","channels":["sms"],"content":{"fax":{"text":"x"}},"recipient":{"id":"u"}})",
      R"({"id":"m","purpose":"transactional","channels":["sms"],"content":{"Text":"x"},"recipient":{"id":"u"}})",
      R"({"id":"m","purpose":"transactional","channels":["sms"],"content":{"text":"x","text":"y"},"recipient":{"id":"u"}})",
      R"({"id":"m","purpose":"transactional","channels":["sms"],"content":{"text":"x"},"recipient":{"id":""}})",
      recipient(R"("contacts":{"phone":"090"})"), recipient(R"("timezone":"Mars/Olympus")"),
      recipient(R"("contacts":{"push":[{"platform":"fcm"}]})"),
      R"({"id":"m","purpose":"transactional","channels":["sms"],"recipient":{"id":"u"}})",  // no content, no template
      R"({"id":"m","channels":["sms"],"content":{"text":"x"},"recipient":{"id":"u"}})",     // no purpose
      // 101 bytes of content, one more than the rules allow.
      R"({"id":"m","purpose":"transactional","channels":["sms"],"content":{"a":")" + std::string(60, 'a') +
          R"(","sms":{"c":")" + std::string(41, 'b') + R"("}},"recipient":{"id":"u"}})",
      // Envelopes and bodies parse_message and the API explain.
      R"({"messages":[]})",
      R"({"messages":[)" + with("") + "," + with("") + "," + with("") + "," + with("") + "]}",  // over max_batch
      R"({"messages":[)" + with("") + R"(],"extra":1})",
      R"({"messages":[)" + with("") + "," + with(R"("purpose":"x",)") + "]}",  // one message of two invalid
      with("") + " x", "[" + with("") + "]", "", "{",
      with(R"("data":{"deep":)" + std::string(70, '[') + std::string(70, ']') + "},"),  // nests past the limit
  };
  for (const std::string& body : refused) EXPECT_FALSE(read(body).has_value()) << body;
}

TEST(IntakeReader, NestingIsCountedFromTheBodyAsTheJsonReaderCountsIt) {
  // kFastDepth levels in all are read; one more is the API's 400 (json_too_deep), which read_intake leaves to it.
  auto body = [](int data_levels, bool batch) {
    std::string data =
        std::string(static_cast<size_t>(data_levels - 1), '[') + std::string(static_cast<size_t>(data_levels - 1), ']');
    std::string m = R"({"id":"m","purpose":"transactional","channels":["sms"],"content":{"text":"x"},"data":{"a":)" +
                    (data.empty() ? std::string("1") : data) + R"(},"recipient":{"id":"u"}})";
    return batch ? R"({"messages":[)" + m + "]}" : m;
  };
  // A single message is one level, data a second: 62 more fill the limit.
  EXPECT_TRUE(read(body(kFastDepth - 1, false)).has_value());
  EXPECT_FALSE(read(body(kFastDepth, false)).has_value());
  EXPECT_TRUE(read(body(kFastDepth - 3, true)).has_value());  // the envelope and its array are two more
  EXPECT_FALSE(read(body(kFastDepth - 2, true)).has_value());
  EXPECT_TRUE(read_json_fast(body(kFastDepth - 1, false)).has_value());
  EXPECT_FALSE(read_json_fast(body(kFastDepth, false)).has_value());
  EXPECT_TRUE(read_json_fast(body(kFastDepth - 3, true)).has_value());
  EXPECT_FALSE(read_json_fast(body(kFastDepth - 2, true)).has_value());
}

}  // namespace
}  // namespace tayori::core
