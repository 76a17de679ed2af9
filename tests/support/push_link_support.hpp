// What the push plugins' deep-link tests share (tests/unit/plugins/push_apns/apns_link_test.cpp and
// push_fcm/fcm_link_test.cpp): a directory for a key file, a host whose JWT signing and token exchange stand
// in for the real ones, and a delivery that carries a link and an open ref.
#pragma once

#include <tayori/testing.hpp>

#include <filesystem>
#include <fstream>
#include <optional>
#include <string>

#include <unistd.h>

namespace tayori::test::push_link {

inline std::string plugin_path(const std::string& name) { return std::string(TAYORI_PLUGIN_DIR) + "/" + name + ".so"; }

// A directory of the test's own, removed with it.
struct Files {
  explicit Files(const std::string& tag)
      : dir(std::filesystem::temp_directory_path() / ("tayori-" + tag + "-" + std::to_string(::getpid()))) {
    std::filesystem::create_directories(dir);
  }
  ~Files() { std::filesystem::remove_all(dir); }
  std::string write(const std::string& name, const std::string& text) const {
    std::ofstream((dir / name).string()) << text;
    return (dir / name).string();
  }
  std::filesystem::path dir;
};

inline void fake_signing(tayori::testing::FakeHost& h) {
  h.sign_jwt = [](const std::string& alg, const std::string&, const std::string&, const std::string&) {
    return std::optional<std::string>(alg + ".jwt");
  };
  h.exchange = [](const tayori::testing::Request&) {
    return tayori::testing::Response(200, {}, R"({"access_token":"ya29.t","expires_in":3600})");
  };
}

// A notification with `link` (none when empty) and the open ref "OPEN.REF".
inline tayori::testing::Delivery with_link(const std::string& link) {
  tayori::testing::Delivery d;
  d.contact = "0123456789abcdef0123456789abcdef";
  d.content = {{"title", "セール"}, {"body", "今日まで"}};
  if (!link.empty()) d.content.emplace_back("link", link);
  d.content.emplace_back("open_ref", "OPEN.REF");
  return d;
}

}  // namespace tayori::test::push_link
