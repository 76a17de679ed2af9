#include "common/result.hpp"

#include <gtest/gtest.h>

#include <memory>
#include <string>

namespace tayori {
namespace {

Result<int> parse_digit(char c) {
  if (c < '0' || c > '9') return Error{ErrorCode::invalid, std::string("not a digit: ") + c, "digit"};
  return c - '0';
}

TEST(Result, HoldsAValue) {
  Result<int> r = parse_digit('7');
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(static_cast<bool>(r));
  EXPECT_EQ(r.value(), 7);
  EXPECT_EQ(*r, 7);
}

TEST(Result, HoldsAnErrorWithItsCodeFieldAndMessage) {
  Result<int> r = parse_digit('x');
  ASSERT_FALSE(r.ok());
  EXPECT_FALSE(static_cast<bool>(r));
  EXPECT_EQ(r.error().code, ErrorCode::invalid);
  EXPECT_EQ(r.error().field, "digit");
  EXPECT_EQ(r.error().message, "not a digit: x");
}

TEST(Result, MovesAValueOut) {
  Result<std::unique_ptr<int>> r = std::make_unique<int>(3);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(*r->get(), 3);
  std::unique_ptr<int> owned = std::move(r).value();
  ASSERT_NE(owned, nullptr);
  EXPECT_EQ(*owned, 3);
}

TEST(Result, AStringValueIsNotTakenForAnError) {
  Result<std::string> r = std::string("fine");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r.value(), "fine");
  r = Error{ErrorCode::unavailable, "the store is stopping"};
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::unavailable);
}

TEST(Result, VoidIsASuccessUntilGivenAnError) {
  Result<void> done;
  EXPECT_TRUE(done.ok());
  Result<void> failed = Error{ErrorCode::conflict, "UNIQUE constraint failed", "id"};
  ASSERT_FALSE(failed.ok());
  EXPECT_EQ(failed.error().code, ErrorCode::conflict);
  EXPECT_EQ(failed.error().field, "id");
}

TEST(Result, EveryCodeHasItsOwnWord) {
  EXPECT_EQ(to_string(ErrorCode::invalid), "invalid");
  EXPECT_EQ(to_string(ErrorCode::not_found), "not_found");
  EXPECT_EQ(to_string(ErrorCode::gone), "gone");
  EXPECT_EQ(to_string(ErrorCode::conflict), "conflict");
  EXPECT_EQ(to_string(ErrorCode::unavailable), "unavailable");
  EXPECT_EQ(to_string(ErrorCode::internal), "internal");
}

// Reading what is not there is a programming error: the process stops at once, in every build type.
TEST(ResultDeathTest, ReadingTheValueOfAFailureStops) {
  Result<int> r = parse_digit('x');
  EXPECT_DEATH((void)r.value(), "value\\(\\) called on a failure");
}

TEST(ResultDeathTest, ReadingTheErrorOfASuccessStops) {
  Result<int> r = parse_digit('1');
  EXPECT_DEATH((void)r.error(), "error\\(\\) called on a success");
  Result<void> done;
  EXPECT_DEATH((void)done.error(), "error\\(\\) called on a success");
}

}  // namespace
}  // namespace tayori
