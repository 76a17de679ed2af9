// Suppressions as SQL, once for SQLite and PostgreSQL: the contact points the policy must not write to,
// put and lifted by the API and by provider reports (ops/inbound.cpp), read by the policy before each send.
// SqlStore (store/sql_store.cpp, store/group_commit.cpp) runs the writes in its group commit and the reads on its
// reader pool. A suppression of an erased recipient's contact point is stored under suppression_key (ops/erasure.cpp),
// so every lookup and lift here matches a contact point in clear or by its key.
#include "store/ops/suppressions.hpp"

#include "store/ops/rows.hpp"
#include "crypto/crypto.hpp"

namespace tayori::store::ops {

namespace {

policy::Suppression suppression_row(const sql::Statement& s) { return {s.text(0), s.text(1), s.text(2), s.int64(3)}; }

}  // namespace

std::string suppression_key(const std::string& contact) { return "sha256:" + crypto::sha256_hex(contact); }

void put_suppression(sql::Connection& c, const policy::Suppression& s, int64_t at_ms) {
  c.prepare(
       "INSERT INTO suppressions(contact, reason, source, at) VALUES(?1, ?2, ?3, ?4) "
       "ON CONFLICT(contact) DO UPDATE SET reason = ?2, source = ?3, at = ?4")
      .bind(1, s.contact)
      .bind(2, s.reason)
      .bind(3, s.source)
      .bind(4, at_ms)
      .exec();
}

bool remove_suppression(sql::Connection& c, const std::string& contact) {
  c.prepare("DELETE FROM suppressions WHERE contact IN (?1, ?2)")
      .bind(1, contact)
      .bind(2, suppression_key(contact))
      .exec();
  return c.changes() > 0;
}

void remove_suppression_from(sql::Connection& c, const std::string& contact, const std::string& source) {
  c.prepare("DELETE FROM suppressions WHERE contact IN (?1, ?2) AND source = ?3")
      .bind(1, contact)
      .bind(2, suppression_key(contact))
      .bind(3, source)
      .exec();
}

std::vector<policy::Suppression> suppressions(sql::Connection& c, const std::vector<std::string>& contacts) {
  std::vector<policy::Suppression> out;
  auto lookup = [&c](const std::string& key) {
    return first_row(c.prepare("SELECT contact, reason, source, at FROM suppressions WHERE contact = ?1").bind(1, key),
                     suppression_row);
  };
  for (const auto& contact : contacts) {
    // The row in clear first (it has the reason as recorded), then the erased form; either names the contact
    // point asked about, which is what the policy keys its suppressions by. Two point lookups, not one
    // `IN (?1, ?2) ORDER BY ...`: SQLite builds a temporary b-tree for that IN list and another for the ORDER
    // BY on every call, which made this read a fifth of a dispatcher worker's CPU.
    auto s = lookup(contact);
    if (!s) s = lookup(suppression_key(contact));
    if (s) {
      s->contact = contact;
      out.push_back(std::move(*s));
    }
  }
  return out;
}

std::vector<policy::Suppression> list_suppressions(sql::Connection& c, const std::string& after_contact, int limit) {
  return all_rows(
      c.prepare("SELECT contact, reason, source, at FROM suppressions WHERE contact > ?1 ORDER BY contact LIMIT ?2")
          .bind(1, after_contact)
          .bind(2, static_cast<int64_t>(limit)),
      suppression_row);
}

}  // namespace tayori::store::ops
