// What the batching tests (channel_batch_test.cpp, line_multicast_test.cpp) share: deliveries handed to a
// channel from many threads at the same instant, as the dispatcher's workers do, and distinct hex ids.
#pragma once

#include <cstdio>
#include <future>
#include <latch>
#include <string>
#include <vector>

#include "plugin/channel.hpp"

namespace tayori::plugin::testing {

// Calls channel.deliver for every request, each from its own thread; the threads are all started before
// any of them delivers (a latch), so they meet within any batch window. Outcomes in request order.
inline std::vector<DeliveryOutcome> deliver_concurrently(Channel& channel,
                                                         const std::vector<DeliveryRequest>& requests) {
  std::latch start(static_cast<std::ptrdiff_t>(requests.size()));
  std::vector<std::future<DeliveryOutcome>> pending;
  for (const DeliveryRequest& r : requests)
    pending.push_back(std::async(std::launch::async, [&channel, &start, &r] {
      start.arrive_and_wait();
      return channel.deliver(r);
    }));
  std::vector<DeliveryOutcome> outcomes;
  for (auto& p : pending) outcomes.push_back(p.get());
  return outcomes;
}

// `prefix` and 32 lower-case hex digits made of `salt` and `n`: with "U" a LINE user id, with "" a
// dispatcher-style delivery id.
inline std::string hex_id(const std::string& prefix, unsigned n, unsigned salt = 0) {
  char digits[33];
  std::snprintf(digits, sizeof digits, "%08x%08x%016x", salt, 0xba7c4u, n);
  return prefix + digits;
}

}  // namespace tayori::plugin::testing
