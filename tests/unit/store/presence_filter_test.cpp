// The presence filter alone (store/presence_filter.hpp): what it counts and when, on one thread as the writer
// drives it. The store's use of it is tested in store_policy_test.cpp (DecisionState...).
#include "store/presence_filter.hpp"

#include <gtest/gtest.h>

#include <string>

namespace tayori::store {
namespace {

using Table = PresenceFilter::Table;

TEST(PresenceFilter, AnInsertCountsAtOnceAndARollbackGivesItBack) {
  PresenceFilter f(16);
  EXPECT_FALSE(f.may_have(Table::consent, "u1"));
  f.inserted(Table::consent, "u1");
  EXPECT_TRUE(f.may_have(Table::consent, "u1"));  // before the commit: a reader after it must not miss the row
  f.rolled_back();
  EXPECT_FALSE(f.may_have(Table::consent, "u1"));

  f.inserted(Table::consent, "u1");
  f.committed();
  EXPECT_TRUE(f.may_have(Table::consent, "u1"));
  f.rolled_back();  // a later group's rollback gives back only its own inserts
  EXPECT_TRUE(f.may_have(Table::consent, "u1"));
}

TEST(PresenceFilter, ADeleteCountsOnlyOnceCommitted) {
  PresenceFilter f(16);
  f.inserted(Table::suppressions, "a@example.jp");
  f.committed();
  f.deleted(Table::suppressions, "a@example.jp");
  EXPECT_TRUE(f.may_have(Table::suppressions, "a@example.jp"));  // the row is there until the commit
  f.rolled_back();
  EXPECT_TRUE(f.may_have(Table::suppressions, "a@example.jp"));  // and stays when the delete is rolled back
  f.deleted(Table::suppressions, "a@example.jp");
  f.committed();
  EXPECT_FALSE(f.may_have(Table::suppressions, "a@example.jp"));
}

TEST(PresenceFilter, EachRowCountsSoTheKeyStaysUntilItsLastRowGoes) {
  PresenceFilter f(16);
  f.loaded(Table::cap_slots, "u1");  // there when the store opened
  f.inserted(Table::cap_slots, "u1");
  f.committed();
  f.deleted(Table::cap_slots, "u1");
  f.committed();
  EXPECT_TRUE(f.may_have(Table::cap_slots, "u1"));
  f.deleted(Table::cap_slots, "u1");
  f.committed();
  EXPECT_FALSE(f.may_have(Table::cap_slots, "u1"));
}

TEST(PresenceFilter, ASavepointRolledBackGivesBackOnlyWhatCameAfterIt) {
  PresenceFilter f(16);
  f.inserted(Table::consent, "kept");
  f.loaded(Table::consent, "deleted-before");
  f.deleted(Table::consent, "deleted-before");
  f.mark();
  f.inserted(Table::consent, "rolled-back");
  f.loaded(Table::consent, "deleted-after");
  f.deleted(Table::consent, "deleted-after");
  f.rolled_back_to_mark();
  EXPECT_FALSE(f.may_have(Table::consent, "rolled-back"));
  f.committed();
  EXPECT_TRUE(f.may_have(Table::consent, "kept"));
  EXPECT_FALSE(f.may_have(Table::consent, "deleted-before"));
  EXPECT_TRUE(f.may_have(Table::consent, "deleted-after"));  // its delete was rolled back with the savepoint
}

TEST(PresenceFilter, TheSameKeyInAnotherTableIsAnotherKey) {
  PresenceFilter f(20);
  f.inserted(Table::consent, "u1");
  f.committed();
  EXPECT_FALSE(f.may_have(Table::cap_slots, "u1"));
  EXPECT_FALSE(f.may_have(Table::suppressions, "u1"));
  EXPECT_FALSE(f.may_have(Table::consent, "u2"));
}

// A counter that overflows no longer knows its count, so it never comes back to zero: keys that share it read
// from the store for good, but none is ever said to have no row while it has one.
TEST(PresenceFilter, ASaturatedCounterNeverCountsDown) {
  PresenceFilter f(6);  // one block of 64 counters: 20,000 rows of four probes each saturate them all
  for (int i = 0; i < 20'000; ++i) f.loaded(Table::consent, "u" + std::to_string(i));
  for (int i = 0; i < 20'000; ++i) f.deleted(Table::consent, "u" + std::to_string(i));
  f.committed();
  EXPECT_TRUE(f.may_have(Table::consent, "u0"));
  EXPECT_TRUE(f.may_have(Table::consent, "never-stored"));
}

}  // namespace
}  // namespace tayori::store
