// Intake: from a POST /v1/messages body to what the store must record, and from the store's verdicts to
// the answer. Both halves are pure, so the API, the simulator endpoint and the benchmarks share them.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/message.hpp"
#include "store/store.hpp"

namespace tayori::core {

struct IntakeItem {
  std::string id;
  int stored = -1;  // index into Intake::to_store, or -1 when refused
  std::vector<FieldError> errors;
  friend bool operator==(const IntakeItem&, const IntakeItem&) = default;
};

struct Intake {
  bool batch = false;
  std::vector<FieldError> envelope_errors;  // a malformed batch: nothing else is looked at
  std::vector<IntakeItem> items;
  std::vector<store::NewMessage> to_store;
  // The Message of each of to_store, in the same order, for the hand-over (Api::submit drops them when it
  // hands none over).
  std::vector<Message> validated;
  friend bool operator==(const Intake&, const Intake&) = default;
};

// A claimed message on its way to the dispatcher's workers. A claim handed over by intake carries the Message
// validated there, so the worker does not read the stored payload again (JSON and validation were a quarter
// of a worker's time), and the recipient's profile as its commit left it (AcceptResult::recipient), so the
// worker does not read that either (a sixth of its time on the LINE bench); a claim from the store carries
// neither.
struct Claim {
  store::MessageRecord record;
  std::optional<Message> message{};
  std::optional<store::RecipientProfile> recipient{};
};

// Splits a body into messages (one object, or {"messages": [...]} of at most `max_batch`), validates
// each, and prepares the valid ones for the store (canonical payload, hash, due time, first events).
Intake prepare_intake(const Json& body, const ValidationRules& rules, int max_batch, const std::string& key_name,
                      int64_t now_ms);

// The same Intake prepare_intake gives for the body's JSON, read from its text when every message in it is
// valid and of the shape read_valid_message (intake_reader.hpp) takes: the usual body, at a third of the cost.
// nullopt for any other body, which the caller then parses and hands to prepare_intake.
std::optional<Intake> read_intake(std::string_view body, const ValidationRules& rules, int max_batch,
                                  const std::string& key_name, int64_t now_ms);

struct IntakeAnswer {
  int status = 202;
  std::string body;      // the JSON text
  bool problem = false;  // body is application/problem+json
  int64_t accepted = 0, duplicate = 0, rejected = 0, conflict = 0;
};

// The answer once the store has recorded `to_store` with `results` (in the same order).
IntakeAnswer answer_intake(const Intake& intake, const std::vector<store::AcceptResult>& results);

}  // namespace tayori::core
