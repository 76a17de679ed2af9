// The dispatcher (dispatcher.hpp): the pure decisions of the pipeline first (channel choice, what an outcome means),
// then the threads: the claim loop, the workers that run a message through clearance, render and the
// channel's plugin, and the recording of each outcome as the store's transition.
#include "core/dispatcher.hpp"

#include <algorithm>
#include <limits>
#include <random>

#include "common/json.hpp"
#include "common/log.hpp"
#include "common/thread_guard.hpp"
#include "common/thread_name.hpp"
#include "core/inbound.hpp"
#include "core/stats.hpp"
#include "crypto/crypto.hpp"

namespace tayori::core {

ChannelChoice choice_of(const policy::Decision& d) {
  ChannelChoice r;
  r.channel_index = d.channel_index;
  r.channel = d.channel;
  r.contact = d.contact;
  if (d.detail.contains("skipped")) r.skipped = d.detail["skipped"];
  return r;
}

namespace {
// A transition of the claim `record` describes, where it is now (its channel and due time): each decision
// below changes what it decides.
store::Transition transition_of(const store::MessageRecord& record) {
  store::Transition t;
  t.message_id = record.id;
  t.recipient_id = record.recipient_id;
  t.message_seq = record.seq;
  t.attempt = record.attempts;
  t.channel = record.channel;
  t.channel_index = record.channel_index;
  t.due_at_ms = record.due_at_ms;
  return t;
}
}  // namespace

store::Transition fail_before_attempt(const store::MessageRecord& record, const std::string& reason,
                                      const std::string& detail_json) {
  store::Transition t = transition_of(record);
  t.to = store::State::failed;
  t.last_reason = reason;
  t.events.push_back({"failed", detail_json});
  return t;
}

store::Transition decide_without_attempt(const store::MessageRecord& record, const policy::Decision& d) {
  store::Transition t = transition_of(record);
  t.last_reason = d.reason;
  t.no_attempt = true;
  if (d.verdict == policy::Verdict::defer) {
    t.to = store::State::scheduled;
    t.due_at_ms = d.until_ms;
    t.events.push_back({"deferred", dump_json(d.detail)});
  } else {
    t.to = store::State::suppressed;
    t.due_at_ms = record.due_at_ms;
    t.events.push_back({"suppressed", dump_json(d.detail)});
  }
  return t;
}

namespace {

// Full jitter (wait = random(0, min(cap, base * 2^n)) after the n-th failed attempt): retries of many messages
// do not synchronise.
int64_t backoff_ms(const config::RetryPolicy& retry, int failed_attempts, double jitter) {
  int n = std::clamp(failed_attempts - 1, 0, 40);
  int64_t ceiling = retry.cap_ms;
  if (n < 40 && retry.base_ms <= (retry.cap_ms >> n)) ceiling = retry.base_ms << n;
  return std::max<int64_t>(1, static_cast<int64_t>(jitter * ceiling));
}

// The channel is done with the message: the next channel in its preference order gets its turn now
// (fallback: event attempt_failed with fallback_to), or, after the last, the message ends in `last`
// (failed or dead, the event of that name). `detail` says why.
void leave_channel(store::Transition& t, const Message& message, const ChannelChoice& choice, Json detail,
                   store::State last, int64_t now_ms) {
  if (choice.channel_index + 1 < static_cast<int>(message.channels.size())) {
    t.to = store::State::scheduled;
    t.channel_index = choice.channel_index + 1;
    t.next_channel = true;
    t.due_at_ms = now_ms;
    detail["fallback_to"] = message.channels[choice.channel_index + 1];
    t.events.push_back({"attempt_failed", dump_json(detail)});
    return;
  }
  t.to = last;
  t.events.push_back({std::string(store::to_string(last)), dump_json(detail)});
}

}  // namespace

store::Transition decide_after_attempt(const store::MessageRecord& record, const Message& message,
                                       const ChannelChoice& choice, const plugin::DeliveryOutcome& outcome,
                                       const config::RetryPolicy& retry, int64_t dispatched_at_ms, int64_t now_ms,
                                       double jitter) {
  store::Transition t = transition_of(record);
  t.channel = choice.channel;
  t.channel_index = choice.channel_index;
  t.contact = choice.contact;
  // The two events of every delivery are written as text (JsonObjectText): a Json built and dumped for each
  // was a tenth of the transport thread's work per message.
  std::string dispatched;
  if (choice.skipped.empty()) {
    dispatched = JsonObjectText().integer("attempt", record.attempts).string("channel", choice.channel).take();
  } else {
    dispatched = dump_json(Json{{"attempt", record.attempts}, {"channel", choice.channel}, {"skipped", choice.skipped}},
                           InvalidUtf8::replace);
  }
  t.events.push_back({"dispatched", std::move(dispatched), dispatched_at_ms});

  switch (outcome.kind) {
    case plugin::OutcomeKind::delivered: {
      t.to = store::State::delivered;
      JsonObjectText d;
      d.string("channel", choice.channel);
      // A provider's id that is not UTF-8 is written with U+FFFD in the event (the row keeps it as given).
      if (!outcome.provider_message_id.empty()) d.string("provider_message_id", outcome.provider_message_id);
      t.provider_message_id = outcome.provider_message_id;  // receipts and replies find the message by it
      t.events.push_back({"delivered", d.take()});
      return t;
    }
    case plugin::OutcomeKind::retry: {
      t.last_reason = outcome.reason;
      int64_t wait = outcome.retry_after_ms > 0 ? outcome.retry_after_ms
                                                : backoff_ms(retry, record.channel_attempts, jitter);
      int64_t due = now_ms + wait;
      if (message.expires_at_ms && due >= *message.expires_at_ms) {
        t.to = store::State::failed;
        t.events.push_back(
            {"failed",
             dump_json(Json{{"channel", choice.channel}, {"reason", "expired"}, {"last_reason", outcome.reason}})});
        return t;
      }
      int64_t since = record.channel_since_ms.value_or(dispatched_at_ms);
      const char* spent = record.channel_attempts >= retry.max_attempts ? "max_attempts"
                          : due - since > retry.max_age_ms             ? "max_age"
                                                                       : nullptr;
      if (spent == nullptr) {
        t.to = store::State::scheduled;
        t.due_at_ms = due;
        t.events.push_back({"retry_scheduled", dump_json(Json{{"channel", choice.channel},
                                                              {"reason", outcome.reason},
                                                              {"until", format_rfc3339_ms(t.due_at_ms)}})});
        return t;
      }
      Json given_up = {{"channel", choice.channel},
                       {"reason", spent},
                       {"attempts", record.channel_attempts},
                       {"since", format_rfc3339_ms(since)},
                       {"last_reason", outcome.reason}};
      // After the last channel, a dead letter: kept with the last provider answer (last_reason) for an
      // operator to replay.
      leave_channel(t, message, choice, std::move(given_up), store::State::dead, now_ms);
      return t;
    }
    case plugin::OutcomeKind::permanent: {
      t.last_reason = outcome.reason;
      Json failed = {{"channel", choice.channel}, {"reason", outcome.reason}};
      if (outcome.deactivate_contact) failed["deactivate_contact"] = true;
      leave_channel(t, message, choice, std::move(failed), store::State::failed, now_ms);
      return t;
    }
  }
  return t;
}

store::Transition decide_after_error(const store::MessageRecord& record, const std::string& what,
                                     const config::RetryPolicy& retry, int64_t now_ms, double jitter) {
  store::Transition t = transition_of(record);
  t.last_reason = "internal_error: " + what;
  if (record.attempts < retry.max_attempts) {
    t.to = store::State::scheduled;
    t.due_at_ms = now_ms + backoff_ms(retry, record.attempts, jitter);
    t.events.push_back(
        {"retry_scheduled",
         dump_json(Json{{"reason", "internal_error"}, {"error", what}, {"until", format_rfc3339_ms(t.due_at_ms)}},
                   InvalidUtf8::replace)});
    return t;
  }
  t.to = store::State::dead;
  t.events.push_back(
      {"dead",
       dump_json(Json{{"reason", "internal_error"}, {"attempts", record.attempts}, {"last_reason", t.last_reason}},
                 InvalidUtf8::replace)});
  return t;
}

plugin::DeliveryRequest make_delivery(const store::MessageRecord& record, const Message& message,
                                      const ChannelChoice& choice) {
  plugin::DeliveryRequest d;
  d.message_id = message.id;
  // Stable across retries of this message on this channel, so providers can de-duplicate re-sends.
  d.delivery_id = crypto::sha256_hex(message.id + "\n" + choice.channel).substr(0, 32);
  d.attempt = static_cast<uint32_t>(record.attempts);
  d.recipient_id = message.recipient.id;
  d.contact = choice.contact;
  d.marketing = message.purpose == Purpose::marketing;
  d.category = message.category;
  d.locale = message.recipient.locale;
  d.timezone = message.recipient.timezone;
  d.expires_at_ms = message.expires_at_ms.value_or(0);
  d.metadata_json = dump_json(message.metadata);
  return d;
}

// ---- Dispatcher ------------------------------------------------------------------------------------

namespace {
// The random draws of the jitters (retry waits, quiet-hours spreads, circuit waits), in [0, 1).
double random_unit() {
  static thread_local std::mt19937_64 rng{std::random_device{}()};
  return std::uniform_real_distribution<double>(0.0, 1.0)(rng);
}

// The stats' counts of a verdict about `message` on `channel`: the one the policy or the attempt used, or,
// when the policy named none (nothing was usable), the one the message stood at.
void count(store::Transition& t, const Message& message, std::string channel, int64_t now_ms, int64_t latency_ms) {
  if (channel.empty() && t.channel_index >= 0 && t.channel_index < static_cast<int>(message.channels.size()))
    channel = message.channels[static_cast<size_t>(t.channel_index)];
  t.counts = transition_counts(stat_subject(message, std::move(channel)), t, now_ms, latency_ms);
}
}  // namespace

Dispatcher::Dispatcher(store::Store& store, const plugin::Registry& channels, const Clock& clock,
                       config::DispatcherConfig config, Clearance& clearance, const render::TemplateStore* templates,
                       bool missing_variable_is_error)
    : store_(store),
      channels_(channels),
      clock_(clock),
      config_(config),
      clearance_(clearance),
      templates_(templates),
      missing_variable_is_error_(missing_variable_is_error),
      capacity_(config::in_flight_bound(config_)),
      refill_at_(std::max<int64_t>(1, capacity_ / 2)) {}

Dispatcher::~Dispatcher() { stop(); }

void Dispatcher::start() {
  if (!config_.enabled) {
    log::info("dispatcher", "disabled (dispatcher.enabled: false): accepted messages wait in the store");
    return;
  }
  {
    std::lock_guard lock(mutex_);
    started_ = true;
  }
  loop_ = std::thread([this] {
    name_this_thread("tayori-dispatch");
    run();
  });
  for (int i = 0; i < config_.workers; ++i)
    workers_.emplace_back([this] {
      name_this_thread("tayori-worker");
      work();
    });
}

bool Dispatcher::stop(int64_t grace_ms) {
  {
    std::lock_guard lock(mutex_);
    if (stopping_) return true;
    stopping_ = true;
  }
  changed();
  wake_.notify_all();
  work_ready_.notify_all();
  // After the loop has ended nothing more is claimed, and workers take nothing once stopping_ is set:
  // what is queued now was claimed but never started (including a claim that was committing when the
  // stop came).
  if (loop_.joinable()) loop_.join();
  std::deque<Claim> unstarted;
  {
    std::lock_guard lock(mutex_);
    unstarted.swap(work_);
    in_flight_ -= static_cast<int64_t>(unstarted.size());
  }
  put_back(unstarted, R"({"reason":"claimed, not started, when the dispatcher stopped"})");
  {
    // Deliveries on the wire finish on the transport's thread (finish), not in a worker: joining the workers
    // is not waiting for them.
    std::unique_lock lock(mutex_);
    if (grace_ms < 0) {
      idle_.wait(lock, [&] { return in_flight_ == 0; });
    } else if (!idle_.wait_for(lock, std::chrono::milliseconds(grace_ms), [&] { return in_flight_ == 0; })) {
      lock.unlock();
      for (auto& w : workers_) w.detach();
      workers_.clear();
      return false;
    }
  }
  for (auto& w : workers_)
    if (w.joinable()) w.join();
  return true;
}

void Dispatcher::put_back(const std::deque<Claim>& unstarted, const char* why) {
  // Back to scheduled, giving the claim's attempt back. Only these records, by their claim: another
  // dispatcher (a reload's) may hold claims of its own.
  int64_t now = clock_.now_ms();
  for (const auto& claim : unstarted) {
    store::Transition t = transition_of(claim.record);
    t.no_attempt = true;
    t.to = store::State::scheduled;
    t.due_at_ms = now;
    t.events.push_back({"requeued", why});
    record(std::move(t), now);
  }
}

int Dispatcher::reserve(int wanted) {
  std::lock_guard lock(mutex_);
  if (!started_ || stopping_ || wanted <= 0 || store_due(clock_.now_ms())) return 0;
  int granted = static_cast<int>(std::clamp<int64_t>(capacity_ - in_flight_, 0, wanted));
  in_flight_ += granted;
  // The rest are stored due and unclaimed: the claim loop takes them first.
  if (granted < wanted) backlog_ = true;
  changed();
  return granted;
}

void Dispatcher::hand_over(std::vector<Claim> claims, int reserved) {
  std::deque<Claim> refused;
  {
    std::lock_guard lock(mutex_);
    // Room reserved for what did not become a claim (a duplicate, a failed write) is free again.
    in_flight_ -= reserved - static_cast<int64_t>(claims.size());
    if (stopping_) {
      in_flight_ -= static_cast<int64_t>(claims.size());
      refused.assign(std::make_move_iterator(claims.begin()), std::make_move_iterator(claims.end()));
      if (in_flight_ == 0) idle_.notify_all();
    } else {
      for (auto& r : claims) {
        work_.push_back(std::move(r));
        work_ready_.notify_one();  // one worker per claim: waking them all for one message costs more than it
      }
    }
    changed();
  }
  if (!refused.empty()) put_back(refused, R"({"reason":"accepted while the dispatcher stopped"})");
}

void Dispatcher::wake() {
  {
    std::lock_guard lock(mutex_);
    next_due_ms_ = 0;  // unknown: look
    next_due_read_ = false;
    ++store_changes_;
    woken_ = true;
  }
  wake_.notify_one();
}

void Dispatcher::run() {
  // Each claim is a durable commit: claim up to claim_batch at once and refill only when half is free,
  // rather than one commit per freed slot (measured: ~2.6 messages per fsync before, ~19 after). And claim
  // only when the store may hold something due: most messages arrive by hand-over, and an empty claim is a
  // writer transaction of its own.
  std::unique_lock lock(mutex_);
  int64_t looked_at_ms = 0;  // when the store's earliest due time was last read
  int failures = 0;          // rounds in a row that threw
  while (!stopping_) {
    // The top of the claim loop's thread: a store read that throws (SQLITE_BUSY, an I/O error, no file
    // descriptor left) ended the process. The round is logged and counted, and the loop pauses and goes on.
    bool claimed = false;
    if (run_guarded("dispatcher", "claiming due messages", [&] { claimed = claim_round(lock, looked_at_ms); }) &&
        claimed) {
      failures = 0;
      continue;
    }
    if (!lock.owns_lock()) lock.lock();
    // A failed round ends too, in a pause that grows with the failures in a row.
    const int64_t pause_ms = failure_pause_ms(++failures);
    if (observer_->round_ended) observer_->round_ended(pause_ms);
    wake_.wait_for(lock, std::chrono::milliseconds(pause_ms), [&] { return stopping_; });
  }
}

bool Dispatcher::claim_round(std::unique_lock<std::mutex>& lock, int64_t& looked_at_ms) {
  woken_ = false;
  int64_t now = clock_.now_ms();
  lock.unlock();
  record_again(now);
  lock.lock();
  // The poll interval bounds how late anything the wake-ups miss is seen (another process's writes).
  if (now - looked_at_ms >= config_.poll_interval_ms) {
    next_due_ms_ = std::min(next_due_ms_, now);
    next_due_read_ = false;
  }
  // Maybe due (a wake-up, the poll interval): whether anything is due is read, a reader's query, before anything is
  // claimed. Claimed on a guess, an empty claim queued behind the writer's groups (or waited for half the room to be
  // free), and reserve() handed nothing over meanwhile: intake stored its messages for a claim though nothing waited
  // in the store (on the LINE bench up to half of them; docs/decisions.md, "The claim loop reads before it claims").
  if (!backlog_ && next_due_ms_ <= now && !next_due_read_) read_next_due(lock, store_changes_, now, looked_at_ms);
  int64_t free_slots = capacity_ - in_flight_;
  if (free_slots >= refill_at_ && store_due(now)) {
    int64_t asked = std::min<int64_t>(free_slots, config_.claim_batch);
    uint64_t changes = store_changes_;
    lock.unlock();
    Result<std::vector<store::MessageRecord>> claimed = store_.claim_due(now, static_cast<int>(asked));
    lock.lock();
    if (!claimed) {
      report_failed_round("dispatcher", "claiming due messages", claimed.error().message);
      return false;
    }
    for (auto& r : *claimed) {
      ++in_flight_;
      work_.push_back({std::move(r), std::nullopt});
    }
    for (size_t i = 0; i < claimed->size(); ++i) work_ready_.notify_one();
    // A full claim: more may be due. Until a claim comes back short, new messages queue in the store
    // behind the ones already due instead of overtaking them (reserve).
    backlog_ = static_cast<int64_t>(claimed->size()) == asked;
    if (backlog_) return true;
    // Nothing more is due now: learn when something will be.
    read_next_due(lock, changes, now, looked_at_ms);
  }
  if (stopping_ || woken_) return true;
  // Sleep until the next due message, a wake-up (something new in the store, or room freed while
  // something is due), or the poll interval, whichever comes first.
  int64_t wait_ms = config_.poll_interval_ms;  // due but no room: room_freed() wakes us
  if (!store_due(now))
    wait_ms = std::clamp<int64_t>(std::min(next_due_ms_ - now, config_.poll_interval_ms - (now - looked_at_ms)), 0,
                                  config_.poll_interval_ms);
  else if (capacity_ - in_flight_ >= refill_at_)
    wait_ms = 0;  // due, and room to claim it
  if (observer_->round_ended) observer_->round_ended(wait_ms);
  if (wait_ms > 0)
    wake_.wait_for(lock, std::chrono::milliseconds(wait_ms), [&] { return stopping_ || woken_; });
  return true;
}

void Dispatcher::read_next_due(std::unique_lock<std::mutex>& lock, uint64_t changes, int64_t now_ms,
                               int64_t& looked_at_ms) {
  lock.unlock();
  auto next = store_.next_due_ms();
  lock.lock();
  looked_at_ms = now_ms;
  // A wake-up since `changes` may have brought something newer than this read: then it stays to be looked at.
  if (store_changes_ != changes) return;
  next_due_ms_ = next.value_or(std::numeric_limits<int64_t>::max());
  next_due_read_ = true;
}

bool Dispatcher::store_due(int64_t now_ms) const { return backlog_ || next_due_ms_ <= now_ms; }

void Dispatcher::room_freed() {
  std::lock_guard lock(mutex_);
  if (--in_flight_ == 0) idle_.notify_all();
  changed();
  // The loop needs waking only when it has something to claim and has just got room for it.
  if (capacity_ - in_flight_ >= refill_at_ && store_due(clock_.now_ms())) {
    woken_ = true;
    wake_.notify_one();
  }
}

void Dispatcher::work() {
  for (;;) {
    Claim claim;
    {
      std::unique_lock lock(mutex_);
      work_ready_.wait(lock, [&] { return stopping_ || !work_.empty(); });
      if (stopping_) return;
      claim = std::move(work_.front());
      work_.pop_front();
    }
    const store::MessageRecord& record = claim.record;
    // The top of a worker thread: an exception that left here would end the process, and the message would
    // end it again after every restart. It becomes this message's failed attempt instead.
    bool handed = false;
    try {
      handed = process(record, std::move(claim.message), claim.recipient);
    } catch (const std::exception& e) {
      fail_inside(record, e.what());
    }
    if (!handed) room_freed();
  }
}

void Dispatcher::fail_inside(const store::MessageRecord& record, const std::string& what) {
  // A cap slot it may have taken stays: the failure may have come after the hand-over, and a retry of this
  // message is not counted against its own slot (caps err towards sending less).
  log::error("dispatcher", "message \"" + record.id + "\" failed inside the gateway: " + what);
  // Recording it may fail as well (no memory): that is logged and counted, and the caller frees the room
  // regardless, or stop() would wait for it forever; the message stays `dispatched` for requeue_in_flight.
  run_guarded("dispatcher", "recording a failure inside the gateway", [&] {
    int64_t now = clock_.now_ms();
    this->record(decide_after_error(record, what, config_.retry, now, random_unit()), now);
  });
}

// One message past the clearance and on its way: what finish() needs when its channel's verdict comes.
struct Dispatcher::Sending {
  store::MessageRecord record;
  Message message;
  ChannelChoice choice;
  plugin::Channel* channel = nullptr;
  int64_t started_ms = 0;
};

bool Dispatcher::process(const store::MessageRecord& record, std::optional<Message> validated,
                         const std::optional<store::RecipientProfile>& profile) {
  int64_t started = clock_.now_ms();
  if (!validated) validated = stored_message(record.payload);
  if (!validated) {
    this->record(fail_before_attempt(record, "unreadable_payload", R"({"reason":"unreadable_payload"})"), started);
    return false;
  }
  Message& message = *validated;
  if (profile)
    complete_from_profile(message, *profile);
  else
    clearance_.complete_recipient(message);

  policy::Decision decision = clearance_.clear(message, record.channel_index, started, random_unit(), true);
  if (decision.verdict != policy::Verdict::send) {
    // An earlier claim may hold a cap slot (a retry, or a crash after clearing): nothing is handed over
    // now, so give it back; a later clearance takes it again. (Deferrals give back their attempt, so
    // attempts > 1 means an earlier claim cleared this message.)
    if (record.attempts > 1) clearance_.release(message);
    store::Transition t = decide_without_attempt(record, decision);
    count(t, message, decision.channel, started, 0);
    this->record(std::move(t), started);
    return false;
  }
  auto sending = std::make_shared<Sending>();
  sending->record = record;
  sending->choice = choice_of(decision);
  sending->channel = channels_.find(sending->choice.channel);
  sending->started_ms = started;
  Result<render::Rendered> rendered =
      render::render(message, sending->choice.channel, templates_, missing_variable_is_error_);
  if (!rendered) {
    // Nothing was sent: the content cannot be made for this channel. Another channel may have a variant.
    plugin::DeliveryOutcome outcome;
    outcome.kind = plugin::OutcomeKind::permanent;
    outcome.reason = "render_error: " + rendered.error().message;
    sending->message = std::move(message);
    finish(std::move(sending), outcome);
    return true;
  }
  plugin::DeliveryRequest delivery = make_delivery(record, message, sending->choice);
  delivery.content = std::move(rendered->fields);
  // Tracked links make each message's content its own, so such deliveries are never batched together.
  if (message.track_clicks.value_or(sending->channel->track_clicks()))
    delivery.content = track_content(std::move(delivery.content), message, sending->choice.channel, links_,
                                     (started + link_ttl_ms_) / 1000);
  if (message.track_opens.value_or(sending->channel->track_opens()))
    delivery.content = with_open_signal(std::move(delivery.content), message, sending->choice.channel, links_,
                                        (started + link_ttl_ms_) / 1000);
  delivery.responses = mint_responses(message, sending->choice.channel, links_, (started + link_ttl_ms_) / 1000);
  sending->message = std::move(message);
  plugin::Channel* channel = sending->channel;
  // The channel has it from here; its verdict comes to finish(), on whichever thread hears it. Nothing of
  // this dispatcher is touched after the call: finish() may already have run, and the dispatcher stopped.
  channel->deliver(std::move(delivery),
                   [this, sending = std::move(sending)](const plugin::DeliveryOutcome& outcome) mutable {
                     finish(std::move(sending), outcome);
                   });
  return true;
}

// `sending` by value: the Sending goes when finish() returns, not when the transport drops the callback.
// NOLINTNEXTLINE(performance-unnecessary-value-param)
void Dispatcher::finish(std::shared_ptr<Sending> sending, const plugin::DeliveryOutcome& outcome) {
  const store::MessageRecord& record = sending->record;
  try {
    record_outcome(*sending, outcome);
  } catch (const std::exception& e) {
    fail_inside(record, e.what());
  }
  room_freed();  // last: once the room is free, stop() may return and this dispatcher go
}

void Dispatcher::record_outcome(const Sending& sending, const plugin::DeliveryOutcome& outcome) {
  const store::MessageRecord& record = sending.record;
  const Message& message = sending.message;
  const ChannelChoice& choice = sending.choice;
  plugin::Channel* channel = sending.channel;
  if (outcome.kind == plugin::OutcomeKind::delivered && !message.responses.empty()) {
    // The open question of this contact point on this channel: a numbered SMS reply ("2") answers the
    // latest message that asked it something. Recorded for every channel (only numbering plugins use it).
    Json ids = Json::array();
    for (const auto& r : message.responses) ids.push_back(r.id);
    store_.put_question(choice.contact, choice.channel, {message.id, dump_json(ids), clock_.now_ms()}, nullptr);
  }
  int64_t now = clock_.now_ms();
  if (outcome.circuit_open) {
    // The circuit opened (or another delivery took the probe) between routing and sending: nothing was
    // sent, so this is a wait like the policy's, not an attempt.
    clearance_.release(message);
    policy::Decision wait;
    wait.verdict = policy::Verdict::defer;
    wait.reason = "circuit_open";
    wait.until_ms = now + outcome.retry_after_ms +
                    static_cast<int64_t>(random_unit() * std::min<int64_t>(60'000, channel->circuit().open_for_ms(now)));
    wait.detail = {{"reason", "circuit_open"},
                   {"rule", "circuit_breaker." + choice.channel},
                   {"channel", choice.channel},
                   {"until", format_rfc3339_ms(wait.until_ms)}};
    store::Transition t = decide_without_attempt(record, wait);
    count(t, message, choice.channel, now, 0);
    if (listener_) listener_(choice.channel, outcome, t);
    this->record(std::move(t), now);
    return;
  }
  store::Transition t = decide_after_attempt(record, message, choice, outcome, channel->retry_policy(),
                                             sending.started_ms, now, random_unit());
  count(t, message, choice.channel, now, now - record.due_at_ms);
  // The stored provider id serves receipts alone (Store::find_by_provider_id), and a receipt reaches a message
  // only through its channel's webhook. A channel without one keeps the id in the timeline (the `delivered`
  // event) and out of the provider-id index, whose random keys cost a page write per delivery.
  if (!channel->takes_inbound()) t.provider_message_id.clear();
  if (t.to == store::State::failed || t.to == store::State::dead || outcome.kind == plugin::OutcomeKind::permanent)
    clearance_.release(message);
  if (outcome.kind == plugin::OutcomeKind::permanent && outcome.deactivate_contact) {
    // The provider says the contact point is dead (hard bounce, unregistered token): never use it again.
    store_.add_suppression({choice.contact, outcome.reason, "channel." + choice.channel, now}, nullptr);
    t.events.push_back(
        {"contact_deactivated",
         dump_json(Json{{"channel", choice.channel}, {"contact", choice.contact}, {"reason", outcome.reason}})});
  }
  if (listener_) listener_(choice.channel, outcome, t);
  this->record(std::move(t), now);
}

void Dispatcher::record(store::Transition t, int64_t now_ms) {
  if (t.to == store::State::scheduled) {
    // A retry, a deferral or a requeue: the claim loop must know when it falls due.
    std::lock_guard lock(mutex_);
    next_due_ms_ = std::min(next_due_ms_, t.due_at_ms);
    ++store_changes_;
  }
  auto kept = std::make_shared<store::Transition>(t);
  // The completion runs on the store's writer, possibly after this dispatcher is gone (a reload stops it and
  // drops its generation while the writer still holds its last records): it holds what it writes to, never
  // the dispatcher.
  store_.apply(std::move(t), now_ms,
               [unrecorded = unrecorded_, kept, observer = observer_](const Result<void>& recorded) {
                 if (!recorded) {
                   std::lock_guard lock(unrecorded->mutex);
                   unrecorded->transitions.push_back(std::move(*kept));
                 }
                 if (observer->changed) observer->changed();
               });
}

void Dispatcher::record_again(int64_t now_ms) {
  std::vector<store::Transition> again;
  {
    std::lock_guard lock(unrecorded_->mutex);
    if (unrecorded_->transitions.empty() || now_ms < next_record_again_ms_) return;
    again.swap(unrecorded_->transitions);
    next_record_again_ms_ = now_ms + 1000;  // a full disk is not fixed in a millisecond
  }
  log::warn("dispatcher", "recording " + std::to_string(again.size()) + " delivery outcomes the store refused before");
  for (auto& t : again) record(std::move(t), now_ms);
}

int64_t Dispatcher::unrecorded() const {
  std::lock_guard lock(unrecorded_->mutex);
  return static_cast<int64_t>(unrecorded_->transitions.size());
}

}  // namespace tayori::core
