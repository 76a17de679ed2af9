// Recipients, the subjects of the policy: their profiles, their consent history and the frequency-cap
// slots their messages took. One aggregate of the Store (store.hpp).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/result.hpp"
#include "policy/policy.hpp"

namespace tayori::store {

// What Tayori knows of a recipient. Contacts are the canonical JSON of the API's `contacts` object.
struct RecipientProfile {
  std::string id;
  std::string timezone;
  std::string locale;
  std::string contacts_json = "{}";
  int64_t updated_at_ms = 0;
  bool erased = false;  // personal data erased (right to erasure); the id and anonymous counters remain
};

class RecipientStore {
 public:
  virtual ~RecipientStore() = default;

  virtual std::optional<RecipientProfile> recipient(const std::string& id) = 0;
  // Replaces the profile (PUT). Group-committed.
  virtual void put_recipient(RecipientProfile profile, int64_t now_ms, std::function<void(Result<void>)> done) = 0;
  // Right to erasure: drops contacts, locale, time zone and the content of the recipient's messages,
  // cancels what is still scheduled; keeps ids, states, events and cap counters (anonymous). `found`
  // is false for an unknown recipient.
  virtual void erase_recipient(const std::string& id, int64_t now_ms, std::function<void(Result<bool>)> done) = 0;
  // Every recipient whose stored profile has `contact` as one of its contact points (a family may share a
  // number), the most recently updated first; empty when none. An indexed lookup (table contact_points).
  virtual std::vector<std::string> recipients_by_contact(const std::string& contact) = 0;

  // ---- Consent: append-only history per recipient x channel x purpose ----
  // Appends `records` in one operation: all of them are stored in one group commit, or none.
  virtual void append_consent(const std::string& recipient_id, std::vector<policy::ConsentRecord> records,
                              std::function<void(Result<void>)> done) = 0;
  virtual std::vector<policy::ConsentRecord> consent_history(const std::string& recipient_id) = 0;
  // The latest record per channel x purpose.
  virtual std::vector<policy::ConsentRecord> consent_current(const std::string& recipient_id) = 0;

  // ---- Frequency-cap slots ----
  // Takes (or re-takes, after a crash) the slot of `slot.message_id`. Group-committed without waiting:
  // slots_since sees the slot at once (read-your-writes), so the caller may send before the commit. A crash
  // before the commit loses the slot together with the outcome of that send, and the restart requeues the
  // message, which takes its slot again when it is cleared again (at-least-once, as for any send).
  virtual void take_slot(const std::string& recipient_id, const policy::CapSlot& slot) = 0;
  virtual void release_slot(const std::string& recipient_id, const std::string& message_id,
                            std::function<void(Result<void>)> done) = 0;
  // The slots taken since `since_ms`: the committed ones and those taken but not yet committed.
  virtual std::vector<policy::CapSlot> slots_since(const std::string& recipient_id, int64_t since_ms) = 0;
  // Deletes the slots taken before `before_ms` (no cap window reaches them); returns how many.
  virtual Result<int64_t> purge_slots(int64_t before_ms) = 0;

  // Serialises the cap decisions for one recipient across every node that shares the store, from the read
  // of its slots (slots_since) to take_slot, so that nodes racing for a recipient's last slot never both
  // get it. Held until destroyed. nullptr: the store serves one node, and that node's own lock
  // (core::Clearance) is enough.
  class DecisionLock {
   public:
    virtual ~DecisionLock() = default;
  };
  virtual std::unique_ptr<DecisionLock> lock_decisions(const std::string& recipient_id) {
    (void)recipient_id;
    return nullptr;
  }
};

}  // namespace tayori::store
