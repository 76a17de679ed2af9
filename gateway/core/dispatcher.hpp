// The dispatcher: takes due messages from the store, chooses a channel, hands the delivery to the
// channel's plugin and records what happened. The decisions (which channel, what an outcome means for
// the message) are pure functions below, tested alone; the Dispatcher class only does the I/O around them.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "common/time.hpp"
#include "config/config.hpp"
#include "core/clearance.hpp"
#include "core/intake.hpp"
#include "core/message.hpp"
#include "links/links.hpp"
#include "plugin/channel.hpp"
#include "render/renderer.hpp"
#include "store/store.hpp"

namespace tayori::core {

// ---- Pure decisions ------------------------------------------------------------------------------

// The channel the policy chose for this attempt (policy::Decision), as the attempt records it.
struct ChannelChoice {
  int channel_index = 0;
  std::string channel;
  std::string contact;
  Json skipped = Json::array();  // channels passed over on the way, with why
};
ChannelChoice choice_of(const policy::Decision& decision);

// What one attempt's outcome means for the message: the transition to record (state, events, next due).
// A retry waits random(0, min(cap, base * 2^n)) (full jitter), or the provider's Retry-After; once the
// channel's budget (`retry`: max_attempts, max_age) is spent the next channel takes over, and after the
// last the message is dead. `jitter` in [0,1) is the random draw; tests pass a fixed value.
store::Transition decide_after_attempt(const store::MessageRecord& record, const Message& message,
                                       const ChannelChoice& choice, const plugin::DeliveryOutcome& outcome,
                                       const config::RetryPolicy& retry, int64_t dispatched_at_ms, int64_t now_ms,
                                       double jitter);

// A message that cannot be attempted at all (unreadable): fail it, saying why.
store::Transition fail_before_attempt(const store::MessageRecord& record, const std::string& reason,
                                      const std::string& detail_json);

// The gateway itself failed while handling a claimed message (an exception: a store read that failed, stored
// data it could not use). Retried with the dispatcher's retry budget, counting every claim of the message, and
// dead once `max_attempts` have failed: a message that always fails ends as a dead letter an operator can
// read (`last_reason`) and replay, instead of failing again forever.
store::Transition decide_after_error(const store::MessageRecord& record, const std::string& what,
                                     const config::RetryPolicy& retry, int64_t now_ms, double jitter);

// What a policy verdict other than "send" means for the message: deferred (scheduled again, with the
// rule and the local time it reopens) or suppressed (final, with the reason and the rule).
store::Transition decide_without_attempt(const store::MessageRecord& record, const policy::Decision& decision);

// The delivery handed to a plugin, built from the message and its channel choice.
plugin::DeliveryRequest make_delivery(const store::MessageRecord& record, const Message& message,
                                      const ChannelChoice& choice);

// What the dispatcher made of one delivery's outcome (metrics: retries by channel and cause, dead letters).
using OutcomeListener =
    std::function<void(const std::string& channel, const plugin::DeliveryOutcome& outcome, const store::Transition& t)>;

// ---- The loop ------------------------------------------------------------------------------------

class Dispatcher {
 public:
  Dispatcher(store::Store& store, const plugin::Registry& channels, const Clock& clock,
             config::DispatcherConfig config, Clearance& clearance, const render::TemplateStore* templates,
             bool missing_variable_is_error);
  ~Dispatcher();

  void start();
  // Stops claiming; puts back what was claimed but not started; waits up to `grace_ms` for deliveries in
  // flight to finish and be recorded. False when some are still running at the deadline: the threads are
  // still running them, and a process that exits anyway leaves them `dispatched` for the next start to
  // requeue (requeue_in_flight). Without a deadline it waits for them all.
  bool stop(int64_t grace_ms = -1);
  void wake();   // something new is in the store: look now instead of at the next poll

  // ---- Hand-over of fresh messages (the intake's fast path) ----
  // Intake asks for room for `wanted` messages that are due now, stores that many with
  // NewMessage::claim, and hands the claims over once they are committed. Room counts as in flight, so
  // the claim loop and the hand-over share one bound (claim capacity). 0 when not running, stopping, or
  // while due messages wait in the store: those go first (they are older), and new ones queue behind them.
  int reserve(int wanted);
  // The committed claims of a reserve(`reserved`) (fewer when some were duplicates, none when the write
  // failed). After stop() they go back to `scheduled`, their attempt given back, for the next dispatcher.
  void hand_over(std::vector<Claim> claims, int reserved);
  // Set before start().
  void set_outcome_listener(OutcomeListener listener) { listener_ = std::move(listener); }
  // What tests wait for instead of for time to pass (the loop, the workers and the store's writer are threads
  // of their own). Set before start(); each runs on whichever thread made the change, possibly under the
  // dispatcher's lock: it must be quick, not throw, and not call back into the dispatcher.
  struct Observer {
    // A round of the claim loop ended, or failed; it now sleeps `sleep_ms` (0: it goes on at once) unless woken.
    std::function<void(int64_t sleep_ms)> round_ended;
    // Room was reserved, handed over or freed, the dispatcher began to stop, or the store answered a
    // transition this dispatcher recorded (that answer may come after the dispatcher is gone).
    std::function<void()> changed;
  };
  void set_observer(Observer observer) {
    observer_ = std::make_shared<const Observer>(std::move(observer));
  }
  // Set before start(): signs the response options' refs and links (core/inbound.hpp mint_responses),
  // valid for `ttl_ms`. Without it options go out with no ref or url.
  void set_links(links::LinkSigner links, int64_t ttl_ms) {
    links_ = std::move(links);
    link_ttl_ms_ = ttl_ms;
  }
  // Transitions the store could not record yet (disk full, I/O error); retried until it can.
  int64_t unrecorded() const;

  int64_t in_flight() const { return in_flight_; }

 private:
  void run();
  // One round of the claim loop, under `lock` (on mutex_) on entry and on return: claims what is due when
  // there is room, then sleeps until something may be due. False when the claim's write failed (logged and
  // counted as a failed round): the loop pauses as after a throw. Throws what a store read throws.
  bool claim_round(std::unique_lock<std::mutex>& lock, int64_t& looked_at_ms);
  // Reads the store's earliest due time into next_due_ms_ (with `lock` released meanwhile) unless a wake-up came
  // since `changes`; notes when it looked.
  void read_next_due(std::unique_lock<std::mutex>& lock, uint64_t changes, int64_t now_ms, int64_t& looked_at_ms);
  struct Sending;  // a message cleared and handed to its channel, until its verdict is recorded
  void work();
  // The stages up to the channel, on a worker: validate (the stored payload, unless intake handed the message
  // over `validated`), complete the recipient (from the stored profile, or the one intake's commit left:
  // `profile`), clear (consent, suppression, quiet hours, caps), choose the channel, render, deliver. True when
  // the message went to a channel: finish() then records its verdict and frees its room. Throws only before
  // that.
  bool process(const store::MessageRecord& record, std::optional<Message> validated,
               const std::optional<store::RecipientProfile>& profile);
  // The channel's verdict, on the thread that heard it (the transport's, a batch leader's, or the worker's):
  // records it (record_outcome) and frees the message's room.
  void finish(std::shared_ptr<Sending> sending, const plugin::DeliveryOutcome& outcome);
  void record_outcome(const Sending& sending, const plugin::DeliveryOutcome& outcome);
  // The gateway itself failed while handling a claimed message (decide_after_error).
  void fail_inside(const store::MessageRecord& record, const std::string& what);
  // Records `t`; when the store cannot, keeps it to try again (the message stays `dispatched` meanwhile,
  // and a restart requeues it).
  void record(store::Transition t, int64_t now_ms);
  void record_again(int64_t now_ms);
  // Whether the store may hold messages due by `now_ms` (under mutex_).
  bool store_due(int64_t now_ms) const;
  // A worker finished one: frees its room, and wakes the loop when there is room for something due.
  void room_freed();
  // Claims this dispatcher holds but will not start (it is stopping): back to `scheduled`, due now.
  void put_back(const std::deque<Claim>& unstarted, const char* why);

  store::Store& store_;
  const plugin::Registry& channels_;
  const Clock& clock_;
  config::DispatcherConfig config_;
  Clearance& clearance_;
  const render::TemplateStore* templates_;
  bool missing_variable_is_error_;

  std::mutex mutex_;
  std::condition_variable wake_;
  std::condition_variable work_ready_;
  std::condition_variable idle_;  // in_flight_ reached 0 (stop waits for it)
  std::deque<Claim> work_;
  bool started_ = false;
  bool stopping_ = false;
  bool woken_ = false;
  // The last claim found as many due messages as it asked for, or a reservation was cut short: more are
  // waiting in the store, and reserve() leaves them the room.
  bool backlog_ = false;
  // The earliest due time of the store's queue as far as this dispatcher knows (0: unknown, look), and whether it
  // was read from the store with no wake-up since (a wake-up or the poll interval makes it a guess to check).
  int64_t next_due_ms_ = 0;
  bool next_due_read_ = false;
  uint64_t store_changes_ = 0;  // wake-ups and scheduling records: a read of next_due older than one is stale
  int64_t capacity_ = 1;        // claimed or reserved messages held at once (dispatcher.max_in_flight)
  int64_t refill_at_ = 1;       // the loop claims when this much room is free
  std::atomic<int64_t> in_flight_{0};
  OutcomeListener listener_;
  std::shared_ptr<const Observer> observer_ = std::make_shared<const Observer>();
  void changed() const {
    if (observer_->changed) observer_->changed();
  }
  links::LinkSigner links_;
  int64_t link_ttl_ms_ = 60LL * 86'400'000;
  // Transitions the store refused, shared with the store's completions (record): they may run after the
  // dispatcher is gone.
  struct Unrecorded {
    std::mutex mutex;
    std::vector<store::Transition> transitions;
  };
  std::shared_ptr<Unrecorded> unrecorded_ = std::make_shared<Unrecorded>();
  int64_t next_record_again_ms_ = 0;
  std::thread loop_;
  std::vector<std::thread> workers_;
};

}  // namespace tayori::core
