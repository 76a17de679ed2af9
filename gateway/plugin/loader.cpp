// Opening plugin libraries and refusing the ones the host cannot trust. This runs before any message
// flows: build_registry (registry.cpp) finds each configured channel's plugin here, at start-up and on
// reload, so a plugin built for another ABI, with a short descriptor, a missing entry symbol or an
// impossible set of callbacks stops the configuration from loading instead of failing a delivery later
// (docs/architecture.md §6.3). A refusal names the file and, for version problems, both versions and what to do.
#include "plugin/channel.hpp"
#include "plugin/marshal.hpp"

#include <dlfcn.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <regex>

namespace tayori::plugin {

namespace {

std::string version_text(unsigned major, unsigned minor) { return std::to_string(major) + "." + std::to_string(minor); }

// A plugin the host cannot trust is a configuration error: the operator's to fix, never worth retrying.
Error refused(std::string message) { return Error{ErrorCode::invalid, std::move(message)}; }

}  // namespace

Result<std::shared_ptr<Library>> Library::open(const std::string& path) {
  // RTLD_NOW: an unresolved symbol fails here, not at the first delivery. RTLD_LOCAL: two plugins never
  // see each other's symbols.
  void* handle = ::dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (handle == nullptr) {
    const char* why = ::dlerror();
    return refused("cannot load plugin \"" + path + "\": " + (why ? why : "unknown dlopen error"));
  }
  std::shared_ptr<Library> lib(new Library());
  lib->handle_ = handle;
  lib->path_ = path;
  auto entry = reinterpret_cast<tayori_plugin_entry_fn>(::dlsym(handle, TAYORI_PLUGIN_ENTRY_SYMBOL));
  if (entry == nullptr) {
    return refused("incompatible plugin \"" + path +
                   "\": it does not export " TAYORI_PLUGIN_ENTRY_SYMBOL
                   " (is it a Tayori plugin? build it with TAYORI_PLUGIN from tayori/plugin.hpp)");
  }
  const tayori_plugin* d = entry();
  if (d == nullptr) {
    return refused("incompatible plugin \"" + path + "\": " TAYORI_PLUGIN_ENTRY_SYMBOL " returned NULL");
  }
  // Read the three leading fields first: they are the same in every ABI version.
  if (d->abi_major != TAYORI_ABI_MAJOR) {
    return refused("incompatible plugin \"" + path + "\": version mismatch: the host speaks plugin ABI " +
                   version_text(TAYORI_ABI_MAJOR, TAYORI_ABI_MINOR) + ", the plugin was built for ABI " +
                   version_text(d->abi_major, d->abi_minor));
  }
  // A newer minor is refused; an older one loads (docs/architecture.md §6.2). A newer minor may rely on host
  // behaviour this host lacks: a flag in an outcome, a new status or event kind. This host would read the
  // plugin's structs only as far as it knows them and silently ignore the rest: a flag the plugin sets is
  // never acted on, a status it returns is read as another, and a silent misreading loses messages. An
  // older plugin is safe because fields are only ever appended: everything it knows is where it was, and
  // what came after reads as zero.
  if (d->abi_minor > TAYORI_ABI_MINOR) {
    const std::string host = version_text(TAYORI_ABI_MAJOR, TAYORI_ABI_MINOR);
    return refused("incompatible plugin \"" + path + "\": it was built for plugin ABI " +
                   version_text(d->abi_major, d->abi_minor) + " but this host speaks " + host +
                   "; build it against the " + host + " headers (the SDK this host installs) or upgrade Tayori");
  }
  if (d->struct_size < TAYORI_PLUGIN_V1_0_SIZE) {
    return refused("incompatible plugin \"" + path + "\": its descriptor is " + std::to_string(d->struct_size) +
                   " bytes, shorter than the " + std::to_string(TAYORI_PLUGIN_V1_0_SIZE) + " bytes of ABI " +
                   version_text(TAYORI_ABI_MAJOR, 0) + " (plugin says ABI " + version_text(d->abi_major, d->abi_minor) +
                   ")");
  }
  // An older minor's shorter descriptor: the fields appended since stay zero (NULL callbacks, no flags). The
  // min() still guards a descriptor that claims this minor with a longer size than ours.
  std::memcpy(&lib->descriptor_, d, std::min<size_t>(d->struct_size, sizeof(tayori_plugin)));
  const tayori_plugin& p = lib->descriptor_;
  std::string problem;
  if (p.name == nullptr || !std::regex_match(p.name, std::regex("^[a-z][a-z0-9_]*$")))
    problem = "its name \"" + std::string(p.name ? p.name : "(null)") + "\" is not [a-z][a-z0-9_]*";
  else if (p.version == nullptr)
    problem = "it has no version";
  else if (p.on_create == nullptr || p.on_destroy == nullptr)
    problem = "on_create and on_destroy are required";
  else if ((p.on_build == nullptr) != (p.on_classify == nullptr))
    problem = "on_build and on_classify come as a pair";
  else if (p.on_build == nullptr && p.on_deliver == nullptr)
    problem = "it implements neither on_build/on_classify nor on_deliver, so it cannot deliver anything";
  else if (p.batch_max > 0 && p.on_build_batch == nullptr)
    problem = "batch_max is " + std::to_string(p.batch_max) + " but on_build_batch is NULL";
  else if (p.on_build_batch != nullptr && p.on_build == nullptr)
    problem = "on_build_batch needs the on_build/on_classify pair (a batch is classified per delivery)";
  else if (p.settings_count > 0 && p.settings == nullptr)
    problem = "settings_count is set but settings is NULL";
  for (size_t i = 0; problem.empty() && i < p.settings_count; ++i) {
    const tayori_setting_spec& s = p.settings[i];
    std::string which = "setting #" + std::to_string(i);
    if (s.name == nullptr || !std::regex_match(s.name, std::regex("^[a-z][a-z0-9_]*$")))
      problem = which + " has no name or one that is not [a-z][a-z0-9_]*";
    else if (auto type = abi_value(s.type); type < TAYORI_SETTING_STRING || type > TAYORI_SETTING_PATH)
      problem = "setting " + std::string(s.name) + " has a type this host does not know (" + std::to_string(type) + ")";
    else if (type == TAYORI_SETTING_SECRET && s.default_value != nullptr)
      problem = "setting " + std::string(s.name) + " is a secret and cannot have a default";
  }
  if (!problem.empty()) {
    return refused("incompatible plugin \"" + path + "\": " + problem);
  }
  return lib;
}

Library::~Library() {
  if (handle_ != nullptr) ::dlclose(handle_);
}

std::string find_plugin(const std::string& name_or_path, const std::vector<std::string>& dirs,
                        const std::string& base_dir, std::string& searched) {
  namespace fs = std::filesystem;
  if (name_or_path.find('/') != std::string::npos || name_or_path.ends_with(".so")) {
    std::string p = config::resolve_path(base_dir, name_or_path);
    searched = p;
    return fs::exists(p) ? p : std::string();
  }
  searched.clear();
  for (const auto& dir : dirs) {
    fs::path candidate = fs::path(dir) / (name_or_path + ".so");
    searched += (searched.empty() ? "" : ", ") + candidate.string();
    if (fs::exists(candidate)) return candidate.string();
  }
  if (dirs.empty()) searched = "(no plugin_dirs configured)";
  return {};
}

}  // namespace tayori::plugin
