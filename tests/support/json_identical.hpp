// Two JSON values the same in every way a stored hash sees: nlohmann's operator== calls 1u and 1 equal, and
// -0.0 and 0.0, and a discarded value unequal to itself. The unit tests and the `json` fuzz target of
// common/json.hpp compare with this.
#pragma once

#include <bit>
#include <cstdint>

#include "common/json.hpp"

namespace tayori::testing {

inline bool identical(const Json& a, const Json& b) {
  if (a.type() != b.type()) return false;
  switch (a.type()) {
    case Json::value_t::object: {
      const auto& x = a.get_ref<const Json::object_t&>();
      const auto& y = b.get_ref<const Json::object_t&>();
      if (x.size() != y.size()) return false;
      for (auto i = x.begin(), j = y.begin(); i != x.end(); ++i, ++j)
        if (i->first != j->first || !identical(i->second, j->second)) return false;
      return true;
    }
    case Json::value_t::array: {
      const auto& x = a.get_ref<const Json::array_t&>();
      const auto& y = b.get_ref<const Json::array_t&>();
      if (x.size() != y.size()) return false;
      for (size_t i = 0; i < x.size(); ++i)
        if (!identical(x[i], y[i])) return false;
      return true;
    }
    case Json::value_t::number_float:
      return std::bit_cast<uint64_t>(a.get<double>()) == std::bit_cast<uint64_t>(b.get<double>());
    case Json::value_t::discarded: return true;
    default: return a == b;
  }
}

}  // namespace tayori::testing
