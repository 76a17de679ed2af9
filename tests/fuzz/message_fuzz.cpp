// POST /v1/messages without the HTTP: a body (one message, or a batch envelope {"messages": [...]}) goes
// through the API's JSON checks, intake (validation of every message, canonical form, hash, first events)
// and the answer built from the store's verdicts, as Api::submit runs them. Rules as a gateway with two
// channels and one template has them; a local send_at asks the stored profile's zone. Then each payload
// intake stores is read back as a dispatcher worker reads it: core::read_stored_message, when it reads one,
// must give the Message that parsing and validating the payload again gives. The same body read straight from
// its text (core::read_intake, the API's first try) must give, when it reads it, the Intake that parsing it
// gives.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <optional>
#include <set>
#include <string>

#include "api/http_util.hpp"
#include "common/json.hpp"
#include "core/intake.hpp"
#include "core/message.hpp"
#include "fuzz_support.hpp"

namespace {

const std::set<std::string> kChannels = {"email", "sms"};
const std::set<std::string> kTemplates = {"welcome"};

tayori::core::ValidationRules rules() {
  tayori::core::ValidationRules r;
  r.channels = &kChannels;
  r.templates_available = true;
  r.templates = &kTemplates;
  r.default_timezone = "Asia/Tokyo";
  r.stored_timezone = [](const std::string& id) { return id == "known" ? std::string("Europe/Paris") : std::string(); };
  return r;
}

// `value` as another sender might write it: members in reverse order, white space around every token, and every
// character beyond ASCII as a \u escape.
std::string rewritten(const tayori::core::Json& value) {
  std::string out;
  if (value.is_object()) {
    out += "{ ";
    for (auto it = value.crbegin(); it != value.crend(); ++it) {
      if (it != value.crbegin()) out += " ,\n";
      out += tayori::core::Json(it.key()).dump(-1, ' ', true) + " :\t" + rewritten(it.value());
    }
    return out + " }";
  }
  if (value.is_array()) {
    out += "[ ";
    for (size_t i = 0; i < value.size(); ++i) out += (i ? " , " : "") + rewritten(value[i]);
    return out + " ]";
  }
  return value.dump(-1, ' ', true);
}

// The Intake read from the text must be the one prepare_intake makes of the parsed text.
void expect_read_as_parsed(std::string_view body, const tayori::core::ValidationRules& rules, int64_t now) {
  using namespace tayori;
  std::optional<core::Intake> read = core::read_intake(body, rules, /*max_batch=*/100, "fuzz", now);
  if (read && !(*read == core::prepare_intake(parse_json(body), rules, /*max_batch=*/100, "fuzz", now))) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace tayori;
  static const core::ValidationRules kRules = rules();
  std::string_view body = fuzz::text(data, size);
  constexpr int64_t kNow = 1'780'000'000'000;
  // The API reads the body straight from its text first (read_intake), and parses it only when that gives up.
  std::optional<core::Intake> read = core::read_intake(body, kRules, /*max_batch=*/100, "fuzz", kNow);
  // What it reads must be JSON that the API would take...
  if (api::json_too_deep(body)) {
    if (read) std::abort();
    return 0;  // answered 400 before parsing
  }
  core::Json json;
  try {
    json = parse_json(body);  // as Api::json_body reads it
  } catch (const core::Json::exception&) {
    if (read) std::abort();
    return 0;  // answered 400 (Api::json_body)
  }
  core::Intake intake = core::prepare_intake(json, kRules, /*max_batch=*/100, "fuzz", kNow);
  // ...and give the Intake that parsing and validating it gives: the same messages, payloads, events, counts.
  if (read && !(*read == intake)) std::abort();
  // Every message the store is asked to record is accepted: the answer names each one.
  std::vector<store::AcceptResult> stored(intake.to_store.size());
  core::IntakeAnswer answer = core::answer_intake(intake, stored);
  // The answer, written member by member, is JSON text.
  if (parse_json_or_discarded(answer.body).is_discarded()) std::abort();
  // Valid messages are rare among the inputs a fuzzer makes: the ones this input has are sent again, as a batch
  // written another way, so that the reader's every branch for a valid message meets the parser's.
  if (!intake.to_store.empty()) {
    core::Json again = {{"messages", core::Json::array()}};
    for (const store::NewMessage& m : intake.to_store) again["messages"].push_back(parse_json(m.payload));
    expect_read_as_parsed(rewritten(again), kRules, kNow);
    expect_read_as_parsed(rewritten(again["messages"][0]), kRules, kNow);
  }
  static const core::ValidationRules kStoredRules = core::stored_message_rules();
  for (const store::NewMessage& m : intake.to_store) {
    std::optional<core::Message> read = core::read_stored_message(m.payload);
    if (!read) continue;  // a worker parses and validates it again, as before
    std::optional<core::Message> parsed = core::parse_message(parse_json(m.payload), kStoredRules).message;
    if (!parsed || !(*parsed == *read)) std::abort();
  }
  return 0;
}
