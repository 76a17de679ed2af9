// Tests for the public message model's validation (gateway/core/message.cpp): a full message parses
// into every field; each problem is reported with its exact RFC 6901 pointer (prefixed, escaped), all
// of them at once; and the canonical JSON used for idempotency does not depend on key order.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <functional>
#include <set>
#include <string>
#include <vector>

#include "core/message.hpp"
#include "crypto/crypto.hpp"

namespace tayori::core {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;
using ::testing::UnorderedElementsAreArray;
using ::testing::UnorderedElementsAre;

const std::set<std::string> kChannels = {"push", "email", "sms", "line"};

ValidationRules rules() {
  ValidationRules r;
  r.channels = &kChannels;
  return r;
}

Json full_message() {
  return Json::parse(R"({
    "id": "order-123:ship.v1~a_B",
    "recipient": {
      "id": "user-42",
      "timezone": "Asia/Tokyo",
      "locale": "ja-JP",
      "contacts": {
        "email": "hanako@example.jp",
        "phone": "+819012345678",
        "line": "U4af4980629",
        "push": [
          {"platform": "fcm", "token": "fcm-token-1"},
          {"platform": "apns", "token": "apns-token-1"}
        ]
      }
    },
    "purpose": "marketing",
    "category": "orders.shipped",
    "channels": ["push", "email", "sms"],
    "content": {"subject": "Shipped", "text": "Your order has shipped", "body_2": "こんにちは"},
    "data": {"order": 123, "items": ["a", "b"]},
    "send_at": "2026-11-24T08:00:00+09:00",
    "expires_at": "2026-11-24T12:30:00.500+09:00",
    "metadata": {"campaign": "c1", "nested": {"x": 1}}
  })");
}

std::vector<std::string> pointers(const ParsedMessage& p) {
  std::vector<std::string> out;
  for (const auto& e : p.errors) out.push_back(e.pointer);
  return out;
}

std::vector<std::string> described(const ParsedMessage& p) {
  std::vector<std::string> out;
  for (const auto& e : p.errors) out.push_back(e.pointer + ": " + e.detail);
  return out;
}

// ---- A valid message ----------------------------------------------------------------------------------

TEST(MessageParse, FullMessageParsesEveryField) {
  ParsedMessage p = parse_message(full_message(), rules(), "/messages/0");
  ASSERT_THAT(described(p), IsEmpty());
  ASSERT_TRUE(p.message.has_value());
  const Message& m = *p.message;
  EXPECT_EQ(m.id, "order-123:ship.v1~a_B");
  EXPECT_EQ(m.recipient.id, "user-42");
  EXPECT_EQ(m.recipient.timezone, "Asia/Tokyo");
  EXPECT_EQ(m.recipient.locale, "ja-JP");
  EXPECT_EQ(m.recipient.contacts.size(), 3u);  // push tokens are kept apart from the contact map
  EXPECT_EQ(m.recipient.contacts.at("email"), "hanako@example.jp");
  EXPECT_EQ(m.recipient.contacts.at("phone"), "+819012345678");
  EXPECT_EQ(m.recipient.contacts.at("line"), "U4af4980629");
  ASSERT_EQ(m.recipient.push.size(), 2u);
  EXPECT_EQ(m.recipient.push[0].platform, "fcm");
  EXPECT_EQ(m.recipient.push[0].token, "fcm-token-1");
  EXPECT_EQ(m.recipient.push[1].platform, "apns");
  EXPECT_EQ(m.recipient.push[1].token, "apns-token-1");
  EXPECT_EQ(m.purpose, Purpose::marketing);
  EXPECT_EQ(to_string(m.purpose), "marketing");
  EXPECT_EQ(m.category, "orders.shipped");
  EXPECT_THAT(m.channels, ElementsAre("push", "email", "sms"));
  EXPECT_EQ(m.content.size(), 3u);
  EXPECT_EQ(m.content.at("subject"), "Shipped");
  EXPECT_EQ(m.content.at("text"), "Your order has shipped");
  EXPECT_EQ(m.content.at("body_2"), "こんにちは");
  EXPECT_EQ(m.template_name, "");
  EXPECT_EQ(m.data, Json::parse(R"({"order": 123, "items": ["a", "b"]})"));
  // 2026-11-24T08:00:00+09:00 == 2026-11-23T23:00:00Z
  ASSERT_TRUE(m.send_at_ms.has_value());
  EXPECT_EQ(*m.send_at_ms, 1795474800000);
  ASSERT_TRUE(m.expires_at_ms.has_value());
  EXPECT_EQ(*m.expires_at_ms, 1795474800000 + (4 * 3600 + 30 * 60) * 1000LL + 500);
  EXPECT_EQ(m.metadata, Json::parse(R"({"campaign": "c1", "nested": {"x": 1}})"));
}

TEST(MessageParse, MinimalMessageTakesDefaults) {
  Json j = {{"id", "m1"},
            {"recipient", {{"id", "r1"}}},
            {"purpose", "transactional"},
            {"channels", {"email"}},
            {"content", {{"text", "hi"}}}};
  ParsedMessage p = parse_message(j, rules());
  ASSERT_THAT(described(p), IsEmpty());
  const Message& m = *p.message;
  EXPECT_EQ(m.purpose, Purpose::transactional);
  EXPECT_EQ(to_string(m.purpose), "transactional");
  EXPECT_EQ(m.category, "");
  EXPECT_EQ(m.recipient.timezone, "");
  EXPECT_THAT(m.recipient.contacts, IsEmpty());
  EXPECT_THAT(m.recipient.push, IsEmpty());
  EXPECT_FALSE(m.send_at_ms.has_value());
  EXPECT_FALSE(m.expires_at_ms.has_value());
  EXPECT_EQ(m.data, Json::object());
  EXPECT_EQ(m.metadata, Json::object());
}

TEST(MessageParse, NullOptionalFieldsCountAsAbsent) {
  Json j = full_message();
  for (const char* k : {"category", "data", "send_at", "expires_at", "metadata"}) j[k] = nullptr;
  j["recipient"]["timezone"] = nullptr;
  j["recipient"]["contacts"] = nullptr;
  ParsedMessage p = parse_message(j, rules());
  ASSERT_THAT(described(p), IsEmpty());
  EXPECT_EQ(p.message->category, "");
  EXPECT_FALSE(p.message->send_at_ms.has_value());
  EXPECT_THAT(p.message->recipient.contacts, IsEmpty());
}

TEST(MessageParse, UnconfiguredChannelsAreNotCheckedWithoutAList) {
  Json j = full_message();
  j["channels"] = {"carrier_pigeon", "email"};
  ValidationRules r;  // channels == nullptr: re-reading a stored message
  ParsedMessage p = parse_message(j, r);
  ASSERT_THAT(described(p), IsEmpty());
  EXPECT_THAT(p.message->channels, ElementsAre("carrier_pigeon", "email"));
}

TEST(MessageParse, AcceptedEdgeValues) {
  Json j = full_message();
  j["id"] = std::string(128, 'a');
  j["recipient"]["id"] = std::string(256, 'r');
  j["recipient"]["timezone"] = "America/Argentina/Buenos_Aires";
  j["recipient"]["locale"] = "zh-Hant-TW";
  j["recipient"]["contacts"]["phone"] = "+12025550123";
  j["recipient"]["contacts"]["push"] = Json::array();
  j["channels"] = {"email", "sms", "line"};
  ParsedMessage p = parse_message(j, rules());
  ASSERT_THAT(described(p), IsEmpty());
  EXPECT_EQ(p.message->recipient.timezone, "America/Argentina/Buenos_Aires");
  EXPECT_THAT(p.message->recipient.push, IsEmpty());
  j["recipient"]["timezone"] = "UTC";
  EXPECT_THAT(described(parse_message(j, rules())), IsEmpty());
}

TEST(MessageParse, LocalSendAtIsReadInTheRecipientsZone) {
  Json j = full_message();
  j.erase("expires_at");
  j["send_at"] = "2026-11-24T08:00:00";  // no offset: 08:00 where the recipient is (Asia/Tokyo)
  ParsedMessage p = parse_message(j, rules());
  ASSERT_THAT(described(p), IsEmpty());
  EXPECT_EQ(p.message->send_at_ms, 1795474800000);  // 2026-11-23T23:00:00Z
  EXPECT_TRUE(p.message->send_at_local);

  // Without a recipient zone: the configured default.
  j["recipient"].erase("timezone");
  ValidationRules r = rules();
  r.default_timezone = "UTC";
  p = parse_message(j, r);
  ASSERT_THAT(described(p), IsEmpty());
  EXPECT_EQ(p.message->send_at_ms, 1795474800000 + 9 * 3'600'000LL);  // 2026-11-24T08:00:00Z
  EXPECT_TRUE(p.message->send_at_local);

  // With an offset it is an instant, whatever the zone.
  j["send_at"] = "2026-11-24T08:00:00+09:00";
  p = parse_message(j, r);
  ASSERT_THAT(described(p), IsEmpty());
  EXPECT_EQ(p.message->send_at_ms, 1795474800000);
  EXPECT_FALSE(p.message->send_at_local);
}

TEST(MessageParse, LocalSendAtIsComparedWithExpiresAtAsAnInstant) {
  Json j = full_message();
  j["send_at"] = "2026-11-24T08:00:00";             // Tokyo: 2026-11-23T23:00:00Z
  j["expires_at"] = "2026-11-23T23:00:00Z";         // the same instant
  EXPECT_THAT(described(parse_message(j, rules())), ElementsAre("/expires_at: must be later than send_at"));
  j["expires_at"] = "2026-11-23T23:00:00.001Z";
  EXPECT_THAT(described(parse_message(j, rules())), IsEmpty());
}

// ---- Recipient::contact ------------------------------------------------------------------------------

TEST(MessageRecipient, ContactByKindIncludingPushPlatforms) {
  ParsedMessage p = parse_message(full_message(), rules());
  ASSERT_TRUE(p.message.has_value());
  const Recipient& r = p.message->recipient;
  EXPECT_EQ(r.contact("email"), "hanako@example.jp");
  EXPECT_EQ(r.contact("phone"), "+819012345678");
  EXPECT_EQ(r.contact("line"), "U4af4980629");
  EXPECT_EQ(r.contact("push.fcm"), "fcm-token-1");
  EXPECT_EQ(r.contact("push.apns"), "apns-token-1");
  EXPECT_EQ(r.contact("push.web"), std::nullopt);
  EXPECT_EQ(r.contact("push"), std::nullopt);  // "push" names a list, not one contact point
  EXPECT_EQ(r.contact("fax"), std::nullopt);
  EXPECT_EQ(r.contact(""), std::nullopt);
}

TEST(MessageRecipient, FirstTokenOfAPlatformWins) {
  Recipient r;
  r.push = {{"fcm", "first"}, {"apns", "a"}, {"fcm", "second"}};
  EXPECT_EQ(r.contact("push.fcm"), "first");
  EXPECT_EQ(r.contact("push.apns"), "a");
}

// ---- Invalid messages, one problem each ---------------------------------------------------------------

struct InvalidCase {
  const char* name;
  std::function<void(Json&)> mutate;
  std::vector<std::string> pointers;  // without the "/messages/3" prefix
  std::string detail = "";            // when set: the (single) error's exact detail
};

class MessageInvalid : public ::testing::TestWithParam<InvalidCase> {};

TEST_P(MessageInvalid, ReportsExactPointers) {
  const InvalidCase& c = GetParam();
  Json j = full_message();
  c.mutate(j);
  ParsedMessage p = parse_message(j, rules(), "/messages/3");
  EXPECT_FALSE(p.message.has_value());
  std::vector<std::string> expected;
  for (const auto& ptr : c.pointers) expected.push_back("/messages/3" + ptr);
  EXPECT_THAT(pointers(p), UnorderedElementsAreArray(expected)) << ::testing::PrintToString(described(p));
  if (!c.detail.empty()) {
    ASSERT_EQ(p.errors.size(), 1u);
    EXPECT_EQ(p.errors[0].detail, c.detail);
  }
}

INSTANTIATE_TEST_SUITE_P(
    Table, MessageInvalid,
    ::testing::Values(
        // id
        InvalidCase{"id_missing", [](Json& j) { j.erase("id"); }, {"/id"}, "is required"},
        InvalidCase{"id_null", [](Json& j) { j["id"] = nullptr; }, {"/id"}, "is required"},
        InvalidCase{"id_number", [](Json& j) { j["id"] = 5; }, {"/id"}, "must be a string"},
        InvalidCase{"id_space", [](Json& j) { j["id"] = "a b"; }, {"/id"},
                    "must be 1 to 128 characters of A-Z a-z 0-9 . _ ~ : -"},
        InvalidCase{"id_slash", [](Json& j) { j["id"] = "a/b"; }, {"/id"}},
        InvalidCase{"id_empty", [](Json& j) { j["id"] = ""; }, {"/id"}},
        InvalidCase{"id_too_long", [](Json& j) { j["id"] = std::string(129, 'a'); }, {"/id"}},
        // recipient
        InvalidCase{"recipient_missing", [](Json& j) { j.erase("recipient"); }, {"/recipient"}, "is required"},
        InvalidCase{"recipient_string", [](Json& j) { j["recipient"] = "user-42"; }, {"/recipient"},
                    "must be an object"},
        InvalidCase{"recipient_id_missing", [](Json& j) { j["recipient"].erase("id"); }, {"/recipient/id"},
                    "is required"},
        InvalidCase{"recipient_id_empty", [](Json& j) { j["recipient"]["id"] = ""; }, {"/recipient/id"},
                    "must be 1 to 256 bytes"},
        InvalidCase{"recipient_id_too_long", [](Json& j) { j["recipient"]["id"] = std::string(257, 'r'); },
                    {"/recipient/id"}},
        InvalidCase{"recipient_unknown_field", [](Json& j) { j["recipient"]["name"] = "Hanako"; },
                    {"/recipient/name"}, "is not a known field"},
        InvalidCase{"timezone_unknown_to_tzdata", [](Json& j) { j["recipient"]["timezone"] = "Tokyo"; },
                    {"/recipient/timezone"}, "is not a time zone this system knows (IANA tzdata): Tokyo"},
        InvalidCase{"timezone_path_escape", [](Json& j) { j["recipient"]["timezone"] = "../../etc/passwd"; },
                    {"/recipient/timezone"}, "must be an IANA time zone name such as Asia/Tokyo"},
        InvalidCase{"timezone_double_slash", [](Json& j) { j["recipient"]["timezone"] = "Asia//Tokyo"; },
                    {"/recipient/timezone"}, "must be an IANA time zone name such as Asia/Tokyo"},
        InvalidCase{"timezone_offset", [](Json& j) { j["recipient"]["timezone"] = "+09:00"; },
                    {"/recipient/timezone"}},
        InvalidCase{"locale_word", [](Json& j) { j["recipient"]["locale"] = "japanese"; }, {"/recipient/locale"},
                    "must be a BCP 47 language tag such as ja-JP"},
        InvalidCase{"locale_underscore", [](Json& j) { j["recipient"]["locale"] = "ja_JP"; }, {"/recipient/locale"}},
        // contacts
        InvalidCase{"contacts_array", [](Json& j) { j["recipient"]["contacts"] = Json::array(); },
                    {"/recipient/contacts"}, "must be an object of contact kind to contact point"},
        InvalidCase{"phone_national_format", [](Json& j) { j["recipient"]["contacts"]["phone"] = "09012345678"; },
                    {"/recipient/contacts/phone"}, "must be an E.164 number such as +819012345678"},
        InvalidCase{"phone_leading_zero", [](Json& j) { j["recipient"]["contacts"]["phone"] = "+0812345678"; },
                    {"/recipient/contacts/phone"}},
        InvalidCase{"phone_16_digits", [](Json& j) { j["recipient"]["contacts"]["phone"] = "+1234567890123456"; },
                    {"/recipient/contacts/phone"}},
        InvalidCase{"phone_dashes", [](Json& j) { j["recipient"]["contacts"]["phone"] = "+81-90-1234-5678"; },
                    {"/recipient/contacts/phone"}},
        InvalidCase{"email_no_at", [](Json& j) { j["recipient"]["contacts"]["email"] = "hanako"; },
                    {"/recipient/contacts/email"}, "must be an email address such as hanako@example.jp"},
        InvalidCase{"email_space", [](Json& j) { j["recipient"]["contacts"]["email"] = "han ako@example.jp"; },
                    {"/recipient/contacts/email"}},
        InvalidCase{"email_no_dot_in_domain", [](Json& j) { j["recipient"]["contacts"]["email"] = "a@localhost"; },
                    {"/recipient/contacts/email"}},
        InvalidCase{"email_too_long",
                    [](Json& j) { j["recipient"]["contacts"]["email"] = "a@" + std::string(250, 'b') + ".jp"; },
                    {"/recipient/contacts/email"}},
        InvalidCase{"contact_kind_upper", [](Json& j) { j["recipient"]["contacts"]["Line"] = "U1"; },
                    {"/recipient/contacts/Line"},
                    "is not a contact kind (expected lower-case letters, digits and _)"},
        InvalidCase{"contact_value_number", [](Json& j) { j["recipient"]["contacts"]["line"] = 12; },
                    {"/recipient/contacts/line"}, "must be a string"},
        InvalidCase{"contact_value_empty", [](Json& j) { j["recipient"]["contacts"]["line"] = ""; },
                    {"/recipient/contacts/line"}, "must be 1 to 512 characters"},
        InvalidCase{"contact_value_too_long",
                    [](Json& j) { j["recipient"]["contacts"]["line"] = std::string(513, 'u'); },
                    {"/recipient/contacts/line"}},
        InvalidCase{"push_not_array", [](Json& j) { j["recipient"]["contacts"]["push"] = "token"; },
                    {"/recipient/contacts/push"}, "must be an array of {platform, token}"},
        InvalidCase{"push_entry_string", [](Json& j) { j["recipient"]["contacts"]["push"][1] = "token"; },
                    {"/recipient/contacts/push/1"}, "must be an object {platform, token}"},
        InvalidCase{"push_platform_unknown",
                    [](Json& j) { j["recipient"]["contacts"]["push"][1]["platform"] = "gcm"; },
                    {"/recipient/contacts/push/1/platform"}, "must be \"fcm\" or \"apns\""},
        InvalidCase{"push_token_missing", [](Json& j) { j["recipient"]["contacts"]["push"][0].erase("token"); },
                    {"/recipient/contacts/push/0/token"}, "is required"},
        InvalidCase{"push_token_empty", [](Json& j) { j["recipient"]["contacts"]["push"][0]["token"] = ""; },
                    {"/recipient/contacts/push/0/token"}, "must be 1 to 4096 characters"},
        InvalidCase{"push_token_too_long",
                    [](Json& j) { j["recipient"]["contacts"]["push"][0]["token"] = std::string(4097, 't'); },
                    {"/recipient/contacts/push/0/token"}},
        InvalidCase{"push_unknown_field", [](Json& j) { j["recipient"]["contacts"]["push"][0]["topic"] = "x"; },
                    {"/recipient/contacts/push/0/topic"}, "is not a known field"},
        // purpose, category
        InvalidCase{"purpose_missing", [](Json& j) { j.erase("purpose"); }, {"/purpose"}, "is required"},
        InvalidCase{"purpose_unknown", [](Json& j) { j["purpose"] = "promotional"; }, {"/purpose"},
                    "must be \"marketing\" or \"transactional\""},
        InvalidCase{"purpose_upper", [](Json& j) { j["purpose"] = "Marketing"; }, {"/purpose"}},
        InvalidCase{"category_upper", [](Json& j) { j["category"] = "Orders"; }, {"/category"},
                    "must be lower-case letters, digits, _ . - (at most 64)"},
        InvalidCase{"category_too_long", [](Json& j) { j["category"] = std::string(65, 'c'); }, {"/category"}},
        InvalidCase{"category_number", [](Json& j) { j["category"] = 3; }, {"/category"}, "must be a string"},
        // channels
        InvalidCase{"channels_missing", [](Json& j) { j.erase("channels"); }, {"/channels"}, "is required"},
        InvalidCase{"channels_empty", [](Json& j) { j["channels"] = Json::array(); }, {"/channels"},
                    "must be an array of 1 to 16 channel names in order of preference"},
        InvalidCase{"channels_string", [](Json& j) { j["channels"] = "email"; }, {"/channels"}},
        InvalidCase{"channels_seventeen",
                    [](Json& j) {
                      j["channels"] = Json::array();
                      for (int i = 0; i < 17; ++i) j["channels"].push_back("c" + std::to_string(i));
                    },
                    {"/channels"}},
        InvalidCase{"channel_not_string", [](Json& j) { j["channels"][1] = 7; }, {"/channels/1"},
                    "must be a string"},
        InvalidCase{"channel_repeated", [](Json& j) { j["channels"] = {"email", "sms", "email"}; },
                    {"/channels/2"}, "repeats channel \"email\""},
        InvalidCase{"channel_not_configured", [](Json& j) { j["channels"] = {"email", "fax"}; }, {"/channels/1"},
                    "is not a configured channel \"fax\" (configured: email, line, push, sms)"},
        // content, template
        InvalidCase{"content_empty_object", [](Json& j) { j["content"] = Json::object(); }, {"/content"},
                    "must be a non-empty object of field name to text (subject, text, html, title, body, ...)"},
        InvalidCase{"content_string", [](Json& j) { j["content"] = "hello"; }, {"/content"}},
        InvalidCase{"content_array", [](Json& j) { j["content"] = {"a", "b"}; }, {"/content"}},
        InvalidCase{"content_value_number", [](Json& j) { j["content"]["text"] = 5; }, {"/content/text"},
                    "must be a string, or an object of fields for one channel"},
        InvalidCase{"content_value_array", [](Json& j) { j["content"]["text"] = {"a"}; }, {"/content/text"}},
        InvalidCase{"content_object_not_a_channel", [](Json& j) { j["content"]["html"] = {{"a", "b"}}; },
                    {"/content/html"}, "is an object, so it must name a configured channel (a per-channel variant)"},
        InvalidCase{"content_variant_value_number", [](Json& j) { j["content"]["sms"] = {{"text", 1}}; },
                    {"/content/sms/text"}, "must be a string"},
        InvalidCase{"content_variant_key_upper", [](Json& j) { j["content"]["sms"] = {{"Text", "x"}}; },
                    {"/content/sms/Text"}},
        InvalidCase{"content_key_upper", [](Json& j) { j["content"]["Title"] = "x"; }, {"/content/Title"},
                    "is not a content field name (lower-case letters, digits and _)"},
        InvalidCase{"content_missing_no_template", [](Json& j) { j.erase("content"); }, {"/content"},
                    "is required (or name a template)"},
        InvalidCase{"content_null_no_template", [](Json& j) { j["content"] = nullptr; }, {"/content"}},
        InvalidCase{"template_without_templates", [](Json& j) { j["template"] = "orders/shipped"; }, {"/template"},
                    "names a template, but this gateway has no templates configured: send content instead"},
        InvalidCase{"template_bad_name", [](Json& j) { j["template"] = "Orders Shipped"; }, {"/template"},
                    "must be a template name such as welcome or orders/shipped"},
        // data, times, metadata
        InvalidCase{"data_array", [](Json& j) { j["data"] = {1, 2}; }, {"/data"}, "must be an object"},
        InvalidCase{"send_at_words", [](Json& j) { j["send_at"] = "tomorrow"; }, {"/send_at"},
                    "must be an RFC 3339 date-time, with an offset (an instant) or without (the recipient's local "
                    "time)"},
        InvalidCase{"send_at_bad_date", [](Json& j) { j["send_at"] = "2026-02-30T08:00:00"; }, {"/send_at"}},
        InvalidCase{"expires_at_no_offset", [](Json& j) { j["expires_at"] = "2026-11-25T08:00:00"; },
                    {"/expires_at"}, "must be an RFC 3339 date-time with an offset, e.g. 2026-11-24T08:00:00+09:00"},
        InvalidCase{"send_at_number", [](Json& j) { j["send_at"] = 1795474800000; }, {"/send_at"},
                    "must be a string"},
        InvalidCase{"expires_at_bad", [](Json& j) { j["expires_at"] = "2026-02-30T00:00:00Z"; }, {"/expires_at"}},
        InvalidCase{"expires_at_equals_send_at_other_offset",
                    [](Json& j) { j["expires_at"] = "2026-11-23T23:00:00Z"; },  // the same instant as send_at
                    {"/expires_at"}, "must be later than send_at"},
        InvalidCase{"expires_at_before_send_at", [](Json& j) { j["expires_at"] = "2026-11-24T07:59:59.999+09:00"; },
                    {"/expires_at"}, "must be later than send_at"},
        InvalidCase{"metadata_string", [](Json& j) { j["metadata"] = "x"; }, {"/metadata"}, "must be an object"},
        // unknown fields
        InvalidCase{"unknown_top_level", [](Json& j) { j["colour"] = "blue"; }, {"/colour"}, "is not a known field"},
        InvalidCase{"unknown_snake_case_lookalike", [](Json& j) { j["sendAt"] = "x"; }, {"/sendAt"}}),
    [](const auto& info) { return std::string(info.param.name); });

// BUG (core): the ids "." and ".." pass is_id, but they travel as a URL path segment
// (GET/DELETE /v1/messages/{id}) and RFC 3986 §5.2.4 dot-segment removal — done by curl, browsers and many
// HTTP libraries — turns /v1/messages/.. into /v1/, so such a message can be accepted but never looked
// up or cancelled. Expected: refused like any other malformed id.
TEST(MessageParse, DotSegmentIdsAreRefused) {
  for (const char* id : {".", ".."}) {
    Json j = full_message();
    j["id"] = id;
    ParsedMessage p = parse_message(j, rules());
    EXPECT_FALSE(p.message.has_value()) << "accepted id \"" << id << "\"";
    EXPECT_THAT(pointers(p), ElementsAre("/id")) << id;
  }
  // Dots inside an id are fine.
  Json j = full_message();
  j["id"] = "...a";
  EXPECT_THAT(described(parse_message(j, rules())), IsEmpty());
}

// ---- All at once --------------------------------------------------------------------------------------

TEST(MessageParse, EveryProblemIsReportedNotJustTheFirst) {
  Json j = full_message();
  j.erase("id");
  j["colour"] = "blue";
  j["recipient"]["contacts"]["phone"] = "090";
  j["recipient"]["contacts"]["email"] = "nope";
  j["recipient"]["contacts"]["push"][0]["platform"] = "web";
  j["purpose"] = "spam";
  j["channels"] = {"email", "fax", "email"};
  j["content"] = {{"text", 1}, {"Subject", "x"}};
  j["send_at"] = "2026-11-24T08:00:00+09:00";
  j["expires_at"] = "2026-11-24T07:00:00+09:00";
  j["metadata"] = Json::array();
  ParsedMessage p = parse_message(j, rules(), "/messages/3");
  EXPECT_FALSE(p.message.has_value());
  EXPECT_THAT(pointers(p), UnorderedElementsAreArray(std::vector<std::string>{
                               "/messages/3/id",
                               "/messages/3/colour",
                               "/messages/3/recipient/contacts/phone",
                               "/messages/3/recipient/contacts/email",
                               "/messages/3/recipient/contacts/push/0/platform",
                               "/messages/3/purpose",
                               "/messages/3/channels/1",
                               "/messages/3/channels/2",
                               "/messages/3/content/text",
                               "/messages/3/content/Subject",
                               "/messages/3/expires_at",
                               "/messages/3/metadata",
                           }));
}

TEST(MessageParse, NotAnObject) {
  for (const Json& j : {Json::array(), Json("text"), Json(nullptr), Json(3)}) {
    ParsedMessage p = parse_message(j, rules(), "/messages/7");
    EXPECT_FALSE(p.message.has_value());
    EXPECT_THAT(described(p), ElementsAre("/messages/7: must be a message object")) << j.dump();
  }
}

TEST(MessageParse, WithoutPrefixPointersStartAtTheRoot) {
  Json j = full_message();
  j["recipient"]["contacts"]["phone"] = "123";
  EXPECT_THAT(pointers(parse_message(j, rules())), ElementsAre("/recipient/contacts/phone"));
}

// ---- RFC 6901 escaping --------------------------------------------------------------------------------

TEST(MessageParse, PointerEscapesSlashAndTilde) {
  Json j = full_message();
  j["a/b~c"] = 1;                                     // unknown top-level field
  j["recipient"]["contacts"]["x/y"] = "v";            // not a contact kind
  j["recipient"]["contacts"]["~"] = "v";              // not a contact kind
  j["content"]["m~1/n"] = "v";                        // not a content field name
  j["recipient"]["contacts"]["push"][0]["t/k"] = "v";  // unknown field of a token
  ParsedMessage p = parse_message(j, rules(), "/messages/3");
  EXPECT_THAT(pointers(p), UnorderedElementsAreArray(std::vector<std::string>{
                               "/messages/3/a~1b~0c",
                               "/messages/3/recipient/contacts/x~1y",
                               "/messages/3/recipient/contacts/~0",
                               "/messages/3/content/m~01~1n",
                               "/messages/3/recipient/contacts/push/0/t~1k",
                           }));
  // Each pointer resolves, with nlohmann's RFC 6901 implementation, to the offending member.
  for (const auto& e : p.errors) {
    const std::string relative = e.pointer.substr(std::string("/messages/3").size());
    EXPECT_TRUE(j.contains(Json::json_pointer(relative))) << e.pointer;
  }
}

// ---- Templates ----------------------------------------------------------------------------------------

TEST(MessageParse, TemplateAcceptedWhenTemplatesAreAvailable) {
  Json j = full_message();
  j.erase("content");
  j["template"] = "orders/shipped-v2.ja";
  ValidationRules r = rules();
  r.templates_available = true;
  ParsedMessage p = parse_message(j, r);
  ASSERT_THAT(described(p), IsEmpty());
  EXPECT_EQ(p.message->template_name, "orders/shipped-v2.ja");
  EXPECT_THAT(p.message->content, IsEmpty());

  // Refused, and only for the template (content is not also demanded), when there are none.
  ParsedMessage refused = parse_message(j, rules());
  EXPECT_FALSE(refused.message.has_value());
  EXPECT_THAT(pointers(refused), ElementsAre("/template"));
}

TEST(MessageParse, TemplateAndContentTogetherAreAccepted) {
  Json j = full_message();
  j["template"] = "welcome";
  ValidationRules r = rules();
  r.templates_available = true;
  ParsedMessage p = parse_message(j, r);
  ASSERT_THAT(described(p), IsEmpty());
  EXPECT_EQ(p.message->template_name, "welcome");
  EXPECT_EQ(p.message->content.size(), 3u);
}

// Regression: a message with `"template": null` and no content was accepted with neither (the check used
// j.contains("template"), true for a null member). Null means absent, as everywhere else.
TEST(MessageParse, NullTemplateDoesNotStandInForContent) {
  Json j = full_message();
  j.erase("content");
  j["template"] = nullptr;
  ValidationRules r = rules();
  r.templates_available = true;
  ParsedMessage p = parse_message(j, r);
  EXPECT_FALSE(p.message.has_value()) << "accepted a message with no content and no template";
  EXPECT_THAT(described(p), ElementsAre("/content: is required (or name a template)"));
}

TEST(MessageParse, PerChannelContentVariants) {
  Json j = full_message();
  j["content"] = {{"text", "shared"}, {"sms", {{"text", "short"}}}, {"email", {{"subject", "S"}, {"html", "<p>"}}}};
  ParsedMessage p = parse_message(j, rules());
  ASSERT_THAT(described(p), IsEmpty());
  EXPECT_EQ(p.message->content.size(), 1u);
  EXPECT_EQ(p.message->content.at("text"), "shared");
  ASSERT_EQ(p.message->content_variants.size(), 2u);
  EXPECT_EQ(p.message->content_variants.at("sms").at("text"), "short");
  EXPECT_EQ(p.message->content_variants.at("email").at("subject"), "S");
  EXPECT_EQ(p.message->content_variants.at("email").at("html"), "<p>");
  // Variants count towards the content size limit too: 6 + 5 + 1 + 3 = 15 bytes.
  ValidationRules r = rules();
  r.max_content_bytes = 14;
  EXPECT_THAT(described(parse_message(j, r)), ElementsAre("/content: is 15 bytes, more than the 14 allowed"));
}

// ---- Size limits --------------------------------------------------------------------------------------

TEST(MessageParse, MetadataTooLarge) {
  Json j = full_message();
  j["metadata"] = {{"k", std::string(40, 'x')}};
  const size_t bytes = j["metadata"].dump().size();  // {"k":"xxx…"} = 48 bytes
  ASSERT_EQ(bytes, 48u);
  ValidationRules r = rules();
  r.max_metadata_bytes = 47;
  ParsedMessage p = parse_message(j, r);
  EXPECT_FALSE(p.message.has_value());
  EXPECT_THAT(described(p), ElementsAre("/metadata: is 48 bytes as JSON, more than the 47 allowed"));
  r.max_metadata_bytes = 48;  // exactly at the limit is fine
  EXPECT_THAT(described(parse_message(j, r)), IsEmpty());
}

TEST(MessageParse, ContentTooLarge) {
  Json j = full_message();
  j["content"] = {{"text", std::string(6, 't')}, {"subject", std::string(5, 's')}};
  ValidationRules r = rules();
  r.max_content_bytes = 10;
  EXPECT_THAT(described(parse_message(j, r)), ElementsAre("/content: is 11 bytes, more than the 10 allowed"));
  r.max_content_bytes = 11;
  EXPECT_THAT(described(parse_message(j, r)), IsEmpty());
}

TEST(MessageParse, ControlCharactersInContentAreRefusedByFieldAndPlace) {
  Json j = full_message();
  j["content"] = {{"text", std::string("a\0b", 3)}, {"subject", "bell\x07"}, {"sms", {{"text", "del\x7f"}}}};
  EXPECT_THAT(described(parse_message(j, rules())),
              UnorderedElementsAre(
                  "/content/text: contains the control character U+0000 at byte 1: only tab, line feed and "
                  "carriage return are allowed in text",
                  "/content/subject: contains the control character U+0007 at byte 4: only tab, line feed and "
                  "carriage return are allowed in text",
                  "/content/sms/text: contains the control character U+007F at byte 3: only tab, line feed and "
                  "carriage return are allowed in text"));
  j["content"] = {{"text", "line one\r\n\tline two\n"}};
  EXPECT_THAT(described(parse_message(j, rules())), IsEmpty());
}

// ---- Canonical form and hashing -----------------------------------------------------------------------

TEST(MessageCanonical, IsKeyOrderIndependent) {
  Json a = Json::parse(R"({"b": 1, "a": {"y": [3, {"q": 1, "p": 2}], "x": "é"}, "c": null})");
  Json b = Json::parse(R"({
      "c": null,
      "a": {"x": "\u00e9", "y": [3, {"p": 2, "q": 1}]},
      "b": 1
    })");
  EXPECT_EQ(canonical_json(a), canonical_json(b));
  EXPECT_EQ(canonical_json(a), R"({"a":{"x":"é","y":[3,{"p":2,"q":1}]},"b":1,"c":null})");
  EXPECT_EQ(crypto::sha256_hex(canonical_json(a)), crypto::sha256_hex(canonical_json(b)));
  // Array order is meaningful: it changes the hash.
  Json c = Json::parse(R"({"b": 1, "a": {"y": [{"q": 1, "p": 2}, 3], "x": "é"}, "c": null})");
  EXPECT_NE(crypto::sha256_hex(canonical_json(a)), crypto::sha256_hex(canonical_json(c)));
}

TEST(MessageCanonical, SameMessageReorderedHashesTheSame) {
  Json a = full_message();
  std::string text = full_message().dump(2);
  // The same document re-ordered by hand (recipient first, channels last).
  Json b = Json::parse(R"({
    "recipient": {"contacts": {"push": [{"token": "fcm-token-1", "platform": "fcm"},
                                        {"token": "apns-token-1", "platform": "apns"}],
                               "line": "U4af4980629", "phone": "+819012345678", "email": "hanako@example.jp"},
                  "locale": "ja-JP", "timezone": "Asia/Tokyo", "id": "user-42"},
    "metadata": {"nested": {"x": 1}, "campaign": "c1"},
    "expires_at": "2026-11-24T12:30:00.500+09:00",
    "send_at": "2026-11-24T08:00:00+09:00",
    "data": {"items": ["a", "b"], "order": 123},
    "content": {"body_2": "こんにちは", "text": "Your order has shipped", "subject": "Shipped"},
    "category": "orders.shipped",
    "purpose": "marketing",
    "id": "order-123:ship.v1~a_B",
    "channels": ["push", "email", "sms"]
  })");
  EXPECT_EQ(canonical_json(a), canonical_json(b));
  EXPECT_EQ(crypto::sha256_hex(canonical_json(a)), crypto::sha256_hex(canonical_json(b)));
  EXPECT_EQ(canonical_json(Json::parse(text)), canonical_json(a));
  EXPECT_EQ(canonical_json(a).find('\n'), std::string::npos);
  EXPECT_EQ(canonical_json(a).find(": "), std::string::npos);
}

// ---- Stored messages read again (read_stored_message, stored_message) -----------------------------------

// What a worker got before read_stored_message: the payload parsed and validated with the stored rules.
std::optional<Message> parsed_again(const std::string& payload) {
  return parse_message(Json::parse(payload), stored_message_rules()).message;
}

// Messages with every kind of member a message can have, each as intake stores it (canonical JSON).
std::vector<std::string> stored_payloads() {
  std::vector<Json> messages;
  messages.push_back(full_message());
  Json two_way = full_message();
  two_way["responses"] = Json::parse(R"([
    {"id": "yes", "label": "興味あり", "follow_up": {"after": "P2D", "template": "reminder"}},
    {"id": "later", "label": "Remind me", "follow_up": {"after": "12h"}},
    {"id": "no", "label": "No thanks"}])");
  two_way["track"] = {{"clicks", true}, {"opens", false}};
  messages.push_back(two_way);
  Json variants = full_message();
  variants["content"]["sms"] = {{"text", "SMS wording\twith a tab"}};
  variants["content"]["line"] = Json::object();  // an empty variant adds nothing
  variants["template"] = "welcome";
  variants["data"] =
      Json::parse(R"({"price": -12.5, "big": 18446744073709551615, "neg": -3, "list": [1, [2, {"a": null}]],
                                      "escaped": "quote \" backslash \\ line\nfeed \u0001 😀", "flag": true})");
  variants["metadata"] = Json::parse(R"({"source": "ma\u00e9", "empty": {}, "none": null})");
  messages.push_back(variants);
  Json minimal = Json::parse(R"({"id": "m", "recipient": {"id": "r"}, "purpose": "transactional",
                                 "channels": ["sms"], "template": "welcome"})");
  messages.push_back(minimal);
  std::vector<std::string> payloads;
  for (const Json& m : messages) payloads.push_back(canonical_json(m));
  return payloads;
}

TEST(StoredMessage, ReadsEveryMemberAsParsingAndValidatingItAgainDoes) {
  for (const std::string& payload : stored_payloads()) {
    SCOPED_TRACE(payload);
    std::optional<Message> expected = parsed_again(payload);
    ASSERT_TRUE(expected.has_value());
    std::optional<Message> read = read_stored_message(payload);
    ASSERT_TRUE(read.has_value());
    EXPECT_EQ(*read, *expected);
    EXPECT_EQ(stored_message(payload), expected);
  }
  // The comparison sees what each member carries (a Message that differs in one is not equal).
  std::optional<Message> two_way = read_stored_message(stored_payloads()[1]);
  ASSERT_TRUE(two_way.has_value());
  EXPECT_THAT(two_way->responses, testing::SizeIs(3));
  EXPECT_EQ(two_way->responses[0].follow_up_after_ms, 2 * 86'400'000LL);
  EXPECT_EQ(two_way->responses[0].follow_up_template, "reminder");
  EXPECT_EQ(two_way->track_clicks, true);
  EXPECT_EQ(two_way->track_opens, false);
  EXPECT_EQ(two_way->recipient.push.size(), 2u);
  std::optional<Message> variants = read_stored_message(stored_payloads()[2]);
  ASSERT_TRUE(variants.has_value());
  EXPECT_EQ(variants->content_variants.at("sms").at("text"), "SMS wording\twith a tab");
  EXPECT_EQ(variants->content_variants.count("line"), 0u);
  EXPECT_EQ(variants->data["escaped"], "quote \" backslash \\ line\nfeed \u0001 😀");
}

// Text canonical_json would not write, or a member whose meaning needs more than its text: the reader gives
// up, and stored_message reads the payload the old way, to the same Message parse_message gives.
TEST(StoredMessage, GivesUpOnAnythingButTheCanonicalShapeAndTheFallbackReadsIt) {
  std::vector<std::string> others = {
      // members out of key order
      R"({"recipient":{"id":"r"},"id":"m","purpose":"transactional","channels":["sms"],"content":{"text":"t"}})",
      // a null member: absent, for parse_message
      R"({"category":null,"channels":["sms"],"content":{"text":"t"},"id":"m","purpose":"transactional","recipient":{"id":"r"}})",
      // a local send_at: resolved in the recipient's zone when parsed
      R"({"channels":["sms"],"content":{"text":"t"},"id":"m","purpose":"transactional","recipient":{"id":"r","timezone":"Asia/Tokyo"},"send_at":"2026-11-24T08:00:00"})",
  };
  for (const std::string& payload : others) {
    SCOPED_TRACE(payload);
    EXPECT_FALSE(read_stored_message(payload).has_value());
    std::optional<Message> expected = parsed_again(payload);
    ASSERT_TRUE(expected.has_value());
    EXPECT_EQ(stored_message(payload), expected);
  }
  EXPECT_TRUE(stored_message(others[2])->send_at_local);
}

TEST(StoredMessage, APayloadThatIsNoMessageIsNoneEitherWay) {
  const std::string canonical = stored_payloads()[0];
  const std::vector<std::string> payloads = {
      R"({"erased":true})",  // what erasure leaves
      "",
      "not json",
      canonical.substr(0, canonical.size() - 1),  // cut short
      canonical + "x",                            // something after it
      R"({"channels":["sms","sms"],"content":{"text":"t"},"id":"m","purpose":"transactional","recipient":{"id":"r"}})",
      R"({"channels":["sms"],"content":{},"id":"m","purpose":"transactional","recipient":{"id":"r"}})",
      R"({"channels":["sms"],"content":{"text":"t"},"id":"m","purpose":"transactional","recipient":{"id":""}})",
      R"({"channels":["sms"],"content":{"text":"t"},"id":"m","purpose":"other","recipient":{"id":"r"}})",
      R"({"channels":["sms"],"content":{"text":"t"},"id":"m","recipient":{"id":"r"}})",
  };
  for (const std::string& payload : payloads) {
    SCOPED_TRACE(payload);
    EXPECT_FALSE(read_stored_message(payload).has_value());
    EXPECT_FALSE(stored_message(payload).has_value());
  }
}

}  // namespace
}  // namespace tayori::core
