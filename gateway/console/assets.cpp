// Looks up the console's embedded files (embedded.hpp) by name and gives each its media type and ETag.
// The files are compiled in at build time (embed_assets.cmake); api/console_api.cpp serves them at
// /console, and the page then reads the public API like any client.
#include "console/assets.hpp"

#include <vector>

#include "console/embedded.hpp"
#include "crypto/crypto.hpp"

namespace tayori::console {

namespace {

// Browsers refuse a script or a stylesheet served under another type when the response says nosniff, so every
// extension the console uses is named here; an unknown one is served as bytes rather than guessed.
std::string_view content_type_of(std::string_view name) {
  struct Type {
    std::string_view extension, content_type;
  };
  static constexpr Type kTypes[] = {
      {".html", "text/html; charset=utf-8"}, {".css", "text/css; charset=utf-8"},
      {".js", "text/javascript; charset=utf-8"}, {".svg", "image/svg+xml"},
      {".png", "image/png"},
  };
  for (const auto& t : kTypes)
    if (name.ends_with(t.extension)) return t.content_type;
  return "application/octet-stream";
}

const std::vector<Asset>& assets() {
  static const std::vector<Asset> all = [] {
    std::vector<Asset> out;
    for (const auto& f : embedded_files()) out.push_back({f.name, content_type_of(f.name), f.bytes, "\"" + crypto::sha256_hex(f.bytes).substr(0, 32) + "\""});
    return out;
  }();
  return all;
}

}  // namespace

const Asset* find_asset(std::string_view name) {
  for (const auto& a : assets())
    if (a.name == name) return &a;
  return nullptr;
}

}  // namespace tayori::console
