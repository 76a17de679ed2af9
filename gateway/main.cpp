// tayori — the command line: serve, check-config, plugins, new-plugin, version. The top of everything:
// it parses the arguments and hands over to app/ (gateway.cpp wires and runs a generation for `serve`,
// new_plugin.cpp writes a plugin scaffold), which returns the process's exit status.
#include <iostream>
#include <string>
#include <vector>

#include "app/gateway.hpp"
#include "app/new_plugin.hpp"

#include <tayori/plugin.h>

namespace {

const char* kUsage =
    "usage:\n"
    "  tayori serve --config FILE [--listen HOST:PORT] [--data-dir DIR]\n"
    "  tayori check-config FILE\n"
    "  tayori plugins --config FILE\n"
    "  tayori new-plugin NAME [--dir DIR]\n"
    "  tayori version\n";

int usage_error(const std::string& message) {
  std::cerr << "tayori: " << message << "\n" << kUsage;
  return 64;  // EX_USAGE
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  if (args.empty()) return usage_error("no command given");
  const std::string command = args[0];
  if (command == "version" || command == "--version") {
    // The ABI of the plugin.h this binary was compiled with, read from the header itself, so it cannot
    // drift from what the loader accepts.
    std::cout << "tayori " << TAYORI_VERSION << " (plugin ABI " << TAYORI_ABI_MAJOR << "." << TAYORI_ABI_MINOR << ")\n";
    return 0;
  }
  if (command == "help" || command == "--help" || command == "-h") {
    std::cout << kUsage;
    return 0;
  }
  if (command == "new-plugin")
    return tayori::app::new_plugin(std::vector<std::string>(args.begin() + 1, args.end()), std::cout, std::cerr);
  if (command == "check-config") {
    if (args.size() != 2) return usage_error("check-config takes one FILE");
    return tayori::app::check_config(args[1]);
  }
  tayori::app::ServeOptions options;
  for (size_t i = 1; i < args.size(); ++i) {
    auto value = [&](const char* flag) -> std::string {
      if (i + 1 >= args.size()) throw std::invalid_argument(std::string(flag) + " needs a value");
      return args[++i];
    };
    try {
      if (args[i] == "--config")
        options.config_path = value("--config");
      else if (args[i] == "--listen" && command == "serve")
        options.listen = value("--listen");
      else if (args[i] == "--data-dir" && command == "serve")
        options.data_dir = value("--data-dir");
      else
        return usage_error("unknown argument \"" + args[i] + "\" for " + command);
    } catch (const std::invalid_argument& e) {
      return usage_error(e.what());
    }
  }
  if (command != "serve" && command != "plugins") return usage_error("unknown command \"" + command + "\"");
  if (options.config_path.empty()) return usage_error(command + " needs --config FILE");
  if (command == "plugins") return tayori::app::list_plugins(options.config_path);
  return tayori::app::serve(options);
}
