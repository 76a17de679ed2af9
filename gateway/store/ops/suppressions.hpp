// Suppressions (store/suppression_store.hpp) as SQL, written once for every engine.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "policy/policy.hpp"
#include "store/sql.hpp"

namespace tayori::store::ops {

// What the suppression of an erased recipient's contact point is stored under instead of the contact point:
// "sha256:" and the SHA-256 of the contact point exactly as the policy compares it (docs/decisions.md).
std::string suppression_key(const std::string& contact);
// Replaces the contact point's suppression; `at_ms` is the time recorded.
void put_suppression(sql::Connection& c, const policy::Suppression& s, int64_t at_ms);
// Lifts it, in clear or by its key. True when there was one to remove.
bool remove_suppression(sql::Connection& c, const std::string& contact);
// Removes it only when it was recorded by `source`.
void remove_suppression_from(sql::Connection& c, const std::string& contact, const std::string& source);
// The suppressions of `contacts`, in clear or by key, each named by the contact point asked about.
std::vector<policy::Suppression> suppressions(sql::Connection& c, const std::vector<std::string>& contacts);
std::vector<policy::Suppression> list_suppressions(sql::Connection& c, const std::string& after_contact, int limit);

}  // namespace tayori::store::ops
