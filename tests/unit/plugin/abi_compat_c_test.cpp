// ABI compatibility, C side (docs/architecture.md §6.2): a plugin written in C reads a delivery only as far as
// the struct_size the host filled in. (Plugins built against the frozen older headers, delivering through
// the real host: tests/integration/plugin/abi_compat_test.cpp.)
#include <gtest/gtest.h>

#include <cstddef>
#include <string>

#include "plugin/channel.hpp"

namespace tayori::plugin {
namespace {

// A C plugin asks TAYORI_HAS_FIELD (plugin.h) which fields a delivery carries: all of them from this host,
// none of 1.1's or 1.2's from a delivery as a 1.0 host fills it (a struct_size that ends before them).
TEST(AbiCompatC, TayoriHasFieldAnswersInCForTheDeliveryItIsGiven) {
  auto opened = Library::open(std::string(TAYORI_FIXTURE_DIR) + "/fixture_c_field_presence.so");
  ASSERT_TRUE(opened) << opened.error().message;
  std::shared_ptr<Library> lib = *opened;
  const tayori_plugin& d = lib->descriptor();
  void* instance = nullptr;
  ASSERT_EQ(d.on_create(nullptr, nullptr, 0, &instance, {nullptr, 0}), TAYORI_OK);
  auto presence = [&](uint32_t struct_size) {
    tayori_delivery delivery{};
    delivery.struct_size = struct_size;
    char reason[64] = {0}, provider_id[64] = {0};
    tayori_outcome outcome{sizeof outcome, TAYORI_OUTCOME_RETRY, 0,           0,
                           reason,         sizeof reason,        provider_id, sizeof provider_id};
    EXPECT_EQ(d.on_deliver(instance, &delivery, &outcome), TAYORI_OK);
    return std::string(provider_id);
  };
  EXPECT_EQ(presence(sizeof(tayori_delivery)), "unsubscribe_url=1 responses=1");
  EXPECT_EQ(presence(offsetof(tayori_delivery, responses)), "unsubscribe_url=1 responses=0");        // 1.1
  EXPECT_EQ(presence(offsetof(tayori_delivery, unsubscribe_url)), "unsubscribe_url=0 responses=0");  // 1.0
  d.on_destroy(instance);
}

}  // namespace
}  // namespace tayori::plugin
