// Reading a statement's rows into values, the way every read of the operations ends: step, read each
// row, reset (so the engine lets go of the run; see sql::Statement::reset).
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "store/sql.hpp"

namespace tayori::store::ops {

template <class Row>
auto all_rows(sql::Statement& s, Row row) -> std::vector<decltype(row(s))> {
  std::vector<decltype(row(s))> out;
  while (s.step()) out.push_back(row(s));
  s.reset();
  return out;
}

template <class Row>
auto first_row(sql::Statement& s, Row row) -> std::optional<decltype(row(s))> {
  std::optional<decltype(row(s))> out;
  if (s.step()) out = row(s);
  s.reset();
  return out;
}

inline std::string first_text(const sql::Statement& s) { return s.text(0); }

// Whether the statement returns a row at all.
inline bool any_row(sql::Statement& s) {
  return first_row(s, [](const sql::Statement&) { return true; }).has_value();
}

}  // namespace tayori::store::ops
