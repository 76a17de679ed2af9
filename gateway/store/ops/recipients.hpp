// Recipients, their consent and their cap slots (store/recipient_store.hpp) as SQL, written once for every
// engine.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "policy/policy.hpp"
#include "store/message_store.hpp"
#include "store/ops/write_context.hpp"
#include "store/recipient_store.hpp"
#include "store/sql.hpp"

namespace tayori::store::ops {

std::optional<RecipientProfile> recipient(sql::Connection& c, const std::string& id);
// Stores the profile as given, no longer erased.
void put_recipient(sql::Connection& c, const std::string& id, const std::string& timezone, const std::string& locale,
                   const std::string& contacts_json, int64_t now_ms);
// The message's recipient data updates the profile: time zone and locale when given, contacts per kind
// (push tokens as a list, replaced whole). An erased recipient who appears again starts afresh. Returns the
// profile as it now stands.
RecipientProfile merge_recipient(sql::Connection& c, const std::string& id, const RecipientUpdate& update,
                                 int64_t now_ms);
// False for an unknown recipient (nothing written).
bool erase_recipient(sql::Connection& c, WriteContext& w, const std::string& id, int64_t now_ms);
std::vector<std::string> recipients_by_contact(sql::Connection& c, const std::string& contact);

void insert_consent(sql::Connection& c, const std::string& recipient_id, const policy::ConsentRecord& r, int64_t at_ms);
std::vector<policy::ConsentRecord> consent_history(sql::Connection& c, const std::string& recipient_id);
std::vector<policy::ConsentRecord> consent_current(sql::Connection& c, const std::string& recipient_id);

void put_slot(sql::Connection& c, const std::string& recipient_id, const policy::CapSlot& slot);
void delete_slot(sql::Connection& c, const std::string& recipient_id, const std::string& message_id);
// `held` (the slots taken but not yet committed) followed by the stored slots since `since_ms` that are not
// among them: a slot in both is counted once (by message).
std::vector<policy::CapSlot> slots_since(sql::Connection& c, const std::string& recipient_id, int64_t since_ms,
                                         std::vector<policy::CapSlot> held);
int64_t purge_slots(sql::Connection& c, int64_t before_ms);

}  // namespace tayori::store::ops
