// Batching (plugin.h on_build_batch): the sans-I/O delivery path of delivery.cpp, for a channel whose
// plugin can carry several deliveries of identical content in one provider request (LINE multicast). It
// sits between the dispatcher, which hands each delivery to Channel::deliver, and the host transport, which
// then carries one request instead of many.
//
// The first delivery of a content opens a group and leads it: its caller waits until the batch window ends
// or batch_max deliveries have joined, closes the group, sends the one shared request and hands every member
// its verdict. A member's caller returns at once (its attempt, which owns the member's tayori_delivery, waits
// in the group), so a batch is not bounded by how many threads deliver. A member told to go alone is sent
// through on_build like any delivery, paced by the channel's pool.
#include <chrono>
#include <condition_variable>
#include <set>

#include "common/log.hpp"
#include "plugin/channel_internal.hpp"
#include "plugin/marshal.hpp"

namespace tayori::plugin {

namespace {

// Deliveries share a batch only when what the plugin may put in the shared request is identical
// (plugin.h on_build_batch): purpose, category, and every content field in order. Length-prefixed, so
// no two different deliveries produce the same key.
std::string batch_key(const tayori_delivery& d) {
  std::string key(1, d.purpose == TAYORI_PURPOSE_MARKETING ? 'm' : 't');
  auto add = [&key](tayori_str s) {
    key += std::to_string(s.len);
    key += ':';
    key += text(s);
  };
  add(d.category);
  for (size_t i = 0; i < d.content_count; ++i) {
    add(d.content[i].key);
    add(d.content[i].value);
  }
  return key;
}

}  // namespace

struct Channel::BatchMember {
  std::shared_ptr<Attempt> attempt;
  bool alone = false;       // set by the leader: deliver on your own (on_build/on_classify)
  DeliveryOutcome outcome;  // set by the leader otherwise
};

struct Channel::BatchGroup {
  std::vector<BatchMember> members;
  std::set<std::string_view> contacts;  // views into the members' attempts
  bool closed = false;                  // no one joins any more; the group has left open_batches_
  std::condition_variable full;
};

void Channel::deliver_batched(std::shared_ptr<Attempt> a) {
  const size_t batch_max = library_->descriptor().batch_max;
  const tayori_delivery& d = a->view.c;
  const std::string key = batch_key(d);
  std::unique_lock lock(batch_mutex_);
  if (auto it = open_batches_.find(key); it != open_batches_.end()) {
    std::shared_ptr<BatchGroup> group = it->second;
    // One request naming a contact twice might reach it once: the second delivery goes on its own.
    if (!group->contacts.insert(text(d.contact)).second) {
      lock.unlock();
      deliver_through_transport(std::move(a));
      return;
    }
    group->members.push_back(BatchMember{std::move(a), false, {}});
    if (group->members.size() >= batch_max) {
      group->closed = true;
      open_batches_.erase(it);
      group->full.notify_one();
    }
    return;  // the leader hands this one its verdict
  }

  auto group = std::make_shared<BatchGroup>();
  group->members.push_back(BatchMember{a, false, {}});
  group->contacts.insert(text(d.contact));
  open_batches_.emplace(key, group);
  group->full.wait_for(lock, std::chrono::milliseconds(batch_window_ms_), [&] { return group->closed; });
  if (!group->closed) {
    group->closed = true;
    open_batches_.erase(key);  // still this group: a group leaves the map only when it closes
  }
  lock.unlock();
  // Closed: nobody else touches group->members any more.
  std::vector<BatchMember> members = std::move(group->members);
  if (members.size() == 1) {
    deliver_through_transport(std::move(a));
    return;
  }
  try {
    send_batch(members);
  } catch (const std::exception& e) {
    // Host trouble (memory). The request may have gone out, so no member is resent now: all retry later.
    for (BatchMember& m : members) {
      m.alone = false;
      m.outcome = host_error(std::string("batch: ") + e.what());
    }
  }
  // Each member is finished on its own: one that fails to go out alone (no memory) must not leave the
  // members after it without a verdict, which would keep them in flight for ever.
  for (BatchMember& m : members) {
    try {
      if (m.alone)
        deliver_through_transport(m.attempt);
      else
        m.attempt->finish(std::move(m.outcome));
    } catch (const std::exception& e) {
      m.attempt->finish(host_error(e.what()));
    }
  }
}

void Channel::send_batch(std::vector<BatchMember>& members) {
  const tayori_plugin& p = library_->descriptor();
  std::vector<const tayori_delivery*> deliveries;
  for (const BatchMember& m : members) deliveries.push_back(&m.attempt->view.c);
  CollectedRequests collected{pool_key(), {}, {}};
  tayori_request_sink sink = collected.sink();
  char error[512] = {0};
  tayori_status st =
      p.on_build_batch(instance_, deliveries.data(), deliveries.size(), &sink, tayori_error_buf{error, sizeof error});
  if (st == TAYORI_RETRY_LATER) {  // a prerequisite (an OAuth grant) failed for now: nothing was sent
    circuit_.release(clock_.now_ms());
    for (BatchMember& m : members) {
      m.outcome.kind = OutcomeKind::retry;
      m.outcome.reason = error[0] ? std::string(error) : "plugin: build: retry later";
      m.outcome.cause = "prerequisite";
    }
    return;
  }
  if (st != TAYORI_OK || collected.requests.size() != 1) {
    // Nothing was sent, so delivering each on its own duplicates nothing; the single build says precisely
    // what is wrong with which delivery.
    std::string why = "it built " + std::to_string(collected.requests.size()) + " requests (a batch is one)";
    if (st != TAYORI_OK)
      why = error[0] ? std::string(error) : "it failed without saying why";
    else if (!collected.refused.empty())
      why = collected.refused;
    log::info("plugin." + name_,
              "a batch of " + std::to_string(members.size()) + " was not built, delivering each on its own: " + why);
    for (BatchMember& m : members) m.alone = true;
    return;
  }
  ++batches_sent_;
  transport::Response r = send(std::move(collected.requests.front()));
  with_response(r, [&](const tayori_response* resp) {
    for (BatchMember& m : members) {
      OutcomeBuffers buffers;
      m.outcome = to_outcome(p.on_classify(instance_, &m.attempt->view.c, resp, &buffers.out), buffers.out);
      if (m.outcome.kind == OutcomeKind::retry) m.outcome.cause = retry_cause(r);
      // A refused request delivered nothing, and a batch answer cannot name the recipient at fault.
      m.alone = m.outcome.kind == OutcomeKind::permanent;
    }
  });
}

}  // namespace tayori::plugin
