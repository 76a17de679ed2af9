// Webhook senders (webhooks.hpp): one thread per subscription that reads the event feed from its stored cursor,
// POSTs each event signed, retries with backoff, and on PostgreSQL holds the subscription so one node sends it.
#include "feed/webhooks.hpp"

#include <algorithm>
#include <limits>
#include <optional>
#include <random>

#include "common/log.hpp"
#include "common/thread_guard.hpp"
#include "common/thread_name.hpp"
#include "crypto/crypto.hpp"
#include "feed/feed.hpp"

namespace tayori::feed {

namespace {

constexpr int kPage = 100;  // events read from the store at a time

std::string describe(const transport::Response& r) {
  if (r.transport_error != 0) return r.error_text.empty() ? "transport error " + std::to_string(r.transport_error) : r.error_text;
  return "HTTP " + std::to_string(r.status);
}

}  // namespace

std::string signature_header(std::string_view secret, int64_t unix_seconds, std::string_view body) {
  std::string t = std::to_string(unix_seconds);
  std::string signed_text = t + "." + std::string(body);
  // HMAC-SHA256 cannot fail for in-memory input; an OpenSSL failure would still give a header the receiver
  // refuses (and the attempt is retried), never an unsigned POST.
  Result<std::string> mac = crypto::hmac_sha256(secret, signed_text);
  return "t=" + t + ",v1=" + (mac ? crypto::hex(mac.value()) : std::string("error"));
}

int64_t backoff_ms(int failures, double unit_random, int64_t base_ms, int64_t cap_ms) {
  if (failures < 1) failures = 1;
  // base * 2^(failures-1), saturating at the cap before it could overflow.
  int64_t ceiling = base_ms;
  for (int i = 1; i < failures && ceiling < cap_ms; ++i) ceiling *= 2;
  ceiling = std::min(ceiling, cap_ms);
  unit_random = std::clamp(unit_random, 0.0, 1.0);
  return static_cast<int64_t>(unit_random * static_cast<double>(ceiling));
}

bool subscribed(const config::WebhookConfig& webhook, std::string_view type) {
  return webhook.events.empty() || std::find(webhook.events.begin(), webhook.events.end(), type) != webhook.events.end();
}

transport::Request webhook_request(const config::WebhookConfig& webhook, const store::TimelineEvent& event,
                                   int64_t unix_seconds) {
  transport::Request r;
  r.method = "POST";
  r.url = webhook.url;
  r.body = event_json(event).dump(-1, ' ', false, core::Json::error_handler_t::replace);
  r.headers = {{"Content-Type", "application/json"},
               {"Tayori-Event-Id", event_id(event.seq)},
               {"Tayori-Signature", signature_header(webhook.secret, unix_seconds, r.body)}};
  r.timeout_ms = webhook.timeout_ms;
  r.pool_key = "webhook:" + webhook.name;
  return r;
}

// ---- Senders ---------------------------------------------------------------------------------------------

struct Webhooks::Sender {
  config::WebhookConfig config;
  std::thread thread;
  int64_t persisted = -1;  // the cursor last handed to the store
  std::optional<int64_t> start_after;  // where sending starts, once known (read at start())
  std::mt19937_64 random{std::random_device{}()};
};

// The answer to one POST, shared with the transport's completion: that may run after the sender has given
// up waiting (stop), so it must not touch the sender.
struct Pending {
  std::mutex mutex;
  std::condition_variable cv;
  std::optional<transport::Response> response;
};

enum class Outcome { delivered, dropped, stopped };

Webhooks::Webhooks(std::vector<config::WebhookConfig> webhooks, store::Store& store,
                   transport::OutboundTransport& transport, const Clock& clock, api::Metrics* metrics,
                   WebhookTiming timing)
    : store_(store), transport_(transport), clock_(clock), metrics_(metrics), timing_(timing) {
  for (auto& w : webhooks) {
    auto s = std::make_unique<Sender>();
    s->config = std::move(w);
    senders_.push_back(std::move(s));
  }
}

Webhooks::~Webhooks() { stop(); }

void Webhooks::start() {
  std::lock_guard lock(mutex_);
  if (started_ || stopping_) return;
  started_ = true;
  for (auto& s : senders_) {
    // One POST at a time per subscription keeps its order; its own pool keeps it from queueing behind channels.
    transport_.configure_pool("webhook:" + s->config.name, transport::PoolOptions{1, nullptr});
    Sender* sender = s.get();
    // Here, before the gateway listens: a new subscription's "from now on" must not depend on how soon its
    // thread runs, or events of the first requests are skipped. A store that cannot answer now is asked
    // again by the thread.
    try {
      sender->start_after = starting_cursor(*sender);
    } catch (const std::exception& e) {
      log::error("webhooks", s->config.name + ": cannot read the cursor: " + e.what());
    }
    s->thread = std::thread([this, sender] {
      name_this_thread("tayori-webhook");
      run(*sender);
    });
  }
}

void Webhooks::stop() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  cv_.notify_all();
  for (auto& s : senders_)
    if (s->thread.joinable()) s->thread.join();
}

void Webhooks::wake() {
  {
    std::lock_guard lock(mutex_);
    ++wakes_;
  }
  cv_.notify_all();
}

bool Webhooks::stopping() {
  std::lock_guard lock(mutex_);
  return stopping_;
}

bool Webhooks::pause(int64_t ms, bool wakeable) {
  std::unique_lock lock(mutex_);
  uint64_t wakes = wakes_;
  cv_.wait_for(lock, std::chrono::milliseconds(std::max<int64_t>(ms, 0)),
               [&] { return stopping_ || (wakeable && wakes_ != wakes); });
  return !stopping_;
}

void Webhooks::persist(Sender& s, int64_t seq) {
  if (seq == s.persisted) return;
  s.persisted = seq;
  // Not awaited: commits apply in order and the store keeps the maximum. A cursor lost to a crash (or a
  // full disk) only means events after the stored one are sent again: at-least-once.
  store_.set_webhook_cursor(s.config.name, seq, [name = s.config.name, seq](const Result<void>& recorded) {
    if (!recorded)
      log::warn("webhooks", name + ": the store could not record the cursor " + std::to_string(seq) + ": " +
                                recorded.error().message);
  });
}

int64_t Webhooks::starting_cursor(Sender& s) {
  if (auto stored = store_.webhook_cursor(s.config.name)) {
    s.persisted = *stored;
    return *stored;
  }
  // A new subscription: from now on (the history is in GET /v1/events).
  int64_t cursor = store_.last_event_seq();
  persist(s, cursor);
  log::info("webhooks", s.config.name + ": new subscription, starting after event seq " + std::to_string(cursor));
  return cursor;
}

void Webhooks::run(Sender& s) {
  // The top of a sender's thread: what the reads below do not catch (data an event cannot be sent with, a
  // store that fails mid-page) is logged and counted, and the sender pauses and starts again from where it
  // got, instead of ending the process.
  for (int failures = 0;;) {
    if (run_guarded("webhooks", s.config.name + ": sending events", [&] { send_events(s); })) return;
    if (!pause(failure_pause_ms(++failures), false)) return;
  }
}

void Webhooks::send_events(Sender& s) {
  const std::string& name = s.config.name;
  while (!s.start_after) {
    try {
      s.start_after = starting_cursor(s);
    } catch (const std::exception& e) {
      log::error("webhooks", name + ": cannot read the cursor: " + e.what());
      if (!pause(timing_.poll_ms * 5, false)) return;
    }
  }
  int64_t cursor = std::max(*s.start_after, s.persisted);  // after a failed round: where it got
  // Several nodes: another node may hold the subscription and move its cursor; when this node (again) holds
  // it, it goes on from the stored cursor.
  bool holding = false;
  auto hold = [&] {
    try {
      if (!store_.hold_subscription(name, clock_.now_ms())) {
        holding = false;
        return false;
      }
      if (!holding)
        if (auto stored = store_.webhook_cursor(name)) cursor = std::max(cursor, *stored);
    } catch (const std::exception& e) {
      log::error("webhooks", name + ": cannot read the cursor: " + e.what());
      holding = false;
      return false;
    }
    holding = true;
    return true;
  };
  for (;;) {
    if (!hold()) {
      if (!pause(timing_.poll_ms * 5, false)) return;
      continue;
    }
    std::vector<store::TimelineEvent> page;
    try {
      page = store_.events_after(cursor, std::numeric_limits<int64_t>::max(), kPage, "");
      if (metrics_) metrics_->set_webhook_lag(name, std::max<int64_t>(0, store_.last_event_seq() - cursor));
    } catch (const std::exception& e) {
      log::error("webhooks", name + ": cannot read events: " + e.what());
      if (!pause(timing_.poll_ms * 5, false)) return;
      continue;
    }
    if (page.empty()) {
      if (!pause(timing_.poll_ms, true)) return;
      continue;
    }
    for (const store::TimelineEvent& e : page) {
      // Renewed before each send: a slow receiver must not let the hold lapse while this node still sends.
      if (subscribed(s.config, e.type) && !hold()) break;
      if (subscribed(s.config, e.type)) {
        Outcome outcome = Outcome::stopped;
        int64_t first_ms = clock_.now_ms();
        for (int failures = 0;;) {
          auto pending = std::make_shared<Pending>();
          transport_.submit(webhook_request(s.config, e, clock_.now_ms() / 1000), [pending](transport::Response r) {
            std::lock_guard lock(pending->mutex);
            pending->response = std::move(r);
            pending->cv.notify_all();
          });
          std::optional<transport::Response> r;
          {
            std::unique_lock lock(pending->mutex);
            // Checked every 50 ms so stop() is not held up by a slow receiver (the request's own timeout).
            while (!pending->response && !stopping())
              pending->cv.wait_for(lock, std::chrono::milliseconds(50));
            r = std::move(pending->response);
          }
          if (!r) break;  // stopping: the event stays after the cursor
          if (r->ok()) {
            if (metrics_) metrics_->count_webhook(name, "delivered");
            outcome = Outcome::delivered;
            break;
          }
          ++failures;
          int64_t elapsed = clock_.now_ms() - first_ms;
          if (elapsed >= s.config.give_up_after_ms) {
            if (metrics_) metrics_->count_webhook(name, "dropped");
            log::warn("webhooks", name + ": dropped " + event_id(e.seq) + " (" + e.type + ") after " +
                                      std::to_string(failures) + " attempts over " + format_duration_ms(elapsed) +
                                      " (give_up_after); last answer: " + describe(*r));
            outcome = Outcome::dropped;
            break;
          }
          if (metrics_) metrics_->count_webhook(name, "retried");
          int64_t wait = backoff_ms(failures, std::uniform_real_distribution<double>(0.0, 1.0)(s.random),
                                    timing_.backoff_base_ms, timing_.backoff_cap_ms);
          // The last attempt is made when give_up_after ends, not after it.
          wait = std::min(wait, s.config.give_up_after_ms - elapsed);
          if (failures == 1)
            log::warn("webhooks", name + ": " + event_id(e.seq) + " refused (" + describe(*r) + "); retrying with backoff");
          if (!pause(wait, false)) break;
        }
        if (outcome == Outcome::stopped) {
          persist(s, cursor);
          return;
        }
      }
      cursor = e.seq;
      // After every sent event (the promise: nothing delivered is sent again after a restart, save a crash);
      // skipped events only move it at the end of the page.
      if (subscribed(s.config, e.type)) persist(s, cursor);
    }
    persist(s, cursor);
  }
}

}  // namespace tayori::feed
