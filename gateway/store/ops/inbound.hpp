// Two-way writes and open questions (store/inbound_store.hpp) as SQL, written once for every engine.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "store/inbound_store.hpp"
#include "store/ops/write_context.hpp"
#include "store/sql.hpp"

namespace tayori::store::ops {

// One provider report's or answer's writes; false when (source, event_id) was seen before (nothing written).
bool apply_inbound_one(sql::Connection& c, WriteContext& w, const InboundStore::InboundWrites& writes, int64_t now_ms);
std::optional<InboundStore::Question> open_question(sql::Connection& c, const std::string& contact,
                                                    const std::string& channel);
void put_question(sql::Connection& c, const std::string& contact, const std::string& channel,
                  const InboundStore::Question& q);

}  // namespace tayori::store::ops
