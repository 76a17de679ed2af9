// common/json.hpp: the fast reader and writer must be indistinguishable from nlohmann's parse() and dump(),
// down to the type of each number and the text of each error, because stored payloads are hashed and
// 400 answers quote nlohmann's messages.
#include "common/json.hpp"

#include <gtest/gtest.h>

#include <limits>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "json_identical.hpp"

namespace tayori {
namespace {

using tayori::testing::identical;

std::string nlohmann_dump(const Json& json) { return json.dump(-1, ' ', false, Json::error_handler_t::strict); }

// The reader's verdict on `text` agrees with nlohmann's: an accepted text gives the identical value (or is
// left to nlohmann), a refused one is never accepted.
enum class Verdict { Refused, ReadFast, LeftToNlohmann };

// Expects the reader and nlohmann to agree on `text`; says which of them read it.
Verdict expect_agreement(const std::string& text) {
  Json expected = Json::parse(text, nullptr, false);
  std::optional<Json> fast = read_json_fast(text);
  if (expected.is_discarded()) {
    EXPECT_FALSE(fast) << "the reader accepts what nlohmann refuses: " << text;
  } else if (fast) {
    EXPECT_TRUE(identical(*fast, expected)) << text << "\n read as " << fast->dump();
  }
  EXPECT_TRUE(identical(parse_json_or_discarded(text), expected)) << text;
  if (expected.is_discarded()) return Verdict::Refused;
  return fast ? Verdict::ReadFast : Verdict::LeftToNlohmann;
}

TEST(JsonRead, ReadsWhatNlohmannReadsWithTheSameTypes) {
  const std::vector<std::string> texts = {
      R"({"id":"m-1","recipient":{"id":"u-1","contacts":{"email":"a@example.jp"}},"channels":["email","sms"]})",
      " \t\r\n{ \"a\" : [ 1 , 2 ] , \"b\" : { } , \"c\" : [ ] } \n",
      R"(["\"\\\/\b\f\n\r\t", "\u0041\u00e9\u3042\ud83d\ude00", "\u0000x", "\uD834\uDD1E"])",
      "\"ご注文の品を発送しました \xF0\x9F\x93\xA6 \x7F\"",
      "[0, -0, 7, -7, 18446744073709551615, -9223372036854775808, 9223372036854775808]",
      "[18446744073709551616, -9223372036854775809, 123456789012345678901234567890]",
      "[1.5, -0.0, 0.1, 1e5, 1E-5, 2.5e+3, 2.2250738585072014e-308, 1.7976931348623157e308]",
      R"({"a":1,"b":2,"a":{"x":true}})",
      "true",
      "false",
      "null",
      "\"\"",
      "0",
      "{}",
      "[]",
  };
  for (const auto& text : texts) {
    std::optional<Json> fast = read_json_fast(text);
    ASSERT_TRUE(fast) << "left to nlohmann: " << text;
    EXPECT_TRUE(identical(*fast, Json::parse(text))) << text << "\n read as " << fast->dump();
  }
  EXPECT_EQ(read_json_fast("[18446744073709551615]")->at(0).type(), Json::value_t::number_unsigned);
  EXPECT_EQ(read_json_fast("[-1]")->at(0).type(), Json::value_t::number_integer);
  EXPECT_EQ(read_json_fast("[18446744073709551616]")->at(0).type(), Json::value_t::number_float);
  EXPECT_EQ((*read_json_fast(R"({"a":1,"a":2})"))["a"], 2);
}

TEST(JsonRead, LeavesErrorsToNlohmannSoTheyReadTheSame) {
  const std::vector<std::string> texts = {
      "",
      "   ",
      "{",
      R"({"a":})",
      R"({"a" 1})",
      R"({"a":1,})",
      "[1,]",
      "[1 2]",
      "01",
      "1.",
      ".5",
      "-",
      "+1",
      "1e",
      "tru",
      "nul",
      "\"abc",
      "\"a\x01\"",
      "\"\\x\"",
      R"("\u12")",
      R"("\ud800")",
      R"("\ud800\u0041")",
      R"("\udc00")",
      "\"\xC0\x80\"",
      "\"\xED\xA0\x80\"",
      "\"\xF4\x90\x80\x80\"",
      "\"\xE3\x81\"",
      "{} x",
      "{\"a\":1e400}",
      "[-1e400]",
      "[1e-400]",
      "\xEF\xBB\xBF{}",
      "[\"a\" \"b\"]",
      std::string(kFastDepth + 2, '[') + std::string(kFastDepth + 2, ']'),
  };
  for (const auto& text : texts) {
    expect_agreement(text);
    std::string expected_error, error;
    Json expected, value;
    try {
      expected = Json::parse(text);
    } catch (const Json::exception& e) {
      expected_error = e.what();
    }
    try {
      value = parse_json(text);
    } catch (const Json::exception& e) {
      error = e.what();
    }
    EXPECT_EQ(error, expected_error) << text;
    EXPECT_TRUE(identical(value, expected)) << text;
  }
  EXPECT_FALSE(read_json_fast(R"({"a":1e400})"));
  EXPECT_THROW(parse_json(R"({"a":1e400})"), Json::out_of_range);
  EXPECT_TRUE(parse_json_or_discarded(R"({"a":1e400})").is_discarded());
  // A byte order mark and nesting past kFastDepth are nlohmann's to read, and it reads them.
  EXPECT_EQ(parse_json("\xEF\xBB\xBF{}"), Json::object());
  EXPECT_TRUE(parse_json(std::string(kFastDepth + 2, '[') + std::string(kFastDepth + 2, ']')).is_array());
}

TEST(JsonDump, WritesNlohmannsBytes) {
  Json j = {{"text", "a\"b\\c/d\b\f\n\r\t\x01\x1f\x7f ご注文 \xF0\x9F\x93\xA6"},
            {"numbers", {0, -1, 18446744073709551615ULL, -9223372036854775807LL - 1, 1.0, -0.0, 0.1, 1e100, 2.5e-300}},
            {"empty", {{"object", Json::object()}, {"array", Json::array()}, {"string", ""}}},
            {"literals", {true, false, nullptr}},
            {"z", {{"b", 1}, {"a", 2}}}};
  EXPECT_EQ(dump_json(j), nlohmann_dump(j));
  EXPECT_EQ(dump_json(Json(std::string("\x00 nul", 5))), nlohmann_dump(Json(std::string("\x00 nul", 5))));
  for (const Json& scalar : {Json(nullptr), Json(true), Json(3), Json(-3), Json(2.5), Json("s")})
    EXPECT_EQ(dump_json(scalar), nlohmann_dump(scalar));
}

// A string appended on its own reads as the same string inside dump_json's text, and says when it is not UTF-8.
TEST(JsonDump, AppendsAStringAsItWritesOne) {
  for (const std::string& text : {std::string(), std::string("plain"), std::string("a\"b\\c/d\b\f\n\r\t\x01\x1f\x7f"),
                                  std::string("\x00 nul", 5), std::string("ご注文 \xF0\x9F\x93\xA6")}) {
    std::string out = "[";
    ASSERT_TRUE(append_json_string(out, text)) << text;
    EXPECT_EQ(out, "[" + nlohmann_dump(Json(text)));
  }
  std::string out;
  EXPECT_FALSE(append_json_string(out, "ok \xE3\x81"));
}

// An object written member by member is the text dump_json writes for the same value (error-tolerant), and the
// writer starts afresh after each.
TEST(JsonDump, AnObjectWrittenMemberByMemberIsWhatDumpWrites) {
  JsonObjectText w;
  EXPECT_EQ(w.take(), dump_json(Json::object()));
  for (const std::string& text :
       {std::string(), std::string("a\"b\\c/d\b\f\n\r\t\x01\x1f\x7f"), std::string("\x00 nul", 5),
        std::string("ご注文 \xF0\x9F\x93\xA6"), std::string("ok \xE3\x81"), std::string("a\xFF")}) {
    for (int64_t n : {int64_t{0}, int64_t{-1}, int64_t{1} << 40, std::numeric_limits<int64_t>::min()}) {
      Json expected = {{"attempt", n}, {"channel", text}, {"provider_message_id", "sid-1"}};
      EXPECT_EQ(w.integer("attempt", n).string("channel", text).string("provider_message_id", "sid-1").take(),
                dump_json(expected, InvalidUtf8::replace))
          << text;
    }
  }
}

TEST(JsonDump, RefusesOrReplacesInvalidUtf8AsNlohmannDoes) {
  for (const std::string& bad : {std::string("\xC3"), std::string("a\xFF"), std::string("\xED\xA0\x80"),
                                 std::string("\xC0\x80"), std::string("ok \xE3\x81")}) {
    Json j = {{"k", bad}};
    std::string expected, actual;
    try {
      nlohmann_dump(j);
    } catch (const Json::type_error& e) {
      expected = e.what();
    }
    try {
      dump_json(j);
    } catch (const Json::type_error& e) {
      actual = e.what();
    }
    EXPECT_FALSE(expected.empty());
    EXPECT_EQ(actual, expected);
    // Answers that echo a client's bytes replace them with U+FFFD, as nlohmann's replace handler does.
    EXPECT_EQ(dump_json(j, InvalidUtf8::replace), j.dump(-1, ' ', false, Json::error_handler_t::replace));
  }
}

// Random values, written by nlohmann both plainly and with every non-ASCII character escaped, read back; then
// the same texts with bytes changed, where the reader must agree with nlohmann's verdict.
Json random_value(std::mt19937_64& rng, int depth) {
  auto pick = [&](uint64_t n) { return rng() % n; };
  static const std::vector<std::string> pieces = {"a",  "Z",    " ",    "\"", "\\", "/",    "\n",
                                                  "\t", "\x01", "\x7f", "é",  "あ", "注文", "\xF0\x9F\x98\x80",
                                                  "{",  "]",    ":",    ",",  "0"};
  auto random_string = [&] {
    std::string s;
    for (uint64_t n = pick(8); n > 0; --n) s += pieces[pick(pieces.size())];
    return s;
  };
  switch (depth > 3 ? 2 + pick(5) : pick(7)) {
    case 0: {
      Json o = Json::object();
      for (uint64_t n = pick(5); n > 0; --n) o[random_string()] = random_value(rng, depth + 1);
      return o;
    }
    case 1: {
      Json a = Json::array();
      for (uint64_t n = pick(5); n > 0; --n) a.push_back(random_value(rng, depth + 1));
      return a;
    }
    case 2: return random_string();
    case 3: return pick(2) ? Json(rng()) : Json(static_cast<int64_t>(rng()));
    case 4: return static_cast<double>(static_cast<int64_t>(rng() % 2000001) - 1000000) / 1024.0;
    case 5: return pick(2) == 1;
    default: return nullptr;
  }
}

TEST(JsonRead, AgreesWithNlohmannOnRandomValuesAndTheirCorruptions) {
  std::mt19937_64 rng(20261206);
  std::map<Verdict, int> corruptions;
  for (int round = 0; round < 3000; ++round) {
    Json value = random_value(rng, 0);
    for (bool ensure_ascii : {false, true}) {
      std::string text = value.dump(-1, ' ', ensure_ascii);
      std::optional<Json> fast = read_json_fast(text);
      ASSERT_TRUE(fast) << text;
      ASSERT_TRUE(identical(*fast, Json::parse(text))) << text;
      ASSERT_EQ(dump_json(*fast), nlohmann_dump(value));
      if (text.empty()) continue;
      std::string corrupted = text;
      corrupted[rng() % corrupted.size()] = static_cast<char>(rng());
      if (rng() % 2) corrupted.erase(rng() % corrupted.size(), 1);
      ++corruptions[expect_agreement(corrupted)];
    }
  }
  // One changed byte leaves some texts valid (inside a string, a digit): both verdicts are compared.
  EXPECT_GT(corruptions[Verdict::Refused], 1000);
  EXPECT_GT(corruptions[Verdict::ReadFast], 200);
}

}  // namespace
}  // namespace tayori
