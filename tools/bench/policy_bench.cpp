// policy_bench — the cost of one policy decision (docs/architecture.md §5: reading the recipient's state and
// deciding take microseconds of CPU; the decision itself does no I/O).
//
//   BM_Decide_*   one full policy::decide with warm state: the RecipientState already in memory (2 consent
//                 records, 1 suppression that does not match, 2 cap slots), a quiet-hours rule and a cap
//                 rule, the recipient's TimeZone loaded. Variants by verdict: send, defer (quiet hours),
//                 suppress (cap exceeded: a third slot).
//   BM_Part_*     the pieces decide() is made of, to attribute its cost.
//   BM_Clear_*    core::Clearance::clear against a real SQLite store (cold path: consent, suppressions and
//                 slots are read from the database on every call), without and with taking the slot.
//
// Every benchmark reports items/s = decisions per second on one core. Run for a p50-ish figure:
//   build/bin/policy_bench --benchmark_repetitions=5 --benchmark_report_aggregates_only=true
#include <benchmark/benchmark.h>
#include <stdlib.h>

#include <filesystem>
#include <future>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "common/time.hpp"
#include "config/config.hpp"
#include "core/clearance.hpp"
#include "core/message.hpp"
#include "plugin/channel.hpp"
#include "policy/policy.hpp"
#include "store/sqlite_store.hpp"

namespace {

using namespace tayori;
using policy::Verdict;

constexpr int64_t kDay = 86'400'000;
const int64_t kNoonTokyo = *parse_rfc3339_ms("2026-11-24T12:00:00+09:00");
const int64_t kNightTokyo = *parse_rfc3339_ms("2026-11-24T23:00:00+09:00");

core::Message message() {
  core::Message m;
  m.id = "bench-1";
  m.recipient.id = "hanako";
  m.recipient.timezone = "Asia/Tokyo";
  m.recipient.locale = "ja-JP";
  m.recipient.contacts = {{"email", "hanako@example.jp"}, {"phone", "+819012345678"}};
  m.purpose = policy::Purpose::marketing;
  m.category = "news";
  m.channels = {"sms", "email"};
  m.content = {{"text", "Autumn sale starts tomorrow"}};
  return m;
}

policy::PolicyConfig config() {
  policy::PolicyConfig c;
  c.default_timezone = "Asia/Tokyo";
  policy::QuietHoursRule night;
  night.name = "marketing_night";
  night.from_minute = 21 * 60;
  night.to_minute = 8 * 60;
  night.spread_ms = 30 * 60'000;
  c.quiet_hours.push_back(night);
  policy::CapRule daily;
  daily.name = "marketing_daily";
  daily.purpose = policy::Purpose::marketing;
  daily.limit = 3;
  daily.window_ms = kDay;
  c.caps.push_back(daily);
  return c;
}

policy::RecipientState warm_state(int64_t now, int slots) {
  policy::RecipientState s;
  s.consent.push_back({"sms", policy::Purpose::marketing, policy::ConsentState::opted_in, "sms_keyword", "START",
                       now - 30 * kDay});
  s.consent.push_back({"email", policy::Purpose::marketing, policy::ConsentState::opted_in, "api", "form#12",
                       now - 20 * kDay});
  s.suppressed["old-address@example.jp"] = {"old-address@example.jp", "hard_bounce", "channel.email", now - kDay};
  for (int i = 0; i < slots; ++i)
    s.slots.push_back({"earlier-" + std::to_string(i), "sms", policy::Purpose::marketing, "news", now - (i + 1) * 3'600'000});
  return s;
}

policy::ChannelLookup lookup() {
  return [](const std::string& name) -> std::optional<policy::ChannelView> {
    if (name == "sms") return policy::ChannelView{"phone", true};
    if (name == "email") return policy::ChannelView{"email", true};
    return std::nullopt;
  };
}

const char* verdict_name(Verdict v) { return v == Verdict::send ? "send" : v == Verdict::defer ? "defer" : "suppress"; }

// One full decision, state warm; checks once (outside the timed loop) that the variant decides as named.
void run_decide(benchmark::State& state, int64_t now, int slots, Verdict expected) {
  const core::Message m = message();
  const policy::PolicyConfig cfg = config();
  const policy::RecipientState rs = warm_state(now, slots);
  const policy::ChannelLookup channels = lookup();
  const policy::TimeZone zone = *policy::TimeZone::load("Asia/Tokyo");
  const policy::DecisionInput in{core::policy_facts(m), 0, rs, cfg, channels, zone, now, 0.25};
  policy::Decision first = policy::decide(in);
  if (first.verdict != expected) {
    state.SkipWithError((std::string("decided ") + verdict_name(first.verdict) + " (" + first.reason + "), expected " +
                         verdict_name(expected))
                            .c_str());
    return;
  }
  for (auto _ : state) {
    policy::Decision d = policy::decide(in);
    benchmark::DoNotOptimize(d);
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
}

void BM_Decide_Send(benchmark::State& state) { run_decide(state, kNoonTokyo, 2, Verdict::send); }
void BM_Decide_DeferQuietHours(benchmark::State& state) { run_decide(state, kNightTokyo, 2, Verdict::defer); }
void BM_Decide_SuppressCap(benchmark::State& state) { run_decide(state, kNoonTokyo, 3, Verdict::suppress); }
BENCHMARK(BM_Decide_Send);
BENCHMARK(BM_Decide_DeferQuietHours);
BENCHMARK(BM_Decide_SuppressCap);

// ---- The pieces ------------------------------------------------------------------------------------

void BM_Part_TimeZoneLocal(benchmark::State& state) {
  const policy::TimeZone zone = *policy::TimeZone::load("Asia/Tokyo");
  int64_t t = kNoonTokyo;
  for (auto _ : state) benchmark::DoNotOptimize(zone.local(t));
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
}
BENCHMARK(BM_Part_TimeZoneLocal);

void BM_Part_TimeZoneLoad(benchmark::State& state) {  // what Clearance::zone_for pays per clear()
  for (auto _ : state) benchmark::DoNotOptimize(policy::TimeZone::load("Asia/Tokyo"));
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
}
BENCHMARK(BM_Part_TimeZoneLoad);

void BM_Part_ConsentAllows(benchmark::State& state) {
  const policy::PolicyConfig cfg = config();
  const policy::RecipientState rs = warm_state(kNoonTokyo, 2);
  for (auto _ : state) {
    policy::TraceStep step;
    benchmark::DoNotOptimize(policy::consent_allows(rs.consent, cfg.consent, "sms", policy::Purpose::marketing, step));
    benchmark::DoNotOptimize(step);
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
}
BENCHMARK(BM_Part_ConsentAllows);

void BM_Part_QuietHours(benchmark::State& state) {
  const policy::PolicyConfig cfg = config();
  const policy::TimeZone zone = *policy::TimeZone::load("Asia/Tokyo");
  const int64_t now = state.range(0) ? kNightTokyo : kNoonTokyo;
  for (auto _ : state)
    benchmark::DoNotOptimize(policy::quiet_hours(cfg.quiet_hours, "sms", policy::Purpose::marketing, zone, now, 0.25));
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
}
BENCHMARK(BM_Part_QuietHours)->ArgName("night")->Arg(0)->Arg(1);

void BM_Part_CheckCaps(benchmark::State& state) {
  const policy::PolicyConfig cfg = config();
  const policy::RecipientState rs = warm_state(kNoonTokyo, static_cast<int>(state.range(0)));
  for (auto _ : state)
    benchmark::DoNotOptimize(policy::check_caps(cfg.caps, rs.slots, "sms", policy::Purpose::marketing, "news", kNoonTokyo));
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
}
BENCHMARK(BM_Part_CheckCaps)->ArgName("slots")->Arg(2)->Arg(3);

void BM_Part_FormatRfc3339(benchmark::State& state) {
  for (auto _ : state) benchmark::DoNotOptimize(format_rfc3339_ms(kNoonTokyo));
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
}
BENCHMARK(BM_Part_FormatRfc3339);

void BM_Part_TraceJson(benchmark::State& state) {  // one consent step's detail, as decide() builds it
  for (auto _ : state) {
    core::Json detail = {{"state", "opted_in"}, {"source", "sms_keyword"}, {"at", "2026-10-25T03:00:00.000Z"}};
    benchmark::DoNotOptimize(detail);
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
}
BENCHMARK(BM_Part_TraceJson);

// ---- Clearance::clear with the SQLite store (cold: every call reads the database) ----------------

class PinnedClock final : public Clock {
 public:
  int64_t now_ms() const override { return kNoonTokyo; }
};

// A store in a temp dir with the same state as warm_state(), a registry of two file_sink channels.
struct ClearanceFixture {
  std::filesystem::path dir;
  std::unique_ptr<store::Store> store;
  PinnedClock clock;
  std::unique_ptr<plugin::Registry> registry;
  policy::PolicyConfig cfg = config();
  std::unique_ptr<core::Clearance> clearance;

  explicit ClearanceFixture(int cap_limit) {
    std::string tmpl = (std::filesystem::temp_directory_path() / "tayori_policy_bench_XXXXXX").string();
    if (::mkdtemp(tmpl.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
    dir = tmpl;
    store = store::open_sqlite({(dir / "tayori.db").string()});
    const std::string yaml = std::string("api_keys:\n  - name: bench\n    key_env: BENCH_KEY\nplugin_dirs:\n  - ") +
                             TAYORI_PLUGIN_DIR +
                             "\nchannels:\n"
                             "  - name: sms\n    plugin: file_sink\n    contact: phone\n    settings:\n      path: sms.jsonl\n"
                             "  - name: email\n    plugin: file_sink\n    contact: email\n    settings:\n"
                             "      path: email.jsonl\n";
    auto loaded = config::load_string(yaml, "bench.yaml", dir.string(), [](const std::string& name) {
      return name == "BENCH_KEY" ? std::optional<std::string>("k") : std::nullopt;
    });
    if (!loaded.config) throw std::runtime_error("bench YAML: " + loaded.errors.front().to_string());
    auto built = plugin::build_registry(*loaded.config, clock);
    if (!built.registry) throw std::runtime_error("registry: " + built.errors.front().to_string());
    registry = std::move(built.registry);
    cfg.caps[0].limit = cap_limit;

    policy::RecipientState rs = warm_state(kNoonTokyo, 2);
    wait([&](auto done) { store->append_consent("hanako", rs.consent, done); });
    // By entry, not a structured binding: clang before 16 cannot capture one in a lambda (C++20 allows it).
    for (const auto& entry : rs.suppressed) wait([&](auto done) { store->add_suppression(entry.second, done); });
    for (const auto& s : rs.slots) store->take_slot("hanako", s);
    // The slots are counted at once; a release is a group-committed fence that they are in the table too.
    wait([&](auto done) { store->release_slot("fence", "fence", done); });
    clearance = std::make_unique<core::Clearance>(*store, cfg, *registry);
  }
  ~ClearanceFixture() {
    clearance.reset();
    registry.reset();
    store.reset();
    std::error_code ignored;
    std::filesystem::remove_all(dir, ignored);
  }
  template <class F>
  static void wait(F start) {
    std::promise<bool> p;
    auto f = p.get_future();
    start([&p](const tayori::Result<void>& r) { p.set_value(r.ok()); });
    if (!f.get()) throw std::runtime_error("store write failed");
  }
};

// Simulation path: load consent, suppressions, slots from SQLite + decide; writes nothing.
void BM_Clear_SQLite_Simulate(benchmark::State& state) {
  ClearanceFixture fx(3);
  const core::Message m = message();
  if (fx.clearance->clear(m, 0, kNoonTokyo, 0.25, false).verdict != Verdict::send) {
    state.SkipWithError("expected send");
    return;
  }
  for (auto _ : state) {
    policy::Decision d = fx.clearance->clear(m, 0, kNoonTokyo, 0.25, false);
    benchmark::DoNotOptimize(d);
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
}
BENCHMARK(BM_Clear_SQLite_Simulate)->UseRealTime();

// The dispatcher's path: as above, then take the slot (one group commit with fsync, synchronous=FULL).
// The same message re-takes its own slot each time (idempotent, and not counted against itself), so the
// state does not grow: 2 earlier slots + its own, under the cap of 3.
void BM_Clear_SQLite_TakeSlot(benchmark::State& state) {
  ClearanceFixture fx(3);
  const core::Message m = message();
  if (fx.clearance->clear(m, 0, kNoonTokyo, 0.25, true).verdict != Verdict::send) {
    state.SkipWithError("expected send");
    return;
  }
  for (auto _ : state) {
    policy::Decision d = fx.clearance->clear(m, 0, kNoonTokyo, 0.25, true);
    benchmark::DoNotOptimize(d);
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
}
BENCHMARK(BM_Clear_SQLite_TakeSlot)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
