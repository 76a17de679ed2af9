// The profile cache (profile_cache.hpp).
#include "store/profile_cache.hpp"

#include <algorithm>
#include <functional>

namespace tayori::store {

ProfileCache::ProfileCache(size_t capacity) : per_shard_(std::max<size_t>(1, capacity / 64)) {}

ProfileCache::Shard& ProfileCache::shard(const std::string& id) const {
  return shards_[std::hash<std::string>{}(id) % shards_.size()];
}

ProfileCache::Lookup ProfileCache::find(const std::string& id) const {
  Shard& s = shard(id);
  std::lock_guard lock(s.mutex);
  if (auto it = s.entries.find(id); it != s.entries.end()) return {true, it->second, 0};
  return {false, std::nullopt, s.generation};
}

void ProfileCache::offer(const std::string& id, const std::optional<RecipientProfile>& profile, uint64_t generation) {
  Shard& s = shard(id);
  std::lock_guard lock(s.mutex);
  // A write taken since the reader looked may be newer than what it read.
  if (s.generation != generation || s.entries.count(id)) return;
  put(s, id, profile);
}

void ProfileCache::put(Shard& s, const std::string& id, const std::optional<RecipientProfile>& profile) {
  auto [it, added] = s.entries.insert_or_assign(id, profile);
  if (!added) return;
  s.order.push_back(id);
  while (s.entries.size() > per_shard_) {
    s.entries.erase(s.order.front());
    s.order.pop_front();
  }
}

void ProfileCache::written(std::string id, std::optional<RecipientProfile> profile) {
  staged_.emplace_back(std::move(id), std::move(profile));
}

void ProfileCache::committed() {
  for (const auto& [id, profile] : staged_) {
    Shard& s = shard(id);
    std::lock_guard lock(s.mutex);
    ++s.generation;
    put(s, id, profile);
  }
  rolled_back();
}

void ProfileCache::rolled_back() {
  staged_.clear();
  staged_at_mark_ = 0;
}

}  // namespace tayori::store
