// DiskFullFault: store.max_size caps the database (SQLite max_page_count), so a write past it fails like a
// full disk. Intake answers 503 naming the problem once the store is full; every message acknowledged before
// is still there and is delivered; restarted with a larger max_size, the gateway takes messages again.
#include <gtest/gtest.h>

#include <cctype>

#include "fault_harness.hpp"

namespace tayori::testing::fault {
namespace {

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

TEST(DiskFullFault, IntakeAnswers503WhenTheStoreIsFullAndNothingAcknowledgedIsLost) {
  constexpr size_t kPadding = 4000;  // LINE takes 5,000 characters: about 4 KiB per message, ~250 fill 1 MiB
  const int cap = env_int("TAYORI_FAULT_DISK_MESSAGES", 5000);  // give up if 1 MiB never fills
  set_channel_secrets();
  Sim sim(all_providers(), false);
  TempDir dir;
  const std::string channels = "channels:\n" + line_channel(sim, "line") + kConsent;
  const std::string data_dir = dir.file("data");
  std::set<std::string> acked;
  HttpResult full;
  int after_full = 0;
  size_t before_full = 0;
  {
    Gateway gw(dir, "store:\n  max_size: 1MiB\n" + channels, data_dir);
    gw.start();
    HttpClient http;
    for (int i = 0; i < cap && full.status == 0; ++i) {
      std::string id = "d-" + std::to_string(i);
      HttpResult r = gw.post_json(http, "/v1/messages", fault_message(id, "line", kPadding));
      if (r.status == 202)
        acked.insert(id);
      else if (r.status == 503)
        full = r;
      else
        FAIL() << id << ": " << r.status << " " << r.body;
    }
    ASSERT_EQ(full.status, 503) << "the 1 MiB store took " << acked.size() << " messages of 4 KiB without filling";
    before_full = acked.size();
    const std::string body = lower(full.body);
    EXPECT_TRUE(body.find("full") != std::string::npos || body.find("max_size") != std::string::npos ||
                body.find("space") != std::string::npos)
        << "the 503 does not say the store is full: " << full.body;
    // Still (about) full: the next ones are mostly refused too (a freed page may take one more), and the
    // gateway keeps serving reads.
    for (int i = 0; i < 5; ++i) {
      std::string id = "late-" + std::to_string(i);
      HttpResult r = gw.post_json(http, "/v1/messages", fault_message(id, "line", kPadding));
      if (r.status == 202)
        acked.insert(id);
      else if (r.status == 503)
        ++after_full;
      else
        ADD_FAILURE() << id << ": " << r.status << " " << r.body;
    }
    std::vector<std::string> lost;
    for (const auto& id : acked)
      if (gw.get(http, "/v1/messages/" + id).status != 200) lost.push_back(id);
    ASSERT_TRUE(lost.empty()) << lost.size() << " acknowledged messages are gone, e.g. " << lost.front();
    gw.stop(SIGTERM);
  }

  Gateway gw(dir, "store:\n  max_size: 64MiB\n" + channels, data_dir);
  gw.start();
  HttpClient http;
  auto late = undelivered(gw, acked, std::chrono::seconds(60));
  ASSERT_TRUE(late.empty()) << describe(gw, late);
  auto line = sends_by_message(sim, "line");
  for (const auto& id : acked) EXPECT_FALSE(line[id].empty()) << id << " is delivered but LINE never saw it";
  HttpResult again = gw.post_json(http, "/v1/messages", fault_message("after-resize", "line", kPadding));
  ASSERT_EQ(again.status, 202) << again.body;
  late = undelivered(gw, {"after-resize"}, std::chrono::seconds(15));
  EXPECT_TRUE(late.empty()) << describe(gw, late);
  std::cout << "[DiskFullFault] 1 MiB store full after " << before_full << " messages of ~4 KiB; then " << after_full
            << "/5 more refused with 503; all " << acked.size()
            << " acknowledged delivered after a restart with 64 MiB, intake open again\n";
}

}  // namespace
}  // namespace tayori::testing::fault
