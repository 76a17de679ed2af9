// The YAML configuration loader: any text is a config or a list of diagnostics (file:line:col: key.path:
// message), never a crash. Every *_env variable reads "k"; relative paths resolve in an empty scratch folder.
#include <cstddef>
#include <cstdint>
#include <string>

#include "fuzz_support.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace tayori;
  auto loaded = config::load_string(std::string(fuzz::text(data, size)), "fuzz.yaml", fuzz::scratch_dir(),
                                    [](const std::string&) { return std::string("k"); });
  for (const auto& e : loaded.errors) (void)e.to_string();
  if (loaded.config) (void)config::check_listen(loaded.config->server.listen);
  return 0;
}
