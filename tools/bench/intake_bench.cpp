// intake_bench — micro-benchmarks of the CPU work POST /v1/messages does per message before the store:
// JSON parsing of the body, core::parse_message (validation), core::canonical_json + crypto::sha256_hex
// (the idempotency payload and its hash), and the whole per-request pipeline for 1 and 100 messages.
//
// Every benchmark reports `per_item`: the time per message (the batch ones divide by 100), so single and
// batch rows compare directly. Read them as ratios within one run; absolute times depend on the machine.
#include <benchmark/benchmark.h>

#include <optional>
#include <set>
#include <string>
#include <vector>

#include "api/http_util.hpp"
#include "common/json.hpp"
#include "common/time.hpp"
#include "core/intake.hpp"
#include "core/message.hpp"
#include "crypto/crypto.hpp"

namespace {

using tayori::core::Json;

// The same typical transactional message tayori_load sends (about 300 bytes).
std::string message_text(int n) {
  std::string r = std::to_string(n);
  return "{\"id\":\"bench-" + r + "\",\"recipient\":{\"id\":\"user-" + r +
         "\",\"locale\":\"ja-JP\",\"contacts\":{\"email\":\"user-" + r +
         "@example.jp\"}},\"purpose\":\"transactional\",\"category\":\"order\",\"channels\":[\"email\"],"
         "\"content\":{\"subject\":\"Your order has shipped\",\"text\":\"Order " +
         r + " is on its way and should arrive within two days.\"},\"metadata\":{\"source\":\"tayori_load\"}}";
}

std::string batch_text(int n) {
  std::string body = "{\"messages\":[";
  for (int i = 0; i < n; ++i) {
    if (i) body += ',';
    body += message_text(i);
  }
  return body + "]}";
}

const std::set<std::string>& channel_names() {
  static const std::set<std::string> names{"email", "sms"};
  return names;
}

tayori::core::ValidationRules rules() {
  tayori::core::ValidationRules r;
  r.channels = &channel_names();
  return r;
}

// Reports the time per message as `per_item` (and items/s), whatever the number of messages per iteration.
void per_item(benchmark::State& state, int64_t items_per_iteration) {
  int64_t items = static_cast<int64_t>(state.iterations()) * items_per_iteration;
  state.SetItemsProcessed(items);
  state.counters["per_item"] = benchmark::Counter(static_cast<double>(items), benchmark::Counter::kIsRate |
                                                                                 benchmark::Counter::kInvert);
}

// ---- The pieces, one message ---------------------------------------------------------------------

// core::parse_json, as the API and the dispatcher read JSON; the _Nlohmann row is nlohmann's parse() alone,
// the reference it must beat (core/json.hpp).
void BM_JsonParse_Message(benchmark::State& state) {
  const std::string text = message_text(1);
  for (auto _ : state) {
    Json j = tayori::parse_json(text);
    benchmark::DoNotOptimize(j);
  }
  per_item(state, 1);
}
BENCHMARK(BM_JsonParse_Message);

void BM_JsonParse_Message_Nlohmann(benchmark::State& state) {
  const std::string text = message_text(1);
  for (auto _ : state) {
    Json j = Json::parse(text);
    benchmark::DoNotOptimize(j);
  }
  per_item(state, 1);
}
BENCHMARK(BM_JsonParse_Message_Nlohmann);

void BM_ParseMessage(benchmark::State& state) {
  const Json json = Json::parse(message_text(1));
  const auto r = rules();
  for (auto _ : state) {
    auto parsed = tayori::core::parse_message(json, r);
    if (!parsed.message) state.SkipWithError("the typical message does not validate");
    benchmark::DoNotOptimize(parsed);
  }
  per_item(state, 1);
}
BENCHMARK(BM_ParseMessage);

// A claimed message read again by a dispatcher worker: its stored payload (the canonical JSON intake wrote)
// to a Message. _ParseAndValidate is what a worker did before core::read_stored_message: the JSON read into a
// tree, then parse_message with the stored rules.
void BM_StoredMessage_Read(benchmark::State& state) {
  const std::string payload = tayori::core::canonical_json(Json::parse(message_text(1)));
  for (auto _ : state) {
    auto m = tayori::core::read_stored_message(payload);
    if (!m) state.SkipWithError("the typical message is not read");
    benchmark::DoNotOptimize(m);
  }
  per_item(state, 1);
}
BENCHMARK(BM_StoredMessage_Read);

void BM_StoredMessage_ParseAndValidate(benchmark::State& state) {
  const std::string payload = tayori::core::canonical_json(Json::parse(message_text(1)));
  const tayori::core::ValidationRules stored = tayori::core::stored_message_rules();
  for (auto _ : state) {
    auto parsed = tayori::core::parse_message(tayori::parse_json(payload), stored);
    if (!parsed.message) state.SkipWithError("the typical message does not validate");
    benchmark::DoNotOptimize(parsed);
  }
  per_item(state, 1);
}
BENCHMARK(BM_StoredMessage_ParseAndValidate);

void BM_CanonicalJson(benchmark::State& state) {
  const Json json = Json::parse(message_text(1));
  for (auto _ : state) {
    std::string c = tayori::core::canonical_json(json);
    benchmark::DoNotOptimize(c);
  }
  per_item(state, 1);
}
BENCHMARK(BM_CanonicalJson);

void BM_CanonicalJson_Nlohmann(benchmark::State& state) {
  const Json json = Json::parse(message_text(1));
  for (auto _ : state) {
    std::string c = json.dump(-1, ' ', false, Json::error_handler_t::strict);
    benchmark::DoNotOptimize(c);
  }
  per_item(state, 1);
}
BENCHMARK(BM_CanonicalJson_Nlohmann);

void BM_Sha256Hex(benchmark::State& state) {
  const std::string canonical = tayori::core::canonical_json(Json::parse(message_text(1)));
  for (auto _ : state) {
    std::string h = tayori::crypto::sha256_hex(canonical);
    benchmark::DoNotOptimize(h);
  }
  per_item(state, 1);
}
BENCHMARK(BM_Sha256Hex);

void BM_CanonicalJson_Sha256Hex(benchmark::State& state) {
  const Json json = Json::parse(message_text(1));
  for (auto _ : state) {
    std::string h = tayori::crypto::sha256_hex(tayori::core::canonical_json(json));
    benchmark::DoNotOptimize(h);
  }
  per_item(state, 1);
}
BENCHMARK(BM_CanonicalJson_Sha256Hex);

// ---- A batch of 100 ------------------------------------------------------------------------------

constexpr int kBatch = 100;

void BM_JsonParse_Batch100(benchmark::State& state) {
  const std::string text = batch_text(kBatch);
  for (auto _ : state) {
    Json j = tayori::parse_json(text);
    benchmark::DoNotOptimize(j);
  }
  per_item(state, kBatch);
}
BENCHMARK(BM_JsonParse_Batch100);

// The nesting check every JSON body passes before the parser (api/http_util.hpp json_too_deep).
void BM_JsonDepthCheck_Batch100(benchmark::State& state) {
  const std::string text = batch_text(kBatch);
  for (auto _ : state) benchmark::DoNotOptimize(tayori::api::json_too_deep(text));
  per_item(state, kBatch);
}
BENCHMARK(BM_JsonDepthCheck_Batch100);

void BM_ParseMessage_Batch100(benchmark::State& state) {
  const Json body = Json::parse(batch_text(kBatch));
  const auto r = rules();
  for (auto _ : state) {
    const Json& list = body["messages"];
    for (size_t i = 0; i < list.size(); ++i) {
      auto parsed = tayori::core::parse_message(list[i], r, "/messages/" + std::to_string(i));
      benchmark::DoNotOptimize(parsed);
    }
  }
  per_item(state, kBatch);
}
BENCHMARK(BM_ParseMessage_Batch100);

// ---- The whole pre-store CPU path of POST /v1/messages, for 1 or 100 messages ---------------------
// The same functions Api::submit calls: core::read_intake (the body read straight from its text), or, for a body
// it leaves (the _Parsed rows force that path), the body parsed and core::prepare_intake (envelope, validation of
// each message, its canonical form); then core::answer_intake (the 202 body), with the store's verdicts stood in
// by "accepted" for every message.

enum class Path { as_the_api, parsed };

void intake_cpu(benchmark::State& state, const std::string& text, Path path) {
  const auto r = rules();
  const int64_t now = 1'790'000'000'000;
  int64_t items_per_iteration = 0;
  for (auto _ : state) {
    std::optional<tayori::core::Intake> intake;
    if (path == Path::as_the_api) {
      intake = tayori::core::read_intake(text, r, 1000, "bench", now);
      if (!intake) {
        state.SkipWithError("the bench body is not one read_intake takes");
        break;
      }
    } else {
      // As Api::json_body: the fast JSON reader, which follows no deeper than a body may nest (the depth check
      // runs only on text it leaves).
      std::optional<Json> body = tayori::read_json_fast(text);
      if (!body) {
        state.SkipWithError("the bench body is not one the fast reader takes");
        break;
      }
      intake = tayori::core::prepare_intake(*body, r, 1000, "bench", now);
    }
    std::vector<tayori::store::AcceptResult> stored(intake->to_store.size());
    std::string answer = tayori::core::answer_intake(*intake, stored).body;
    items_per_iteration = static_cast<int64_t>(intake->items.size());
    benchmark::DoNotOptimize(answer);
  }
  per_item(state, items_per_iteration);
}

void BM_IntakeCpu_Single(benchmark::State& state) { intake_cpu(state, message_text(1), Path::as_the_api); }
BENCHMARK(BM_IntakeCpu_Single);

void BM_IntakeCpu_Batch100(benchmark::State& state) { intake_cpu(state, batch_text(kBatch), Path::as_the_api); }
BENCHMARK(BM_IntakeCpu_Batch100);

void BM_IntakeCpu_Single_Parsed(benchmark::State& state) { intake_cpu(state, message_text(1), Path::parsed); }
BENCHMARK(BM_IntakeCpu_Single_Parsed);

void BM_IntakeCpu_Batch100_Parsed(benchmark::State& state) { intake_cpu(state, batch_text(kBatch), Path::parsed); }
BENCHMARK(BM_IntakeCpu_Batch100_Parsed);

}  // namespace

BENCHMARK_MAIN();
