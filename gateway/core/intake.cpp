// Intake (intake.hpp): a POST /v1/messages body split and validated into what the store records, and the
// store's verdicts turned into the 202/207/400 answer. Pure: the API, :simulate and the benches share it.
#include "core/intake.hpp"

#include "common/json.hpp"
#include "common/time.hpp"
#include "core/intake_reader.hpp"
#include "core/stats.hpp"
#include "crypto/crypto.hpp"

namespace tayori::core {

namespace {

// What the store records of a message that passed validation (prepare_intake's and read_intake's alike):
// its canonical payload and hash, due time, first events and counts.
void accept_valid(Intake& intake, IntakeItem& item, Message&& m, std::string payload,
                  std::optional<store::RecipientUpdate> recipient, const std::string& key_name,
                  const std::string& accepted_detail, int64_t now_ms, const Json& local_send_at = Json()) {
  store::NewMessage nm;
  nm.id = m.id;
  nm.recipient_id = m.recipient.id;
  nm.recipient = std::move(recipient);
  nm.api_key = key_name;
  nm.payload = std::move(payload);
  nm.payload_hash = crypto::sha256_hex(nm.payload);
  nm.send_at_ms = m.send_at_ms;
  nm.expires_at_ms = m.expires_at_ms;
  nm.due_at_ms = m.send_at_ms.value_or(now_ms);
  nm.events.push_back({"accepted", accepted_detail});
  // `scheduled` says the message waits for the time its sender asked for (send_at). One due now says
  // nothing `accepted` does not: no row for it, a fifth of the store writer's work per message at intake.
  if (m.send_at_ms) {
    Json scheduled = {{"due_at", format_rfc3339_ms(nm.due_at_ms)}};
    if (m.send_at_local) scheduled["local"] = local_send_at;
    nm.events.push_back({"scheduled", dump_json(scheduled)});
  }
  add_counts(nm.counts, stat_subject(m, m.channels.empty() ? "" : m.channels.front()), store::StatCounter::accepted,
             now_ms);
  item.stored = static_cast<int>(intake.to_store.size());
  intake.to_store.push_back(std::move(nm));
  intake.validated.push_back(std::move(m));
}

// The detail of every message's `accepted` event.
std::string accepted_detail(const std::string& key_name) { return JsonObjectText().string("api_key", key_name).take(); }

}  // namespace

Intake prepare_intake(const Json& body, const ValidationRules& rules, int max_batch, const std::string& key_name,
                      int64_t now_ms) {
  Intake intake;
  intake.batch = body.is_object() && body.contains("messages");
  std::vector<const Json*> items;
  if (intake.batch) {
    const Json& list = body["messages"];
    for (auto it = body.begin(); it != body.end(); ++it)
      if (it.key() != "messages") intake.envelope_errors.push_back({"/" + it.key(), "is not a known field of a batch"});
    if (!list.is_array() || list.empty())
      intake.envelope_errors.push_back({"/messages", "must be a non-empty array of messages"});
    else if (list.size() > static_cast<size_t>(max_batch))
      intake.envelope_errors.push_back({"/messages", "has " + std::to_string(list.size()) + " messages, more than the " +
                                                         std::to_string(max_batch) + " allowed in one request"});
    if (!intake.envelope_errors.empty()) return intake;
    for (const Json& m : list) items.push_back(&m);
  } else {
    items.push_back(&body);
  }
  intake.items.resize(items.size());
  const std::string detail = accepted_detail(key_name);
  for (size_t i = 0; i < items.size(); ++i) {
    const Json& item = *items[i];
    IntakeItem& out = intake.items[i];
    if (item.is_object()) {
      auto id = item.find("id");
      if (id != item.end() && id->is_string()) out.id = id->get<std::string>();
    }
    ParsedMessage parsed = parse_message(item, rules, intake.batch ? "/messages/" + std::to_string(i) : "");
    if (!parsed.message) {
      out.errors = std::move(parsed.errors);
      continue;
    }
    bool local = parsed.message->send_at_local;
    accept_valid(intake, out, std::move(*parsed.message), canonical_json(item),
                 store::RecipientUpdate::of(item["recipient"]), key_name, detail, now_ms,
                 local ? item["send_at"] : Json());
  }
  return intake;
}

std::optional<Intake> read_intake(std::string_view body, const ValidationRules& rules, int max_batch,
                                  const std::string& key_name, int64_t now_ms) {
  JsonCursor in(body);
  // A batch's envelope has one member, "messages", and a message has none of that name (parse_message refuses
  // it), so the first name tells the two apart.
  JsonCursor ahead = in;
  std::string first;
  const bool batch = ahead.take('{') && ahead.string(first) && first == "messages";
  Intake intake;  // given back only when the whole body is read
  intake.batch = batch;
  const std::string detail = accepted_detail(key_name);
  auto read = [&](int depth) {
    std::optional<ValidMessage> valid = read_valid_message(in, rules, depth);
    if (!valid) return false;
    Message& m = valid->message;
    IntakeItem& item = intake.items.emplace_back();
    item.id = m.id;
    // What RecipientUpdate::of finds in the same object: the zone and locale given (a valid one is never
    // empty), the contacts' canonical text and their string values.
    store::RecipientUpdate update;
    if (!m.recipient.timezone.empty()) update.timezone = m.recipient.timezone;
    if (!m.recipient.locale.empty()) update.locale = m.recipient.locale;
    update.contacts_json = std::move(valid->contacts_json);
    for (const auto& [kind, point] : m.recipient.contacts) update.contact_points.push_back(point);
    accept_valid(intake, item, std::move(m), std::move(valid->payload), std::move(update), key_name, detail, now_ms);
    return true;
  };
  if (batch) {
    if (!in.take('{') || !in.string(first) || !in.take(':') || !in.take('[')) return std::nullopt;
    do {
      // A message of a batch is inside the envelope and its array.
      if (intake.items.size() == static_cast<size_t>(max_batch) || !read(2)) return std::nullopt;
    } while (in.take(','));
    if (!in.take(']') || !in.take('}')) return std::nullopt;
  } else if (!read(0)) {
    return std::nullopt;
  }
  if (!in.at_end()) return std::nullopt;
  return intake;
}

namespace {

Json problem_body(int status, const std::string& title, const std::string& detail, const Json& errors) {
  Json body = {{"type", "about:blank"}, {"title", title}, {"status", status}, {"detail", detail}};
  if (!errors.empty()) body["errors"] = errors;
  return body;
}

// The answer's JSON text is written member by member, keys in nlohmann's order (sorted), as dump_json would
// write the same value: building a Json per message and dumping it was most of the completion thread's work
// per message. A string that is not UTF-8 (a refused message's id, echoed) comes out as the error-tolerant
// dump writes it, each invalid byte as U+FFFD (append_json_string_replacing).

void append_member(std::string& out, const char* key) {
  if (out.back() != '{') out += ',';
  out += '"';
  out += key;
  out += "\":";
}

void append_errors(std::string& out, const std::vector<FieldError>& errors) {
  out += '[';
  for (size_t i = 0; i < errors.size(); ++i) {
    if (i) out += ',';
    out += R"({"detail":)";
    append_json_string_replacing(out, errors[i].detail);
    out += R"(,"pointer":)";
    append_json_string_replacing(out, errors[i].pointer);
    out += '}';
  }
  out += ']';
}

}  // namespace

IntakeAnswer answer_intake(const Intake& intake, const std::vector<store::AcceptResult>& results) {
  IntakeAnswer a;
  Json errors = Json::array();
  auto add_error = [&errors](const std::string& pointer, const std::string& detail) {
    errors.push_back({{"pointer", pointer}, {"detail", detail}});
  };
  if (!intake.envelope_errors.empty()) {
    for (const auto& e : intake.envelope_errors) add_error(e.pointer, e.detail);
    a.status = 400;
    a.problem = true;
    a.body = dump_json(problem_body(400, "Bad Request", "the batch is malformed", errors), InvalidUtf8::replace);
    return a;
  }
  // Each message's result: {"detail"?, "errors"?, "id", "index" (a batch's), "state"?, "status"}.
  std::string list = "[";
  std::string conflict_detail;  // the first conflict's, for a single message's 422
  for (size_t i = 0; i < intake.items.size(); ++i) {
    const IntakeItem& item = intake.items[i];
    if (i) list += ',';
    list += '{';
    std::string_view state, status;
    if (item.stored < 0) {
      ++a.rejected;
      status = "rejected";
      append_member(list, "errors");
      append_errors(list, item.errors);
      for (const auto& fe : item.errors) add_error(fe.pointer, fe.detail);
    } else {
      const store::AcceptResult& s = results.at(static_cast<size_t>(item.stored));
      state = store::to_string(s.state);
      switch (s.status) {
        case store::AcceptStatus::accepted:
          ++a.accepted;
          status = "accepted";
          break;
        case store::AcceptStatus::duplicate:
          ++a.duplicate;
          status = "duplicate";
          break;
        case store::AcceptStatus::conflict: {
          ++a.conflict;
          status = "conflict";
          std::string detail = "id \"" + item.id + "\" was already used for a different message";
          append_member(list, "detail");
          append_json_string_replacing(list, detail);
          add_error(intake.batch ? "/messages/" + std::to_string(i) + "/id" : "/id", detail);
          if (conflict_detail.empty()) conflict_detail = std::move(detail);
          break;
        }
      }
    }
    append_member(list, "id");
    if (item.id.empty())
      list += "null";
    else
      append_json_string_replacing(list, item.id);
    if (intake.batch) {
      append_member(list, "index");
      list += std::to_string(i);
    }
    if (!state.empty()) {
      append_member(list, "state");
      list += '"';
      list += state;  // a state's name needs no escaping
      list += '"';
    }
    append_member(list, "status");
    list += '"';
    list += status;
    list += "\"}";
  }
  list += ']';
  if (!intake.batch) {
    if (a.rejected) {
      a.status = 400;
      a.problem = true;
      a.body = dump_json(problem_body(400, "Bad Request", "the message is invalid", errors), InvalidUtf8::replace);
    } else if (a.conflict) {
      a.status = 422;
      a.problem = true;
      a.body = dump_json(problem_body(422, "Unprocessable Content", conflict_detail, errors), InvalidUtf8::replace);
    } else {
      a.body = list.substr(1, list.size() - 2);  // the one result, without the list's brackets
    }
    return a;
  }
  if (a.accepted + a.duplicate == 0) {
    a.status = 400;
    a.problem = true;
    a.body = dump_json(problem_body(400, "Bad Request", "no message of the batch could be accepted", errors),
                       InvalidUtf8::replace);
    return a;
  }
  a.body = "{\"accepted\":" + std::to_string(a.accepted) + ",\"conflict\":" + std::to_string(a.conflict) +
           ",\"duplicate\":" + std::to_string(a.duplicate) + ",\"rejected\":" + std::to_string(a.rejected) +
           ",\"results\":" + list + "}";
  return a;
}

}  // namespace tayori::core
