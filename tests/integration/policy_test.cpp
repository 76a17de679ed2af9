// The policy engine end to end, through the real binary: consent, suppression, quiet hours, frequency
// caps, simulation, templates, local send_at and the recipients API (docs/architecture.md §4).
//
// Both channels use the scripted fixture plugin, so every delivery attempt leaves a JSON line (its
// contact and rendered content) in the test folder, and a message's content scripts the provider's answer.
// Quiet hours are made deterministic without a fake clock: each recipient gets the fixed-offset zone
// ("Etc/GMT-9" is UTC+9, POSIX signs are inverted) in which the local time now is the hour the test needs.
#include <gtest/gtest.h>

#include <cstdio>
#include <ctime>
#include <set>

#include "harness.hpp"

namespace tayori::testing {
namespace {

// ---- Time helpers (the test's own arithmetic, independent of the gateway's) -------------------------

// A fixed-offset IANA zone and its offset in hours.
struct FixedZone {
  std::string name;
  int offset_h = 0;
};

// The Etc/GMT±N zone in which the local hour is `hour` right now.
FixedZone zone_with_local_hour(int hour) {
  time_t now = ::time(nullptr);
  tm utc{};
  ::gmtime_r(&now, &utc);
  int o = hour - utc.tm_hour;
  if (o < -12) o += 24;
  if (o > 14) o -= 24;
  // POSIX sign inversion: Etc/GMT-9 is nine hours *ahead* of UTC.
  std::string name = o == 0 ? "Etc/GMT" : o > 0 ? "Etc/GMT-" + std::to_string(o) : "Etc/GMT+" + std::to_string(-o);
  return {name, o};
}

std::string offset_text(int offset_h) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "%c%02d:00", offset_h < 0 ? '-' : '+', offset_h < 0 ? -offset_h : offset_h);
  return buf;
}

std::string format_utc_ms(int64_t ms) {
  time_t secs = static_cast<time_t>(ms / 1000);
  tm t{};
  ::gmtime_r(&secs, &t);
  char buf[64];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", t.tm_year + 1900, t.tm_mon + 1, t.tm_mday,
                t.tm_hour, t.tm_min, t.tm_sec, static_cast<int>(ms % 1000));
  return buf;
}

// "YYYY-MM-DDTHH:MM:SS[.mmm](Z|±HH:MM)" -> Unix ms; -1 when it does not parse.
int64_t parse_instant_ms(const std::string& s) {
  tm t{};
  int ms = 0;
  if (std::sscanf(s.c_str(), "%4d-%2d-%2dT%2d:%2d:%2d", &t.tm_year, &t.tm_mon, &t.tm_mday, &t.tm_hour, &t.tm_min,
                  &t.tm_sec) != 6)
    return -1;
  size_t pos = 19;
  if (pos < s.size() && s[pos] == '.') {
    ms = std::stoi(s.substr(pos + 1, 3));
    pos += 4;
  }
  int offset_s = 0;
  if (pos < s.size() && (s[pos] == '+' || s[pos] == '-'))
    offset_s = (s[pos] == '-' ? -1 : 1) * (std::stoi(s.substr(pos + 1, 2)) * 3600 + std::stoi(s.substr(pos + 4, 2)) * 60);
  else if (pos >= s.size() || s[pos] != 'Z')
    return -1;
  t.tm_year -= 1900;
  t.tm_mon -= 1;
  return (static_cast<int64_t>(::timegm(&t)) - offset_s) * 1000 + ms;
}

// The next local hh:00 in a fixed-offset zone: the recipient-local RFC 3339 text and the UTC instant.
struct LocalInstant {
  std::string local;
  int64_t utc_ms = 0;
};
LocalInstant next_local_hour(const FixedZone& zone, int hour) {
  time_t local = ::time(nullptr) + zone.offset_h * 3600;
  tm t{};
  ::gmtime_r(&local, &t);
  if (t.tm_hour >= hour) {
    local += 86400;
    ::gmtime_r(&local, &t);
  }
  t.tm_hour = hour;
  t.tm_min = 0;
  t.tm_sec = 0;
  int64_t local_secs = ::timegm(&t);
  char buf[64];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:00:00%s", t.tm_year + 1900, t.tm_mon + 1, t.tm_mday, hour,
                offset_text(zone.offset_h).c_str());
  return {buf, (local_secs - zone.offset_h * 3600LL) * 1000};
}

int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// ---- Fixture ---------------------------------------------------------------------------------------

class PolicyTest : public ::testing::Test {
 protected:
  void TearDown() override {
    if (HasFailure() && gw_) std::cerr << "gateway stderr:\n" << gw_->stderr_text();
  }

  // Two scripted channels: email (contact email) and sms (contact phone), each logging its attempts.
  std::string channels() const { return default_channels(dir_, "fixture_scripted", "sent"); }

  void start(const std::string& yaml, const std::string& dispatcher = "") {
    gw_ = std::make_unique<Gateway>(dir_, channels() + yaml, "", dispatcher);
    gw_->start();
  }

  static Json recipient(const std::string& id, const std::string& timezone = "UTC") {
    return {{"id", id},
            {"timezone", timezone},
            {"locale", "ja-JP"},
            {"contacts", {{"email", id + "@example.jp"}, {"phone", "+819012345678"}}}};
  }

  static Json message(const std::string& id, const Json& to, const std::string& purpose,
                      const std::vector<std::string>& channels, Json content = Json()) {
    if (content.is_null()) content = {{"subject", "お知らせ"}, {"text", "本文 " + id}};
    return {{"id", id}, {"recipient", to}, {"purpose", purpose}, {"channels", channels}, {"content", content}};
  }

  void submit(const Json& m) {
    HttpResult r = gw_->post_json(http_, "/v1/messages", m);
    ASSERT_EQ(r.status, 202) << r.body;
    ASSERT_EQ(r.json()["status"], "accepted") << r.body;
  }

  // GET /v1/messages/{id}; an empty object when there is no answer to parse.
  Json status(const std::string& id) {
    Json j = gw_->get(http_, "/v1/messages/" + id).json();
    return j.is_object() ? j : Json::object();
  }

  // Waits until the message reaches a final state and returns it ("timeout: <state>" otherwise).
  std::string final_state(const std::string& id) {
    // "http--1": the gateway is gone (crashed); waiting longer cannot help.
    static const std::set<std::string> kFinal = {"delivered", "failed", "suppressed", "cancelled", "http--1"};
    std::string s;
    if (eventually([&] { return kFinal.count(s = state_of(*gw_, http_, id)) > 0; })) return s;
    return "timeout: " + s;
  }

  // Submits and waits for the final state.
  std::string send(const Json& m) {
    submit(m);
    if (HasFatalFailure()) return "not accepted";
    return final_state(m["id"]);
  }

  // The detail of the last event of `type`, or null.
  static Json event(const Json& status, const std::string& type) {
    Json found;
    for (const auto& e : status.value("events", Json::array()))
      if (e["type"] == type) found = e["detail"];
    return found;
  }

  // The time of the last event of `type`, or "".
  static std::string event_at(const Json& status, const std::string& type) {
    std::string at;
    for (const auto& e : status.value("events", Json::array()))
      if (e["type"] == type) at = e["at"];
    return at;
  }

  bool has_event(const std::string& id, const std::string& type) { return !event(status(id), type).is_null(); }

  // The attempts the scripted channel saw for one message.
  std::vector<Json> sent(const std::string& channel, const std::string& id) const {
    std::vector<Json> out;
    for (auto& line : read_jsonl(dir_.file("sent-" + channel + ".jsonl")))
      if (line["message_id"] == id) out.push_back(line);
    return out;
  }

  TempDir dir_;
  std::unique_ptr<Gateway> gw_;
  HttpClient http_;
};

// ---- 1. Consent --------------------------------------------------------------------------------------

TEST_F(PolicyTest, ConsentGatesMarketingAndKeepsItsHistory) {
  start("");  // defaults: transactional opted_in, marketing opted_out
  Json to = recipient("c-1");

  // No consent recorded: the default (opted_out) skips the only channel.
  ASSERT_EQ(send(message("c-m1", to, "marketing", {"email"})), "suppressed");
  Json s = status("c-m1");
  EXPECT_EQ(s["last_reason"], "no_usable_channel");
  Json sup = event(s, "suppressed");
  EXPECT_EQ(sup["reason"], "no_usable_channel") << sup;
  ASSERT_EQ(sup["skipped"].size(), 1u) << sup;
  EXPECT_EQ(sup["skipped"][0]["channel"], "email");
  EXPECT_EQ(sup["skipped"][0]["reason"], "no_consent");
  EXPECT_EQ(sup["skipped"][0]["rule"], "consent.default");
  EXPECT_TRUE(sent("email", "c-m1").empty());

  // Opt in (with evidence): the next marketing message goes out.
  Json opt_in = {{"channel", "email"},
                 {"purpose", "marketing"},
                 {"state", "opted_in"},
                 {"source", "web_form"},
                 {"evidence", "https://shop.example.jp/forms/newsletter?submission=8812"}};
  HttpResult put = gw_->put_json(http_, "/v1/recipients/c-1/consent", opt_in);
  ASSERT_EQ(put.status, 200) << put.body;
  ASSERT_EQ(send(message("c-m2", to, "marketing", {"email"})), "delivered");
  ASSERT_EQ(sent("email", "c-m2").size(), 1u);
  EXPECT_EQ(sent("email", "c-m2")[0]["contact"], "c-1@example.jp");

  // Opt out again: suppressed, now by the recorded state.
  Json opt_out = {{"channel", "email"}, {"purpose", "marketing"}, {"state", "opted_out"}, {"source", "list_unsubscribe"}};
  put = gw_->put_json(http_, "/v1/recipients/c-1/consent", opt_out);
  ASSERT_EQ(put.status, 200) << put.body;
  ASSERT_EQ(send(message("c-m3", to, "marketing", {"email"})), "suppressed");
  sup = event(status("c-m3"), "suppressed");
  EXPECT_EQ(sup["skipped"][0]["reason"], "no_consent") << sup;
  EXPECT_EQ(sup["skipped"][0]["rule"], "consent.recorded") << sup;
  // Transactional needs no opt-in.
  EXPECT_EQ(send(message("c-t1", to, "transactional", {"email"})), "delivered");

  // Effective consent: the recorded one for email × marketing, defaults (flagged) elsewhere.
  HttpResult got = gw_->get(http_, "/v1/recipients/c-1/consent");
  ASSERT_EQ(got.status, 200) << got.body;
  Json consent = got.json()["consent"];
  std::map<std::string, Json> by_key;
  for (const auto& c : consent) by_key[c["channel"].get<std::string>() + "/" + c["purpose"].get<std::string>()] = c;
  ASSERT_EQ(by_key.size(), 4u) << got.body;
  EXPECT_EQ(by_key["email/marketing"]["state"], "opted_out");
  EXPECT_EQ(by_key["email/marketing"]["default"], false);
  EXPECT_EQ(by_key["email/marketing"]["source"], "list_unsubscribe");
  EXPECT_EQ(by_key["email/transactional"]["state"], "opted_in");
  EXPECT_EQ(by_key["email/transactional"]["default"], true);
  EXPECT_EQ(by_key["sms/marketing"]["state"], "opted_out");
  EXPECT_EQ(by_key["sms/marketing"]["default"], true);
  EXPECT_EQ(by_key["sms/transactional"]["default"], true);

  // History: every record, oldest first, none overwritten.
  got = gw_->get(http_, "/v1/recipients/c-1/consent/history");
  ASSERT_EQ(got.status, 200) << got.body;
  Json history = got.json()["history"];
  ASSERT_EQ(history.size(), 2u) << got.body;
  EXPECT_EQ(history[0]["state"], "opted_in");
  EXPECT_EQ(history[0]["source"], "web_form");
  EXPECT_EQ(history[0]["evidence"], opt_in["evidence"]);
  EXPECT_EQ(history[1]["state"], "opted_out");
  EXPECT_EQ(history[1]["source"], "list_unsubscribe");
  EXPECT_LE(parse_instant_ms(history[0]["at"]), parse_instant_ms(history[1]["at"]));
}

TEST_F(PolicyTest, ConsentRejectsInvalidRecordsWithPointers) {
  start("");
  auto errors_of = [](const HttpResult& r) {
    std::map<std::string, std::string> out;
    Json body = r.json();
    for (const auto& e : body["errors"]) out[e["pointer"].get<std::string>()] = e["detail"].get<std::string>();
    return out;
  };
  HttpResult r = gw_->put_json(http_, "/v1/recipients/c-2/consent",
                               {{"channel", "fax"}, {"purpose", "marketing"}, {"state", "maybe"}});
  ASSERT_EQ(r.status, 400) << r.body;
  EXPECT_EQ(r.headers["content-type"], "application/problem+json");
  auto errors = errors_of(r);
  EXPECT_TRUE(errors.count("/channel")) << r.body;
  EXPECT_NE(errors["/channel"].find("fax"), std::string::npos) << r.body;
  EXPECT_TRUE(errors.count("/state")) << r.body;
  EXPECT_FALSE(errors.count("/purpose")) << r.body;

  r = gw_->put_json(http_, "/v1/recipients/c-2/consent",
                    {{"channel", "email"}, {"purpose", "ads"}, {"state", "opted_in"}, {"source", "Web Form"},
                     {"colour", "blue"}});
  ASSERT_EQ(r.status, 400) << r.body;
  errors = errors_of(r);
  EXPECT_TRUE(errors.count("/purpose")) << r.body;
  EXPECT_TRUE(errors.count("/source")) << r.body;
  EXPECT_TRUE(errors.count("/colour")) << r.body;

  // A list: one bad record refuses the whole request, and each error names its index.
  Json list = {{"consent",
                {{{"channel", "email"}, {"purpose", "marketing"}, {"state", "opted_in"}},
                 {{"channel", "sms"}, {"purpose", "marketing"}, {"state", "yes"}}}}};
  r = gw_->put_json(http_, "/v1/recipients/c-2/consent", list);
  ASSERT_EQ(r.status, 400) << r.body;
  errors = errors_of(r);
  EXPECT_TRUE(errors.count("/consent/1/state")) << r.body;
  EXPECT_EQ(errors.size(), 1u) << r.body;

  HttpResult history = gw_->get(http_, "/v1/recipients/c-2/consent/history");
  ASSERT_EQ(history.status, 200) << history.body;
  EXPECT_TRUE(history.json()["history"].empty()) << history.body;

  // The same list, corrected, is appended whole.
  list["consent"][1]["state"] = "opted_out";
  r = gw_->put_json(http_, "/v1/recipients/c-2/consent", list);
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(gw_->get(http_, "/v1/recipients/c-2/consent/history").json()["history"].size(), 2u);
}

// ---- 2. Suppression ----------------------------------------------------------------------------------

TEST_F(PolicyTest, SuppressedContactIsSkippedListedAndRemovable) {
  start("");
  HttpResult r = gw_->post_json(http_, "/v1/suppressions", {{"contact", "s-1@example.jp"}, {"reason", "complaint"}});
  ASSERT_EQ(r.status, 201) << r.body;
  EXPECT_EQ(r.json()["contact"], "s-1@example.jp");
  EXPECT_EQ(r.json()["reason"], "complaint");
  EXPECT_EQ(r.json()["source"], "api");
  EXPECT_EQ(gw_->post_json(http_, "/v1/suppressions", {{"contact", ""}, {"reason", "Bad Reason"}}).status, 400);

  // Transactional does not bypass suppression: the only channel is skipped.
  Json email_only = {{"id", "s-1"}, {"contacts", {{"email", "s-1@example.jp"}}}};
  ASSERT_EQ(send(message("s-m1", email_only, "transactional", {"email"})), "suppressed");
  Json s = status("s-m1");
  EXPECT_EQ(s["last_reason"], "no_usable_channel");
  Json sup = event(s, "suppressed");
  ASSERT_EQ(sup["skipped"].size(), 1u) << sup;
  EXPECT_EQ(sup["skipped"][0]["channel"], "email");
  EXPECT_EQ(sup["skipped"][0]["reason"], "suppressed_contact");
  EXPECT_EQ(sup["skipped"][0]["rule"], "suppression.contact");
  EXPECT_TRUE(sent("email", "s-m1").empty());

  // With a second channel it falls back to it, and says what it skipped.
  Json both = recipient("s-1");
  ASSERT_EQ(send(message("s-m2", both, "transactional", {"email", "sms"})), "delivered");
  s = status("s-m2");
  EXPECT_EQ(s["channel"], "sms");
  Json dispatched = event(s, "dispatched");
  ASSERT_TRUE(dispatched.contains("skipped")) << s;
  EXPECT_EQ(dispatched["skipped"][0]["reason"], "suppressed_contact");
  EXPECT_TRUE(sent("email", "s-m2").empty());
  ASSERT_EQ(sent("sms", "s-m2").size(), 1u);
  EXPECT_EQ(sent("sms", "s-m2")[0]["contact"], "+819012345678");

  // Listing, paginated by contact.
  for (const char* c : {"aa-list@example.jp", "bb-list@example.jp"})
    ASSERT_EQ(gw_->post_json(http_, "/v1/suppressions", {{"contact", c}, {"reason", "manual"}}).status, 201);
  r = gw_->get(http_, "/v1/suppressions?limit=2");
  ASSERT_EQ(r.status, 200) << r.body;
  Json page = r.json();
  ASSERT_EQ(page["suppressions"].size(), 2u) << r.body;
  EXPECT_EQ(page["suppressions"][0]["contact"], "aa-list@example.jp");
  EXPECT_EQ(page["suppressions"][1]["contact"], "bb-list@example.jp");
  ASSERT_EQ(page["next_after"], "bb-list@example.jp") << r.body;
  r = gw_->get(http_, "/v1/suppressions?limit=2&after=bb-list%40example.jp");
  ASSERT_EQ(r.status, 200) << r.body;
  page = r.json();
  ASSERT_EQ(page["suppressions"].size(), 1u) << r.body;
  EXPECT_EQ(page["suppressions"][0]["contact"], "s-1@example.jp");
  EXPECT_EQ(page["suppressions"][0]["reason"], "complaint");
  EXPECT_TRUE(page["next_after"].is_null()) << r.body;
  EXPECT_EQ(gw_->get(http_, "/v1/suppressions?limit=0").status, 400);
  EXPECT_EQ(gw_->get(http_, "/v1/suppressions").json()["suppressions"].size(), 3u);

  // Removed: the contact is usable again.
  r = gw_->get(http_, "/v1/suppressions/s-1%40example.jp");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.json()["reason"], "complaint");
  r = gw_->del(http_, "/v1/suppressions/s-1%40example.jp");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(gw_->get(http_, "/v1/suppressions/s-1%40example.jp").status, 404);
  EXPECT_EQ(gw_->del(http_, "/v1/suppressions/s-1%40example.jp").status, 404);
  ASSERT_EQ(send(message("s-m3", email_only, "transactional", {"email"})), "delivered");
  EXPECT_EQ(sent("email", "s-m3").size(), 1u);
}

TEST_F(PolicyTest, ProviderDeactivationSuppressesTheContact) {
  start("");
  Json to = {{"id", "d-1"}, {"contacts", {{"email", "dead@example.jp"}}}};
  Json m = message("d-m1", to, "transactional", {"email"},
                   {{"subject", "x"}, {"text", "x"}, {"test_outcome", "permanent_deactivate"}});
  ASSERT_EQ(send(m), "failed");
  Json s = status("d-m1");
  EXPECT_EQ(s["last_reason"], "scripted.permanent_deactivate");
  Json deactivated = event(s, "contact_deactivated");
  ASSERT_FALSE(deactivated.is_null()) << s;
  EXPECT_EQ(deactivated["channel"], "email");
  EXPECT_EQ(deactivated["contact"], "dead@example.jp");
  EXPECT_EQ(deactivated["reason"], "scripted.permanent_deactivate");

  HttpResult r = gw_->get(http_, "/v1/suppressions/dead%40example.jp");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.json()["reason"], "scripted.permanent_deactivate");
  EXPECT_EQ(r.json()["source"], "channel.email");
  // The recipient's profile shows it too.
  r = gw_->get(http_, "/v1/recipients/d-1");
  ASSERT_EQ(r.status, 200) << r.body;
  ASSERT_EQ(r.json()["suppressed_contacts"].size(), 1u) << r.body;

  // Never used again.
  ASSERT_EQ(send(message("d-m2", to, "transactional", {"email"})), "suppressed");
  EXPECT_EQ(event(status("d-m2"), "suppressed")["skipped"][0]["reason"], "suppressed_contact");
  EXPECT_EQ(sent("email", "d-m2").size(), 0u);
}

// ---- 3. Quiet hours ----------------------------------------------------------------------------------

// Marketing consented by default: what holds a message back in sections 3 and 4 is the rule under test.
const std::string kMarketingOptedIn =
    "policy:\n"
    "  consent:\n"
    "    defaults:\n"
    "      marketing: opted_in\n";

const std::string kQuietPolicy = kMarketingOptedIn +
                                 "  quiet_hours:\n"
                                 "    - name: night\n"
                                 "      channels: [email]\n"
                                 "      purpose: marketing\n"
                                 "      from: \"21:00\"\n"
                                 "      to: \"08:00\"\n"
                                 "    - name: night_drop\n"
                                 "      channels: [sms]\n"
                                 "      from: \"21:00\"\n"
                                 "      to: \"08:00\"\n"
                                 "      action: drop\n";

TEST_F(PolicyTest, QuietHoursDeferToTheWindowsEndInLocalTime) {
  start(kQuietPolicy);
  // 02:xx local: the window closes today at 08:00; 22:xx local: tomorrow at 08:00.
  FixedZone early = zone_with_local_hour(2), late = zone_with_local_hour(22);
  LocalInstant early_end = next_local_hour(early, 8), late_end = next_local_hour(late, 8);

  submit(message("q-m1", recipient("q-1", early.name), "marketing", {"email"}));
  submit(message("q-m2", recipient("q-2", late.name), "marketing", {"email"}));
  for (auto [id, end] : {std::pair{"q-m1", early_end}, std::pair{"q-m2", late_end}}) {
    // `id` copied into the lambda by name: clang-14 (the sanitizer builds) cannot capture a structured binding.
    ASSERT_TRUE(eventually([&, id = id] { return has_event(id, "deferred"); })) << status(id);
    Json s = status(id);
    EXPECT_EQ(s["state"], "scheduled") << s;
    EXPECT_EQ(s["last_reason"], "quiet_hours");
    Json d = event(s, "deferred");
    EXPECT_EQ(d["reason"], "quiet_hours") << d;
    EXPECT_EQ(d["rule"], "quiet_hours.night") << d;
    EXPECT_EQ(d["channel"], "email") << d;
    EXPECT_EQ(d["until"], end.local) << d << " (zone " << (id == std::string("q-m1") ? early.name : late.name) << ")";
    EXPECT_EQ(s["due_at"], format_utc_ms(end.utc_ms)) << s;
    EXPECT_TRUE(sent("email", id).empty());
  }
}

TEST_F(PolicyTest, QuietHoursDropExpiryAndTransactionalBypass) {
  start(kQuietPolicy);
  FixedZone night = zone_with_local_hour(2), day = zone_with_local_hour(13);

  // action: drop.
  ASSERT_EQ(send(message("q-m3", recipient("q-3", night.name), "marketing", {"sms"})), "suppressed");
  Json s = status("q-m3");
  EXPECT_EQ(s["last_reason"], "quiet_hours");
  Json d = event(s, "suppressed");
  EXPECT_EQ(d["reason"], "quiet_hours") << d;
  EXPECT_EQ(d["rule"], "quiet_hours.night_drop") << d;
  EXPECT_EQ(d["window_ends"], next_local_hour(night, 8).local) << d;
  EXPECT_TRUE(sent("sms", "q-m3").empty());

  // A deferrable message that would expire before the window ends is dropped instead.
  Json expiring = message("q-m4", recipient("q-4", night.name), "marketing", {"email"});
  expiring["expires_at"] = format_utc_ms(now_ms() + 30 * 60'000);
  ASSERT_EQ(send(expiring), "suppressed");
  s = status("q-m4");
  EXPECT_EQ(s["last_reason"], "expires_in_quiet_hours");
  d = event(s, "suppressed");
  EXPECT_EQ(d["reason"], "expires_in_quiet_hours") << d;
  EXPECT_EQ(d["rule"], "quiet_hours.night") << d;

  // Transactional bypasses quiet hours; marketing outside the window goes now.
  ASSERT_EQ(send(message("q-t1", recipient("q-5", night.name), "transactional", {"email"})), "delivered");
  ASSERT_EQ(send(message("q-t2", recipient("q-6", night.name), "transactional", {"sms"})), "delivered");
  ASSERT_EQ(send(message("q-m5", recipient("q-7", day.name), "marketing", {"email", "sms"})), "delivered");
  EXPECT_EQ(sent("email", "q-m5").size(), 1u);
}

// ---- 4. Frequency caps -------------------------------------------------------------------------------

const std::string kCapPolicy = kMarketingOptedIn +
                               "  caps:\n"
                               "    - name: marketing_daily\n"
                               "      scope: all\n"
                               "      purpose: marketing\n"
                               "      limit: 3\n"
                               "      window: 24h\n"
                               "    - name: digest_hourly\n"
                               "      scope: channel\n"
                               "      channels: [email]\n"
                               "      purpose: marketing\n"
                               "      category: digest\n"
                               "      limit: 2\n"
                               "      window: 1h\n"
                               "      on_exceed: defer\n"
                               "    - name: promo_once\n"
                               "      scope: all\n"
                               "      purpose: marketing\n"
                               "      category: promo\n"
                               "      limit: 1\n"
                               "      window: 1h\n";

// Checks that an event's detail `d` names the cap `rule` as what held the message back, with its limit and
// window. By value: json's const operator[] asserts on a missing key, where a test should fail.
void expect_held_by_cap(Json d, const std::string& rule, int limit, const std::string& window) {
  EXPECT_EQ(d["reason"], "frequency_cap") << d;
  EXPECT_EQ(d["rule"], rule) << d;
  EXPECT_EQ(d["limit"], limit) << d;
  EXPECT_EQ(d["window"], window) << d;
}

TEST_F(PolicyTest, CapCountsMarketingAcrossChannelsOnly) {
  start(kCapPolicy);
  Json to = recipient("k-1");
  ASSERT_EQ(send(message("k-m1", to, "marketing", {"email"})), "delivered");
  ASSERT_EQ(send(message("k-t1", to, "transactional", {"email"})), "delivered");
  ASSERT_EQ(send(message("k-m2", to, "marketing", {"sms"})), "delivered");
  ASSERT_EQ(send(message("k-t2", to, "transactional", {"sms"})), "delivered");
  ASSERT_EQ(send(message("k-m3", to, "marketing", {"email"})), "delivered");

  ASSERT_EQ(send(message("k-m4", to, "marketing", {"sms"})), "suppressed");
  Json s = status("k-m4");
  EXPECT_EQ(s["last_reason"], "frequency_cap");
  Json d = event(s, "suppressed");
  expect_held_by_cap(d, "caps.marketing_daily", 3, "1d");
  EXPECT_EQ(d["counted"], 3) << d;
  EXPECT_TRUE(sent("sms", "k-m4").empty());

  // Transactional is neither counted nor capped; another recipient has its own budget.
  ASSERT_EQ(send(message("k-t3", to, "transactional", {"email"})), "delivered");
  ASSERT_EQ(send(message("k-o1", recipient("k-2"), "marketing", {"email"})), "delivered");
}

TEST_F(PolicyTest, CapDefersUntilTheOldestSlotLeavesTheWindow) {
  start(kCapPolicy);
  Json to = recipient("k-3", "Asia/Tokyo");
  auto digest = [&](const std::string& id) {
    Json m = message(id, to, "marketing", {"email"});
    m["category"] = "digest";
    return m;
  };
  ASSERT_EQ(send(digest("k-d1")), "delivered");
  ASSERT_EQ(send(digest("k-d2")), "delivered");
  // A slot is taken at the instant the message is cleared, which its `dispatched` event records.
  int64_t oldest = std::min(parse_instant_ms(event_at(status("k-d1"), "dispatched")),
                            parse_instant_ms(event_at(status("k-d2"), "dispatched")));
  ASSERT_GT(oldest, 0);

  submit(digest("k-d3"));
  ASSERT_TRUE(eventually([&] { return has_event("k-d3", "deferred"); })) << status("k-d3");
  Json s = status("k-d3");
  EXPECT_EQ(s["state"], "scheduled");
  EXPECT_EQ(s["last_reason"], "frequency_cap");
  Json d = event(s, "deferred");
  expect_held_by_cap(d, "caps.digest_hourly", 2, "1h");
  // Until = the oldest slot's time + 1h, shown in the recipient's zone; due_at carries it to the ms.
  EXPECT_EQ(s["due_at"], format_utc_ms(oldest + 3'600'000)) << s;
  std::string until = d["until"];
  EXPECT_TRUE(until.ends_with("+09:00")) << until;
  EXPECT_EQ(parse_instant_ms(until), (oldest + 3'600'000) / 1000 * 1000) << until;
  EXPECT_TRUE(sent("email", "k-d3").empty());

  // One that would expire before a slot frees up is suppressed at once.
  Json expiring = digest("k-d4");
  expiring["expires_at"] = format_utc_ms(now_ms() + 10 * 60'000);
  ASSERT_EQ(send(expiring), "suppressed");
  d = event(status("k-d4"), "suppressed");
  EXPECT_EQ(d["reason"], "frequency_cap") << d;
  EXPECT_EQ(d["rule"], "caps.digest_hourly") << d;
  EXPECT_EQ(d["expires_first"], true) << d;
}

TEST_F(PolicyTest, FailedDeliveriesGiveTheirSlotBack) {
  start(kCapPolicy, "retry_base: 10ms\n");
  Json to = recipient("k-4");
  // A permanent failure was never handed over: it does not use up the budget.
  ASSERT_EQ(send(message("k-p1", to, "marketing", {"email"},
                         {{"subject", "x"}, {"text", "x"}, {"test_outcome", "permanent"}})),
            "failed");
  EXPECT_EQ(status("k-p1")["last_reason"], "scripted.permanent");
  ASSERT_EQ(send(message("k-p2", to, "marketing", {"email"})), "delivered");
  ASSERT_EQ(send(message("k-p3", to, "marketing", {"sms"})), "delivered");
  ASSERT_EQ(send(message("k-p4", to, "marketing", {"email"})), "delivered");
  ASSERT_EQ(send(message("k-p5", to, "marketing", {"email"})), "suppressed");
  EXPECT_EQ(event(status("k-p5"), "suppressed")["rule"], "caps.marketing_daily");
}

TEST_F(PolicyTest, FallbackAfterAPermanentFailureHoldsOneSlot) {
  start(kCapPolicy);
  Json to = recipient("k-6");
  // Email fails permanently (scripted only there, through a per-channel variant); sms takes over.
  ASSERT_EQ(send(message("k-f1", to, "marketing", {"email", "sms"},
                         {{"subject", "x"}, {"text", "x"}, {"email", {{"test_outcome", "permanent"}}}})),
            "delivered");
  Json s = status("k-f1");
  EXPECT_EQ(s["channel"], "sms");
  Json failed = event(s, "attempt_failed");
  EXPECT_EQ(failed["channel"], "email") << s;
  EXPECT_EQ(failed["reason"], "scripted.permanent") << s;
  EXPECT_EQ(failed["fallback_to"], "sms") << s;
  EXPECT_EQ(sent("email", "k-f1").size(), 1u);
  EXPECT_EQ(sent("sms", "k-f1").size(), 1u);
  EXPECT_FALSE(sent("sms", "k-f1")[0]["content"].contains("test_outcome"));
  // One message, one slot: two more marketing messages fit in the cap of 3, a third does not.
  ASSERT_EQ(send(message("k-f2", to, "marketing", {"email"})), "delivered");
  ASSERT_EQ(send(message("k-f3", to, "marketing", {"email"})), "delivered");
  ASSERT_EQ(send(message("k-f4", to, "marketing", {"email"})), "suppressed");
}

TEST_F(PolicyTest, AMessageSuppressedOnItsRetryGivesItsSlotBack) {
  start(kCapPolicy);
  Json to = recipient("k-7");
  // Attempt 1 takes a slot and is told to come back in 1.5 s; meanwhile the recipient opts out.
  submit(message("k-s1", to, "marketing", {"email"},
                 {{"subject", "x"}, {"text", "x"}, {"test_succeed_from_attempt", "2"}, {"test_retry_after_ms", "1500"}}));
  ASSERT_TRUE(eventually([&] { return has_event("k-s1", "retry_scheduled"); })) << status("k-s1");
  Json out = {{"channel", "email"}, {"purpose", "marketing"}, {"state", "opted_out"}, {"source", "api"}};
  ASSERT_EQ(gw_->put_json(http_, "/v1/recipients/k-7/consent", out).status, 200);
  ASSERT_EQ(final_state("k-s1"), "suppressed");
  EXPECT_EQ(status("k-s1")["last_reason"], "no_usable_channel");
  EXPECT_EQ(sent("email", "k-s1").size(), 1u);
  // It was never handed over, so it must not count: three marketing messages still fit.
  out["state"] = "opted_in";
  ASSERT_EQ(gw_->put_json(http_, "/v1/recipients/k-7/consent", out).status, 200);
  for (const char* id : {"k-s2", "k-s3", "k-s4"}) {
    std::string state = send(message(id, to, "marketing", {"email"}));
    EXPECT_EQ(state, "delivered") << id << ": " << status(id)["last_reason"];
  }
}

TEST_F(PolicyTest, ARetriedMessageIsNotCappedByItsOwnSlot) {
  start(kCapPolicy, "retry_base: 10ms\n");
  // promo_once allows one promo per hour. The first attempt takes that slot and is told to retry; the
  // retry is the same message and must not be refused for the slot it holds itself.
  Json m = message("k-r1", recipient("k-5"), "marketing", {"email"},
                   {{"subject", "x"}, {"text", "x"}, {"test_succeed_from_attempt", "2"}});
  m["category"] = "promo";
  std::string state = send(m);
  Json s = status("k-r1");
  EXPECT_EQ(state, "delivered") << s;
  EXPECT_EQ(sent("email", "k-r1").size(), 2u) << s;
}

TEST_F(PolicyTest, CapHoldsExactlyUnderConcurrency) {
  start(kCapPolicy, "workers: 8\n");
  // Three recipients, twenty marketing messages each, interleaved in one batch: the workers clear
  // messages of the same recipient at the same time.
  const std::vector<std::string> recipients = {"k-race-a", "k-race-b", "k-race-c"};
  Json batch = {{"messages", Json::array()}};
  for (int i = 0; i < 20; ++i)
    for (const auto& rid : recipients)
      batch["messages"].push_back(message(rid + "-" + std::to_string(i), recipient(rid), "marketing", {"email"}));
  HttpResult r = gw_->post_json(http_, "/v1/messages", batch);
  ASSERT_EQ(r.status, 202) << r.body;
  ASSERT_EQ(r.json()["accepted"], 60) << r.body;
  for (const auto& rid : recipients) {
    std::map<std::string, int> states;
    std::map<std::string, int> reasons;
    for (int i = 0; i < 20; ++i) {
      std::string id = rid + "-" + std::to_string(i);
      std::string st = final_state(id);
      ++states[st];
      if (st == "suppressed") ++reasons[status(id)["last_reason"].get<std::string>()];
    }
    EXPECT_EQ(states["delivered"], 3) << rid << ": " << ::testing::PrintToString(states);
    EXPECT_EQ(states["suppressed"], 17) << rid << ": " << ::testing::PrintToString(states);
    EXPECT_EQ(reasons["frequency_cap"], 17) << rid << ": " << ::testing::PrintToString(reasons);
    size_t handed_over = 0;
    for (const auto& line : read_jsonl(dir_.file("sent-email.jsonl"))) handed_over += line["recipient_id"] == rid;
    EXPECT_EQ(handed_over, 3u) << rid;
  }
}

// ---- 5. Simulation -----------------------------------------------------------------------------------

TEST_F(PolicyTest, SimulateExplainsAndStoresNothing) {
  start(kCapPolicy +
        "  quiet_hours:\n"
        "    - name: night\n"
        "      channels: [sms]\n"
        "      from: \"21:00\"\n"
        "      to: \"08:00\"\n");
  Json to = recipient("sim-1");
  Json m = message("sim-m1", to, "marketing", {"email"},
                   {{"subject", "{{name}}さんへ"}, {"text", "こんにちは {{name}}さん"}});
  m["data"] = {{"name", "花子"}};

  HttpResult r = gw_->post_json(http_, "/v1/messages:simulate", m);
  ASSERT_EQ(r.status, 200) << r.body;
  Json sim = r.json();
  EXPECT_EQ(sim["id"], "sim-m1");
  EXPECT_EQ(sim["decision"], "send") << sim;
  EXPECT_EQ(sim["channel"], "email");
  EXPECT_EQ(sim["contact"], "sim-1@example.jp");
  EXPECT_EQ(sim["rendered"]["source"], "inline");
  EXPECT_EQ(sim["rendered"]["content"]["subject"], "花子さんへ") << sim;
  EXPECT_EQ(sim["rendered"]["content"]["text"], "こんにちは 花子さん") << sim;
  std::vector<std::string> stages;
  for (const auto& step : sim["trace"]) stages.push_back(step["stage"].get<std::string>() + ":" + step["result"].get<std::string>());
  EXPECT_EQ(stages, (std::vector<std::string>{"consent:pass", "quiet_hours:pass", "caps:pass"})) << sim;

  // Nothing stored, nothing sent, no profile created, no slot taken: five simulations, then three sends.
  for (int i = 0; i < 4; ++i) ASSERT_EQ(gw_->post_json(http_, "/v1/messages:simulate", m).status, 200);
  EXPECT_EQ(gw_->get(http_, "/v1/messages/sim-m1").status, 404);
  EXPECT_EQ(gw_->get(http_, "/v1/recipients/sim-1").status, 404);
  for (const char* id : {"sim-a", "sim-b", "sim-c"}) ASSERT_EQ(send(message(id, to, "marketing", {"email"})), "delivered");
  EXPECT_EQ(read_jsonl(dir_.file("sent-email.jsonl")).size(), 3u);

  // Now the cap is full: the simulation says so, with the rule.
  sim = gw_->post_json(http_, "/v1/messages:simulate", m).json();
  EXPECT_EQ(sim["decision"], "suppress") << sim;
  EXPECT_EQ(sim["reason"], "frequency_cap");
  EXPECT_EQ(sim["rule"], "caps.marketing_daily");
  EXPECT_FALSE(sim.contains("rendered"));
  ASSERT_EQ(send(message("sim-d", to, "marketing", {"email"})), "suppressed");

  // A deferral: quiet hours on sms, recipient at 02:xx local.
  FixedZone night = zone_with_local_hour(2);
  Json q = message("sim-q", recipient("sim-2", night.name), "marketing", {"sms"});
  sim = gw_->post_json(http_, "/v1/messages:simulate", q).json();
  EXPECT_EQ(sim["decision"], "defer") << sim;
  EXPECT_EQ(sim["rule"], "quiet_hours.night");
  EXPECT_EQ(sim["until"], next_local_hour(night, 8).local) << sim;
  EXPECT_EQ(gw_->get(http_, "/v1/messages/sim-q").status, 404);

  // Invalid messages get the same 400 as intake.
  r = gw_->post_json(http_, "/v1/messages:simulate", {{"id", "x"}, {"purpose", "spam"}});
  EXPECT_EQ(r.status, 400) << r.body;
  EXPECT_EQ(read_jsonl(dir_.file("sent-sms.jsonl")).size(), 0u);
}

// ---- 6. Templates ------------------------------------------------------------------------------------

TEST_F(PolicyTest, TemplatesPickTheLocaleAndChannelVariant) {
  fs::create_directories(dir_.path() / "templates" / "welcome");
  auto t = [&](const std::string& file, const std::string& text) {
    write_file((dir_.path() / "templates" / "welcome" / file).string(), text);
  };
  t("email.ja.yaml", "subject: \"{{name}}様、ようこそ\"\ntext: \"{{name}}様、ご登録ありがとうございます。\"\n");
  t("default.yaml", "subject: \"Welcome, {{name}}\"\ntext: \"Hello {{name}}, thanks for signing up.\"\n");
  t("sms.yaml", "text: \"{{name}}: welcome (sms)\"\n");
  start("templates:\n  dir: " + (dir_.path() / "templates").string() + "\n");

  auto welcome = [&](const std::string& id, const std::string& locale, const std::vector<std::string>& channels) {
    Json to = recipient("t-" + id);
    to["locale"] = locale;
    return Json{{"id", id}, {"recipient", to}, {"purpose", "transactional"}, {"channels", channels},
                {"template", "welcome"}, {"data", {{"name", "花子"}}}};
  };

  ASSERT_EQ(send(welcome("t-ja", "ja-JP", {"email"})), "delivered");
  ASSERT_EQ(sent("email", "t-ja").size(), 1u);
  EXPECT_EQ(sent("email", "t-ja")[0]["content"]["subject"], "花子様、ようこそ");
  EXPECT_EQ(sent("email", "t-ja")[0]["content"]["text"], "花子様、ご登録ありがとうございます。");

  ASSERT_EQ(send(welcome("t-en", "en-US", {"email"})), "delivered");
  EXPECT_EQ(sent("email", "t-en")[0]["content"]["subject"], "Welcome, 花子");

  ASSERT_EQ(send(welcome("t-sms", "ja-JP", {"sms"})), "delivered");
  EXPECT_EQ(sent("sms", "t-sms")[0]["content"]["text"], "花子: welcome (sms)");

  // An inline per-channel variant overrides the template on that channel only.
  Json v = welcome("t-var", "ja-JP", {"sms"});
  v["content"] = {{"sms", {{"text", "{{name}}様 SMS限定クーポン"}}}};
  ASSERT_EQ(send(v), "delivered");
  EXPECT_EQ(sent("sms", "t-var")[0]["content"]["text"], "花子様 SMS限定クーポン");
  v["id"] = "t-var-email";
  v["channels"] = {"email"};
  ASSERT_EQ(send(v), "delivered");
  EXPECT_EQ(sent("email", "t-var-email")[0]["content"]["subject"], "花子様、ようこそ");
  EXPECT_FALSE(sent("email", "t-var-email")[0]["content"].contains("sms"));

  // An unknown template is refused at intake.
  Json unknown = welcome("t-unknown", "ja-JP", {"email"});
  unknown["template"] = "farewell";
  HttpResult r = gw_->post_json(http_, "/v1/messages", unknown);
  ASSERT_EQ(r.status, 400) << r.body;
  Json body = r.json();
  ASSERT_FALSE(body["errors"].empty()) << r.body;
  EXPECT_EQ(body["errors"][0]["pointer"], "/template") << r.body;
  EXPECT_EQ(gw_->get(http_, "/v1/messages/t-unknown").status, 404);

  // A missing variable fails the message and names the variable; nothing is sent.
  Json missing = welcome("t-missing", "ja-JP", {"email"});
  missing.erase("data");
  ASSERT_EQ(send(missing), "failed");
  Json s = status("t-missing");
  std::string reason = s["last_reason"];
  EXPECT_TRUE(reason.starts_with("render_error")) << reason;
  EXPECT_NE(reason.find("\"name\""), std::string::npos) << reason;
  EXPECT_TRUE(sent("email", "t-missing").empty());
}

// ---- 7. Local send_at --------------------------------------------------------------------------------

TEST_F(PolicyTest, LocalSendAtIsTheRecipientsWallClock) {
  start("policy:\n  default_timezone: Asia/Tokyo\n");
  Json m = message("l-1", recipient("l-1", "Asia/Tokyo"), "transactional", {"email"});
  m["send_at"] = "2099-11-24T10:00:00";
  submit(m);
  Json s = status("l-1");
  EXPECT_EQ(s["state"], "scheduled");
  EXPECT_EQ(s["due_at"], "2099-11-24T01:00:00.000Z") << s;
  EXPECT_EQ(s["send_at"], "2099-11-24T01:00:00.000Z") << s;
  EXPECT_EQ(event(s, "scheduled")["local"], "2099-11-24T10:00:00") << s;

  // DST is the zone's own: New York is UTC-4 in July and UTC-5 in January.
  Json summer = message("l-2", recipient("l-2", "America/New_York"), "transactional", {"email"});
  summer["send_at"] = "2099-07-01T09:00:00";
  submit(summer);
  EXPECT_EQ(status("l-2")["due_at"], "2099-07-01T13:00:00.000Z");
  Json winter = message("l-3", recipient("l-3", "America/New_York"), "transactional", {"email"});
  winter["send_at"] = "2099-01-15T09:00:00";
  submit(winter);
  EXPECT_EQ(status("l-3")["due_at"], "2099-01-15T14:00:00.000Z");

  // With an offset it is an instant, whatever the recipient's zone.
  Json absolute = message("l-4", recipient("l-4", "Asia/Tokyo"), "transactional", {"email"});
  absolute["send_at"] = "2099-11-24T10:00:00+02:00";
  submit(absolute);
  EXPECT_EQ(status("l-4")["due_at"], "2099-11-24T08:00:00.000Z");

  // Without a zone in the message: the stored profile's zone (New York, EST in November), then
  // policy.default_timezone (Asia/Tokyo here) for a recipient the gateway knows nothing about.
  ASSERT_EQ(gw_->put_json(http_, "/v1/recipients/l-5", {{"timezone", "America/New_York"}}).status, 200);
  auto no_zone = [](const std::string& id) {
    return Json{{"id", id},
                {"recipient", {{"id", id}, {"contacts", {{"email", id + "@example.jp"}}}}},
                {"purpose", "transactional"},
                {"channels", {"email"}},
                {"content", {{"text", "x"}}},
                {"send_at", "2099-11-24T10:00:00"}};
  };
  submit(no_zone("l-5"));
  EXPECT_EQ(status("l-5")["due_at"], "2099-11-24T15:00:00.000Z") << "the profile's America/New_York";
  submit(no_zone("l-6"));
  EXPECT_EQ(status("l-6")["due_at"], "2099-11-24T01:00:00.000Z") << "policy.default_timezone Asia/Tokyo";
  for (const char* id : {"l-1", "l-2", "l-3", "l-4", "l-5", "l-6"}) EXPECT_EQ(state_of(*gw_, http_, id), "scheduled");
}

// ---- 8. Recipients -----------------------------------------------------------------------------------

TEST_F(PolicyTest, RecipientsCompleteMessagesAndCanBeErased) {
  start("");
  Json profile = {{"timezone", "Asia/Tokyo"},
                  {"locale", "ja-JP"},
                  {"contacts", {{"email", "hanako@example.jp"}, {"phone", "+819011112222"}}}};
  HttpResult r = gw_->put_json(http_, "/v1/recipients/p-1", profile);
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.json()["id"], "p-1");
  r = gw_->get(http_, "/v1/recipients/p-1");
  ASSERT_EQ(r.status, 200) << r.body;
  Json got = r.json();
  EXPECT_EQ(got["timezone"], "Asia/Tokyo");
  EXPECT_EQ(got["locale"], "ja-JP");
  EXPECT_EQ(got["contacts"], profile["contacts"]);
  EXPECT_EQ(got["erased"], false);
  EXPECT_EQ(gw_->get(http_, "/v1/recipients/nobody").status, 404);
  r = gw_->put_json(http_, "/v1/recipients/p-x", {{"timezone", "Mars/Olympus"}, {"contacts", {{"phone", "0901"}}}});
  ASSERT_EQ(r.status, 400) << r.body;

  // A message naming only the recipient id: the stored contact is used.
  Json by_id = {{"id", "p-m1"},
                {"recipient", {{"id", "p-1"}}},
                {"purpose", "transactional"},
                {"channels", {"sms"}},
                {"content", {{"text", "ご予約の確認"}}}};
  ASSERT_EQ(send(by_id), "delivered");
  ASSERT_EQ(sent("sms", "p-m1").size(), 1u);
  EXPECT_EQ(sent("sms", "p-m1")[0]["contact"], "+819011112222");

  Json later = by_id;
  later["id"] = "p-m2";
  later["send_at"] = "2099-01-01T09:00:00+09:00";
  submit(later);
  EXPECT_EQ(state_of(*gw_, http_, "p-m2"), "scheduled");

  // Erasure.
  r = gw_->del(http_, "/v1/recipients/p-1");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.json()["erased"], true);
  got = gw_->get(http_, "/v1/recipients/p-1").json();
  EXPECT_EQ(got["erased"], true) << got;
  EXPECT_TRUE(got["contacts"].empty()) << got;
  EXPECT_TRUE(got["timezone"].is_null()) << got;
  EXPECT_TRUE(got["locale"].is_null()) << got;

  Json s = status("p-m2");
  EXPECT_EQ(s["state"], "cancelled") << s;
  EXPECT_EQ(s["message"], (Json{{"erased", true}})) << s;
  EXPECT_EQ(event(s, "cancelled")["reason"], "recipient_erased") << s;
  s = status("p-m1");
  EXPECT_EQ(s["state"], "delivered") << s;
  EXPECT_EQ(s["message"], (Json{{"erased", true}})) << s;
  EXPECT_EQ(s["message"].dump().find("+8190"), std::string::npos);
  EXPECT_EQ(gw_->del(http_, "/v1/recipients/nobody").status, 404);

  // The erased profile no longer completes messages.
  by_id["id"] = "p-m3";
  ASSERT_EQ(send(by_id), "suppressed");
  Json d = event(status("p-m3"), "suppressed");
  EXPECT_EQ(d["skipped"][0]["reason"], "no_contact") << d;
}

}  // namespace
}  // namespace tayori::testing
