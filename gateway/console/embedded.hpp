// The console's files as compiled into the binary: the table that embed_assets.cmake generates at build time
// from assets/ and vendor/ (gateway/CMakeLists.txt names them). Only assets.cpp reads it.
#pragma once

#include <span>
#include <string_view>

namespace tayori::console {

struct EmbeddedFile {
  std::string_view name;   // served as /console/{name}
  std::string_view bytes;  // the file's exact content
};

std::span<const EmbeddedFile> embedded_files();

}  // namespace tayori::console
