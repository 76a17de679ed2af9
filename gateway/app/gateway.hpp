// Wires the gateway together: config -> channels (plugins) -> store -> dispatcher -> API -> HTTP server,
// and takes it apart in the reverse order on SIGTERM/SIGINT.
#pragma once

#include <optional>
#include <string>

namespace tayori::app {

struct ServeOptions {
  std::string config_path;
  std::optional<std::string> listen;    // overrides server.listen
  std::optional<std::string> data_dir;  // overrides store.data_dir
};

// Runs until SIGINT or SIGTERM. Returns the process exit code (2: configuration refused).
int serve(const ServeOptions& options);

// `tayori check-config FILE`: prints every problem as FILE:LINE:COL: key.path: message.
int check_config(const std::string& path);

// `tayori plugins --config FILE`: each configured channel's plugin with its ABI version and settings.
int list_plugins(const std::string& path);

}  // namespace tayori::app
