// The completions of requests submitted to the host transport (transport::OutboundTransport), collected by
// index so that a test can wait for them all and check that each came exactly once.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <mutex>
#include <vector>

#include "transport/outbound_transport.hpp"

namespace tayori::transport {

class Completions {
 public:
  explicit Completions(size_t n) : responses_(n), calls_(n, 0) {}
  // The completion of request `i`.
  Completion slot(size_t i) {
    return [this, i](Response r) {
      std::lock_guard lock(mu_);
      responses_[i] = std::move(r);
      ++calls_[i];
      ++done_;
      cv_.notify_all();
    };
  }
  bool wait_all(std::chrono::milliseconds limit = std::chrono::seconds(60)) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, limit, [&] { return done_ >= responses_.size(); });
  }
  Response operator[](size_t i) {
    std::lock_guard lock(mu_);
    return responses_[i];
  }
  Response response(size_t i) { return (*this)[i]; }
  int calls(size_t i) {
    std::lock_guard lock(mu_);
    return calls_[i];
  }
  size_t done() {
    std::lock_guard lock(mu_);
    return done_;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<Response> responses_;
  std::vector<int> calls_;
  size_t done_ = 0;
};

}  // namespace tayori::transport
