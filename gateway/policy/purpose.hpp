// Why a message is sent, which decides the consent it needs (docs/architecture.md §4): transactional, what
// the recipient asked for, or marketing, what the sender wants to tell them. Below the message model, since
// the policy's consent records and cap rules speak of it too.
#pragma once

#include <string_view>

namespace tayori::policy {

enum class Purpose { transactional, marketing };

inline std::string_view to_string(Purpose p) { return p == Purpose::marketing ? "marketing" : "transactional"; }

}  // namespace tayori::policy
