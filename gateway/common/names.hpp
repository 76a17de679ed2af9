// Names that both a message and the configuration speak of, with one rule each: a category in a message
// (`category`) and the categories the configuration gives rules for (attribution.categories, a cap's
// `category`) must be spelt alike, or a rule would silently never apply.
#pragma once

#include <string_view>

namespace tayori {

// A message category: 1 to 64 of a-z 0-9 _ . -, starting with a letter or digit.
inline bool is_category(std::string_view s) {
  auto lower_alnum = [](char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); };
  if (s.empty() || s.size() > 64 || !lower_alnum(s[0])) return false;
  for (char c : s)
    if (!lower_alnum(c) && c != '_' && c != '.' && c != '-') return false;
  return true;
}

}  // namespace tayori
