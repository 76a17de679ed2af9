// A minimal structured logger to stderr: one line per event, "ts level component: message".
#pragma once

#include <string_view>

namespace tayori::log {

enum class Level { debug = 0, info = 1, warn = 2, error = 3 };

void set_min_level(Level level);
void write(Level level, std::string_view component, std::string_view message);

inline void info(std::string_view component, std::string_view message) { write(Level::info, component, message); }
inline void warn(std::string_view component, std::string_view message) { write(Level::warn, component, message); }
inline void error(std::string_view component, std::string_view message) { write(Level::error, component, message); }

}  // namespace tayori::log
