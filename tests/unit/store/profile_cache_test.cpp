// The profile cache alone (store/profile_cache.hpp), driven as the writer and the readers drive it. Its use by
// the store is tested in store_policy_test.cpp (RecipientAnswers...).
#include "store/profile_cache.hpp"

#include <gtest/gtest.h>

#include <string>

namespace tayori::store {
namespace {

RecipientProfile profile(const std::string& id, const std::string& locale) {
  return {id, "Asia/Tokyo", locale, "{}", 1'000, false};
}

TEST(ProfileCache, AWriteIsSeenOnlyOnceCommitted) {
  ProfileCache cache;
  EXPECT_FALSE(cache.find("u1").hit);
  cache.written("u1", profile("u1", "ja-JP"));
  EXPECT_FALSE(cache.find("u1").hit);  // the transaction is still open
  cache.committed();
  auto found = cache.find("u1");
  ASSERT_TRUE(found.hit);
  ASSERT_TRUE(found.profile.has_value());
  EXPECT_EQ(found.profile->locale, "ja-JP");

  cache.written("u1", profile("u1", "en-GB"));
  cache.rolled_back();
  EXPECT_EQ(cache.find("u1").profile->locale, "ja-JP");
  cache.written("u1", std::nullopt);  // deleted
  cache.committed();
  found = cache.find("u1");
  EXPECT_TRUE(found.hit);
  EXPECT_FALSE(found.profile.has_value());
}

TEST(ProfileCache, ASavepointRolledBackForgetsOnlyWhatCameAfterIt) {
  ProfileCache cache;
  cache.written("kept", profile("kept", "ja-JP"));
  cache.mark();
  cache.written("gone", profile("gone", "ja-JP"));
  cache.rolled_back_to_mark();
  cache.committed();
  EXPECT_TRUE(cache.find("kept").hit);
  EXPECT_FALSE(cache.find("gone").hit);
}

// A reader that missed, then read the table, offers what it read. A write committed in between may be newer
// than that read, so the offer is refused and the write's profile stays.
TEST(ProfileCache, AnOfferFromBeforeACommitNeverReplacesWhatTheCommitWrote) {
  ProfileCache cache;
  auto missed = cache.find("u1");
  ASSERT_FALSE(missed.hit);
  cache.written("u1", profile("u1", "fr-FR"));
  cache.committed();
  cache.offer("u1", profile("u1", "stale"), missed.generation);
  EXPECT_EQ(cache.find("u1").profile->locale, "fr-FR");

  auto again = cache.find("u2");
  cache.offer("u2", std::nullopt, again.generation);
  auto found = cache.find("u2");
  EXPECT_TRUE(found.hit);
  EXPECT_FALSE(found.profile.has_value());  // "no profile" is remembered as well
}

// Even once that write has been pushed out of the cache again, the stale read is not taken in its place.
TEST(ProfileCache, AnOfferFromBeforeACommitIsRefusedAfterTheWriteWasForgottenToo) {
  ProfileCache cache(64);  // one per shard
  auto missed = cache.find("u1");
  cache.written("u1", profile("u1", "fr-FR"));
  for (int i = 0; i < 1'000; ++i) cache.written("x" + std::to_string(i), profile("x", "ja-JP"));
  cache.committed();
  cache.offer("u1", profile("u1", "stale"), missed.generation);
  auto found = cache.find("u1");
  EXPECT_TRUE(!found.hit || found.profile->locale == "fr-FR");
}

TEST(ProfileCache, WhenFullTheOldestGoesFirst) {
  ProfileCache cache(64);  // one per shard
  for (int i = 0; i < 1'000; ++i) cache.written("u" + std::to_string(i), profile("u" + std::to_string(i), "ja-JP"));
  cache.committed();
  int kept = 0;
  for (int i = 0; i < 1'000; ++i) kept += cache.find("u" + std::to_string(i)).hit ? 1 : 0;
  EXPECT_LE(kept, 64);
  EXPECT_GT(kept, 0);
  EXPECT_TRUE(cache.find("u999").hit);  // the newest is in its shard
}

}  // namespace
}  // namespace tayori::store
