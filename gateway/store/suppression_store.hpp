// Suppressions: contact points that must not be written to (hard bounces, unregistered push tokens, LINE
// unfollows, SMS STOP). One aggregate of the Store (store.hpp).
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "common/result.hpp"
#include "policy/policy.hpp"

namespace tayori::store {

class SuppressionStore {
 public:
  virtual ~SuppressionStore() = default;

  // Group-committed; replaces the contact point's suppression.
  virtual void add_suppression(policy::Suppression s, std::function<void(Result<void>)> done) = 0;
  virtual void remove_suppression(const std::string& contact, std::function<void(Result<bool>)> done) = 0;
  // The suppressions of these contact points (those that have one).
  virtual std::vector<policy::Suppression> suppressions(const std::vector<std::string>& contacts) = 0;
  // In contact order, after `after_contact`, at most `limit`.
  virtual std::vector<policy::Suppression> list_suppressions(const std::string& after_contact, int limit) = 0;
};

}  // namespace tayori::store
