// The simulator's core: routes a request to its provider, records it, applies the injected faults, and
// serves the control API. Both listeners call Simulator::dispatch, the one transport-independent entry point.
//
// Control API (never recorded, never faulted):
//   GET    /_sim/requests[?provider=P]   every provider request received, oldest first (JSON array)
//   DELETE /_sim/requests                forget them
//   GET    /_sim/faults                  the fault table, per scope
//   POST   /_sim/faults                  add faults (sim_faults.hpp documents the JSON)
//   DELETE /_sim/faults                  clear them
//   POST   /_sim/webhooks/line           send a signed LINE webhook   (sim_line.cpp)
//   POST   /_sim/webhooks/twilio         send a signed Twilio webhook (sim_twilio.cpp)
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <queue>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "sim_faults.hpp"
#include "sim_types.hpp"

namespace tayori::sim {

// Runs tasks on a small pool of worker threads, each no earlier than its due time: delayed answers (injected
// latency), signed webhooks and status callbacks. Listener threads never sleep or block on the network.
class Scheduler {
 public:
  explicit Scheduler(int workers);
  ~Scheduler() { stop(); }
  Scheduler(const Scheduler&) = delete;
  Scheduler& operator=(const Scheduler&) = delete;

  void after(int64_t delay_ms, std::function<void()> task);
  // Joins the workers and destroys the tasks not yet run (their completions drop their connections).
  void stop();

 private:
  struct Item {
    int64_t due_ns;
    uint64_t seq;  // FIFO among equal due times
    std::shared_ptr<std::function<void()>> task;
    bool operator>(const Item& o) const { return due_ns != o.due_ns ? due_ns > o.due_ns : seq > o.seq; }
  };
  void work();

  std::mutex mu_;
  std::condition_variable cv_;
  std::priority_queue<Item, std::vector<Item>, std::greater<Item>> queue_;
  uint64_t seq_ = 0;
  bool stopping_ = false;
  std::vector<std::thread> threads_;
};

// A listener's request, decided: an answer now or later, a deferred job, or a dropped connection.
struct Outcome {
  std::optional<SimResponse> response;    // nullopt with no `deferred`: close without answering
  int64_t delay_ms = 0;                   // injected latency
  std::function<SimResponse()> deferred;  // when set: run on a worker, its result is the answer
};

class Simulator final : public ProviderContext {
 public:
  // `record_limit`: how many of the latest requests GET /_sim/requests keeps (kRecordAll: every one; a soak of
  // millions would otherwise grow without end). Every request is counted whatever the limit (GET /_sim/stats).
  static constexpr int64_t kRecordAll = -1;
  Simulator(std::vector<std::unique_ptr<Provider>> providers, uint64_t seed, Scheduler& scheduler,
            int64_t record_limit = kRecordAll);

  // The entry point both listeners use. `done` is called exactly once, possibly from another thread.
  void dispatch(SimRequest request, Completion done);
  // The decision alone, a function of the request and the simulator's state (recording, faults). The record
  // keeps the request itself (no copy of its body per request).
  Outcome answer(std::shared_ptr<const SimRequest> request);

  // Applies a fault document (as POST /_sim/faults does); returns an error text, empty on success.
  std::string apply_faults(const nlohmann::json& doc);

  // ProviderContext
  int64_t now_ms() const override;
  std::optional<SimResponse> contact_fault(const Provider& provider, std::string_view contact) override;
  std::optional<std::string> contact_code(const Provider& provider, std::string_view contact) override;
  void run_later(int64_t delay_ms, std::function<void()> task) override;

 private:
  Outcome control(const SimRequest& request);
  Provider* route(std::string_view path) const;
  void record(std::shared_ptr<const SimRequest> request, const Provider* provider);
  std::vector<std::string> scope_names() const;

  std::vector<std::unique_ptr<Provider>> providers_;
  Scheduler& scheduler_;
  std::mutex mu_;  // guards everything below; never held while a provider runs
  FaultTable faults_;
  const int64_t record_limit_;
  // A request as it came, turned into JSON only when GET /_sim/requests asks: a bench records every one of
  // hundreds of thousands, and building a Json of each was a tenth of the simulator's time per request.
  struct Recorded {
    uint64_t id;
    const char* provider;  // nullptr: no provider serves the path
    int64_t time_ms;
    std::shared_ptr<const SimRequest> request;
  };
  static nlohmann::json to_json(const Recorded& recorded);

  std::deque<Recorded> received_;                                // the latest record_limit_ requests
  std::map<std::string, uint64_t, std::less<>> received_count_;  // every request since the last DELETE, by provider
  uint64_t next_request_id_ = 1;
};

}  // namespace tayori::sim
