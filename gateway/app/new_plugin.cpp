// The plugin scaffold (new_plugin.hpp), `tayori new-plugin NAME`: the names, the target folder and the
// template's placeholders filled in. main.cpp calls it; it writes a plugin folder from the files of
// app/plugin_template/ compiled into the binary, outside the message flow, for a plugin author's first build.
#include "app/new_plugin.hpp"

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <regex>

namespace tayori::app {

namespace {

namespace fs = std::filesystem;

// "acme_push" -> "AcmePush": the plugin class and the test suite's name.
std::string class_name(const std::string& name) {
  std::string out;
  bool upper = true;
  for (char c : name) {
    if (c == '_') {
      upper = true;
      continue;
    }
    out += upper && c >= 'a' && c <= 'z' ? static_cast<char>(c - 'a' + 'A') : c;
    upper = false;
  }
  return out;
}

std::string filled(std::string text, const std::string& name) {
  std::string upper = name;
  for (char& c : upper) c = (c >= 'a' && c <= 'z') ? static_cast<char>(c - 'a' + 'A') : c;
  const std::pair<std::string, std::string> fields[] = {{"{{name}}", name}, {"{{Class}}", class_name(name)},
                                                        {"{{NAME}}", upper}};
  for (const auto& [token, value] : fields)
    for (size_t at = text.find(token); at != std::string::npos; at = text.find(token, at + value.size()))
      text.replace(at, token.size(), value);
  return text;
}

std::string file_name(const std::string& template_path, const std::string& name) {
  if (template_path == "plugin.cpp") return name + ".cpp";
  if (template_path == "plugin_test.cpp") return name + "_test.cpp";
  return template_path;
}

// Where this binary is installed (PREFIX/bin/tayori -> PREFIX): the CMAKE_PREFIX_PATH the next steps name.
std::string install_prefix() {
  std::error_code ec;
  fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  if (ec) return "/usr/local";
  return exe.parent_path().parent_path().string();
}

}  // namespace

int new_plugin(const std::vector<std::string>& args, std::ostream& out, std::ostream& err) {
  std::string name, dir;
  for (size_t i = 0; i < args.size(); ++i) {
    if (args[i] == "--dir") {
      if (i + 1 >= args.size()) {
        err << "tayori new-plugin: --dir needs a folder\n";
        return 64;
      }
      dir = args[++i];
    } else if (name.empty()) {
      name = args[i];
    } else {
      err << "tayori new-plugin: unexpected argument \"" << args[i] << "\"\n";
      return 64;
    }
  }
  // The loader's rule for a plugin name (docs/architecture.md §6.3): it is also a file name and a C identifier.
  if (!std::regex_match(name, std::regex("^[a-z][a-z0-9_]*$"))) {
    err << "tayori new-plugin: NAME \"" << name << "\" must be [a-z][a-z0-9_]* (it names the .so and the channel's plugin:)\n"
        << "usage: tayori new-plugin NAME [--dir DIR]\n";
    return 64;
  }
  if (dir.empty()) dir = name;
  std::error_code ec;
  if (fs::exists(dir, ec) && !fs::is_empty(dir, ec)) {
    err << "tayori new-plugin: " << dir << " exists and is not empty; nothing was written\n";
    return 73;
  }
  fs::create_directories(dir, ec);
  if (ec) {
    err << "tayori new-plugin: cannot create " << dir << ": " << ec.message() << "\n";
    return 73;
  }
  for (const TemplateFile& t : kPluginTemplate) {
    fs::path path = fs::path(dir) / file_name(t.path, name);
    std::ofstream file(path, std::ios::binary);
    file << filled(t.text, name);
    if (!file.flush()) {
      err << "tayori new-plugin: cannot write " << path.string() << "\n";
      return 73;
    }
    out << "wrote " << path.string() << "\n";
  }
  out << "\nnext:\n"
      << "  cmake -S " << dir << " -B " << dir << "/build -DCMAKE_PREFIX_PATH=" << install_prefix() << "\n"
      << "  cmake --build " << dir << "/build\n"
      << "  ctest --test-dir " << dir << "/build --output-on-failure\n";
  return 0;
}

}  // namespace tayori::app
