// The simulator's core: dispatch, recording, faults and the control API (see sim_core.hpp).
#include "sim_core.hpp"

#include <chrono>

#include "sim_util.hpp"
#include "crypto/crypto.hpp"

namespace tayori::sim {

using nlohmann::json;

namespace {

int64_t steady_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// The control API's own error shape: it is ours, not a provider's.
SimResponse control_error(int status, const std::string& message) {
  return json_response(status, {{"error", message}});
}

}  // namespace

// ---- Scheduler ---------------------------------------------------------------------------------------------

Scheduler::Scheduler(int workers) {
  for (int i = 0; i < workers; ++i) threads_.emplace_back([this] { work(); });
}

void Scheduler::after(int64_t delay_ms, std::function<void()> task) {
  {
    std::lock_guard lock(mu_);
    if (stopping_) return;
    queue_.push({steady_ns() + delay_ms * 1'000'000, seq_++, std::make_shared<std::function<void()>>(std::move(task))});
  }
  cv_.notify_all();
}

void Scheduler::work() {
  std::unique_lock lock(mu_);
  while (!stopping_) {
    if (queue_.empty()) {
      cv_.wait(lock);
      continue;
    }
    int64_t wait_ns = queue_.top().due_ns - steady_ns();
    if (wait_ns > 0) {
      cv_.wait_for(lock, std::chrono::nanoseconds(wait_ns));
      continue;
    }
    auto task = queue_.top().task;
    queue_.pop();
    lock.unlock();
    (*task)();
    task.reset();  // release what the task holds (a connection) before waiting again
    lock.lock();
  }
}

void Scheduler::stop() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  for (auto& t : threads_)
    if (t.joinable()) t.join();
  threads_.clear();
  std::lock_guard lock(mu_);
  while (!queue_.empty()) queue_.pop();
}

// ---- Simulator -------------------------------------------------------------------------------------------

Simulator::Simulator(std::vector<std::unique_ptr<Provider>> providers, uint64_t seed, Scheduler& scheduler,
                     int64_t record_limit)
    : providers_(std::move(providers)), scheduler_(scheduler), faults_(seed), record_limit_(record_limit) {}

void Simulator::dispatch(SimRequest request, Completion done) {
  Outcome o = answer(std::make_shared<const SimRequest>(std::move(request)));
  if (o.deferred) {
    scheduler_.after(o.delay_ms, [job = std::move(o.deferred), done = std::move(done)]() mutable { done(job()); });
  } else if (o.delay_ms > 0) {
    scheduler_.after(o.delay_ms, [r = std::move(o.response), done = std::move(done)]() mutable { done(std::move(r)); });
  } else {
    done(std::move(o.response));
  }
}

Provider* Simulator::route(std::string_view path) const {
  for (const auto& p : providers_)
    if (p->owns(path)) return p.get();
  return nullptr;
}

std::vector<std::string> Simulator::scope_names() const {
  std::vector<std::string> names;
  for (const auto& p : providers_) names.emplace_back(p->name());
  return names;
}

void Simulator::record(std::shared_ptr<const SimRequest> request, const Provider* provider) {
  std::string_view name = provider ? provider->name() : "none";
  auto counted = received_count_.find(name);
  if (counted == received_count_.end()) counted = received_count_.emplace(std::string(name), 0).first;
  ++counted->second;
  if (record_limit_ == 0) return;
  if (record_limit_ > 0 && static_cast<int64_t>(received_.size()) >= record_limit_) received_.pop_front();
  received_.push_back({next_request_id_++, provider ? provider->name() : nullptr, unix_ms(), std::move(request)});
}

json Simulator::to_json(const Recorded& recorded) {
  const SimRequest& r = *recorded.request;
  json headers = json::object();
  for (const auto& [k, v] : r.headers) {
    // A repeated header is folded as RFC 9110 §5.3 allows: values joined with ", ".
    if (headers.contains(k))
      headers[k] = headers[k].get<std::string>() + ", " + v;
    else
      headers[k] = v;
  }
  json entry = {{"id", recorded.id},
                {"provider", recorded.provider ? json(recorded.provider) : json(nullptr)},
                {"method", r.method},
                {"path", r.path},
                {"query", r.query},
                {"headers", headers},
                {"http_version", r.http_version},
                {"time_ms", recorded.time_ms}};
  // Bodies are kept byte for byte: as a JSON string when they are UTF-8 text (as every provider API sends),
  // otherwise base64 in "body_base64" (a JSON string cannot carry arbitrary bytes).
  if (is_valid_utf8(r.body))
    entry["body"] = r.body;
  else
    entry["body_base64"] = crypto::base64_encode(r.body);
  return entry;
}

Outcome Simulator::answer(std::shared_ptr<const SimRequest> shared) {
  const SimRequest& request = *shared;
  if (request.path.rfind("/_sim/", 0) == 0) return control(request);

  Provider* provider = route(request.path);
  // APNs speaks HTTP/2 only (Apple: "APNs requires the use of HTTP/2"); a client that reaches it over HTTP/1.1
  // would never work against the real service, so the simulator refuses instead of answering.
  bool wrong_protocol = provider && provider->http2_only() && request.http_version != "2";
  FaultDecision fault;
  {
    std::lock_guard lock(mu_);
    record(std::move(shared), provider);
    if (provider && !wrong_protocol) fault = faults_.decide(provider->name());
  }
  Outcome out;
  if (!provider) {
    out.response = json_response(404, {{"error", "tayori-sim: no simulated provider serves " + request.path}});
    return out;
  }
  if (wrong_protocol) {
    out.response = json_response(505, {{"error", std::string("tayori-sim: ") + provider->name() +
                                                     " is HTTP/2-only; use the --listen-h2 listener"}});
    return out;
  }
  out.delay_ms = fault.latency_ms;
  if (fault.drop) return out;  // no response: the listener closes the connection
  if (fault.status != 0) {
    SimResponse r = provider->error_for_status(fault.status);
    if (fault.retry_after && provider->sends_retry_after() && (fault.status == 429 || fault.status >= 500))
      r.headers.emplace_back("retry-after", std::to_string(*fault.retry_after));  // RFC 9110 §10.2.3, seconds
    out.response = std::move(r);
    return out;
  }
  out.response = provider->handle(request, *this);
  return out;
}

std::string Simulator::apply_faults(const json& doc) {
  auto check = [this](const std::string& scope, const std::string& code) -> std::string {
    for (const auto& p : providers_) {
      if (scope != "*" && scope != p->name()) continue;
      if (!p->contact_error(code, 0))
        return "provider \"" + std::string(p->name()) + "\" has no contact error \"" + code + "\"";
    }
    return {};
  };
  std::lock_guard lock(mu_);
  return faults_.apply(doc, scope_names(), check);
}

Outcome Simulator::control(const SimRequest& r) {
  Outcome out;
  const std::string& m = r.method;
  if (r.path == "/_sim/stats") {
    if (m != "GET") {
      out.response = control_error(405, "GET");
      return out;
    }
    std::lock_guard lock(mu_);
    json received = json::object();
    for (const auto& [name, n] : received_count_) received[name] = n;
    out.response = json_response(200, {{"received", received}, {"recorded", received_.size()}});
    return out;
  }
  if (r.path == "/_sim/requests") {
    if (m == "GET") {
      std::string only;
      for (const auto& [k, v] : form_decode(r.query))
        if (k == "provider") only = v;
      json list = json::array();
      std::lock_guard lock(mu_);
      for (const Recorded& e : received_)
        if (only.empty() || (e.provider && e.provider == only)) list.push_back(to_json(e));
      out.response = json_response(200, list);
    } else if (m == "DELETE") {
      std::lock_guard lock(mu_);
      received_.clear();
      received_count_.clear();
      out.response = json_response(200, json::object());
    } else {
      out.response = control_error(405, "GET or DELETE");
    }
    return out;
  }
  if (r.path == "/_sim/faults") {
    if (m == "GET") {
      std::lock_guard lock(mu_);
      out.response = json_response(200, faults_.to_json());
    } else if (m == "POST") {
      json doc = json::parse(r.body, nullptr, false);
      if (doc.is_discarded()) {
        out.response = control_error(400, "the body is not JSON");
      } else if (std::string err = apply_faults(doc); !err.empty()) {
        out.response = control_error(400, err);
      } else {
        std::lock_guard lock(mu_);
        out.response = json_response(200, faults_.to_json());
      }
    } else if (m == "DELETE") {
      std::lock_guard lock(mu_);
      faults_.clear();
      out.response = json_response(200, json::object());
    } else {
      out.response = control_error(405, "GET, POST or DELETE");
    }
    return out;
  }
  static constexpr std::string_view webhooks = "/_sim/webhooks/";
  if (r.path.rfind(webhooks, 0) == 0) {
    std::string name = r.path.substr(webhooks.size());
    for (const auto& p : providers_) {
      if (name != p->name()) continue;
      if (m != "POST") {
        out.response = control_error(405, "POST");
        return out;
      }
      auto job = p->webhook(r);
      if (!job) break;
      if (job->error)
        out.response = std::move(job->error);
      else
        out.deferred = std::move(job->send);  // network I/O: off the listener thread
      return out;
    }
    out.response = control_error(404, "no webhook sender for \"" + name + "\"");
    return out;
  }
  out.response = control_error(404, "unknown control path " + r.path);
  return out;
}

int64_t Simulator::now_ms() const { return unix_ms(); }

std::optional<std::string> Simulator::contact_code(const Provider& provider, std::string_view contact) {
  std::lock_guard lock(mu_);
  return faults_.contact_code(provider.name(), std::string(contact));
}

std::optional<SimResponse> Simulator::contact_fault(const Provider& provider, std::string_view contact) {
  auto code = contact_code(provider, contact);
  if (!code) return std::nullopt;
  return provider.contact_error(*code, now_ms());
}

void Simulator::run_later(int64_t delay_ms, std::function<void()> task) { scheduler_.after(delay_ms, std::move(task)); }

}  // namespace tayori::sim
