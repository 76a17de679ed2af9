// The presence filter (presence_filter.hpp): a counting Bloom filter whose counters only the store's writer
// changes, so a count is a load and a store, and readers need no lock.
#include "store/presence_filter.hpp"

#include <algorithm>
#include <functional>

namespace tayori::store {

namespace {

// splitmix64's finaliser: spreads the table's tag and the key's hash over all 64 bits.
uint64_t mix(uint64_t x) {
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ULL;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

}  // namespace

PresenceFilter::PresenceFilter(int log2_counters)
    : mask_((uint64_t{1} << std::max(log2_counters, 6)) - 1),  // one block at least
      counters_(new std::atomic<uint8_t>[mask_ + 1]) {
  for (uint64_t i = 0; i <= mask_; ++i) counters_[i].store(0, std::memory_order_relaxed);
}

// Two hashes: h1, from the key alone, picks the block, so that a recipient's consent and cap slots are asked
// about in one cache line; six bits of h2, from the key and the table, per probe pick the counter in it.
PresenceFilter::Probe PresenceFilter::probe(Table table, std::string_view key) {
  uint64_t h = mix(std::hash<std::string_view>{}(key));
  return {h, mix(h ^ (static_cast<uint64_t>(table) + 1) * 0x9e3779b97f4a7c15ULL)};
}

bool PresenceFilter::may_have(Table table, std::string_view key) const {
  Probe p = probe(table, key);
  for (int i = 0; i < kProbes; ++i)
    if (counters_[index(p, i)].load(std::memory_order_acquire) == 0) return false;
  return true;
}

void PresenceFilter::add(const Probe& p, int delta) {
  for (int i = 0; i < kProbes; ++i) {
    std::atomic<uint8_t>& c = counters_[index(p, i)];
    uint8_t v = c.load(std::memory_order_relaxed);
    // A stuck counter no longer knows its count. One already at zero cannot count down: that would mean a
    // delete of a row never counted, and zero must keep meaning "no row".
    if (v == kStuck || (delta < 0 && v == 0)) continue;
    c.store(static_cast<uint8_t>(v + delta), std::memory_order_release);
  }
}

void PresenceFilter::inserted(Table table, std::string_view key) {
  Probe p = probe(table, key);
  add(p, +1);
  inserts_.push_back(p);
}

void PresenceFilter::deleted(Table table, std::string_view key) { deletes_.push_back(probe(table, key)); }

void PresenceFilter::committed() {
  for (const Probe& p : deletes_) add(p, -1);
  inserts_.clear();
  deletes_.clear();
  inserts_at_mark_ = deletes_at_mark_ = 0;
}

void PresenceFilter::rolled_back() {
  for (const Probe& p : inserts_) add(p, -1);
  inserts_.clear();
  deletes_.clear();
  inserts_at_mark_ = deletes_at_mark_ = 0;
}

void PresenceFilter::mark() {
  inserts_at_mark_ = inserts_.size();
  deletes_at_mark_ = deletes_.size();
}

void PresenceFilter::rolled_back_to_mark() {
  for (size_t i = inserts_at_mark_; i < inserts_.size(); ++i) add(inserts_[i], -1);
  inserts_.resize(inserts_at_mark_);
  deletes_.resize(deletes_at_mark_);
}

}  // namespace tayori::store
