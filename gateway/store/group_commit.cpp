// SqlStore's machinery, apart from what it stores: the writer thread that group-commits the operations the
// Store methods queue (submit, one transaction per group, each caller answered once its group is durable)
// and the pool of read connections their reads borrow. sql_store.cpp turns each Store method into such an
// operation or read; the SQL itself is in store/ops/, and the engine's differences behind SqlBackend.
#include <future>

#include "common/log.hpp"
#include "common/thread_name.hpp"
#include "store/ops/stats.hpp"
#include "store/sql_store.hpp"

namespace tayori::store {

SqlStore::SqlStore(std::unique_ptr<SqlBackend> backend, const SqlStoreOptions& options)
    : backend_(std::move(backend)), options_(options), writer_conn_(backend_->open_writer()) {
  // The only count of rows: once, at open; the writer keeps the counts from here (WriteContext::moved).
  StateCounts counts = backend_->initial_counts(*writer_conn_);
  for (size_t st = 0; st < counts.size(); ++st) state_counts_[st].store(counts[st], std::memory_order_relaxed);
  completer_ = std::thread([this] {
    name_this_thread("tayori-complete");
    complete_loop();
  });
  writer_ = std::thread([this] {
    name_this_thread("tayori-writer");
    write_loop();
  });
}

SqlStore::~SqlStore() { stop_writer(); }

void SqlStore::stop_writer() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  if (writer_.joinable()) writer_.join();
  // After the writer: the completions of its last groups still run, and every caller has its answer when
  // this returns, as when the writer ran them itself.
  {
    std::lock_guard lock(completions_mutex_);
    completer_stopping_ = true;
  }
  completions_ready_.notify_all();
  if (completer_.joinable()) completer_.join();
}

// ---- The reader pool ----

std::unique_ptr<sql::Connection> SqlStore::take_reader() {
  std::unique_lock lock(readers_mutex_);
  reader_returned_.wait(
      lock, [&] { return !readers_.empty() || options_.max_readers <= 0 || readers_out_ < options_.max_readers; });
  ++readers_out_;
  if (!readers_.empty()) {
    auto c = std::move(readers_.back());
    readers_.pop_back();
    return c;
  }
  lock.unlock();
  try {
    return backend_->open_reader();
  } catch (...) {
    lock.lock();
    --readers_out_;
    reader_returned_.notify_one();
    throw;
  }
}

void SqlStore::throw_read_error() {
  try {
    throw;
  } catch (const ReadError&) {
    throw;
  } catch (const sql::Error& e) {
    throw ReadError(e.to_error(), e.what());
  } catch (const std::exception& e) {
    // Not the engine's (a row the operation could not read): no short reason to give but the text itself.
    throw ReadError(Error{ErrorCode::internal, e.what()}, e.what());
  }
}

void SqlStore::give_back(std::unique_ptr<sql::Connection> c) {
  bool keep = c && backend_->usable(*c);
  std::lock_guard lock(readers_mutex_);
  --readers_out_;
  if (keep) readers_.push_back(std::move(c));
  reader_returned_.notify_one();
}

// ---- The writer ----

void SqlStore::submit(WriteOp apply, std::function<void(Result<void>)> complete) {
  {
    std::lock_guard lock(mutex_);
    if (stopping_) {
      if (complete) complete(Error{ErrorCode::unavailable, "the store is stopping"});
      return;
    }
    queue_.push_back({std::move(apply), std::move(complete)});
  }
  wake_.notify_one();
}

Result<void> SqlStore::submit_and_wait(WriteOp apply) {
  std::promise<Result<void>> done;
  auto future = done.get_future();
  submit(std::move(apply), [&done](Result<void> verdict) { done.set_value(std::move(verdict)); });
  return future.get();
}

void SqlStore::set_last_write_error(const std::string& why) {
  std::lock_guard lock(error_mutex_);
  last_write_error_ = why;
}

void SqlStore::write_loop() {
  std::vector<Operation> group;
  for (;;) {
    {
      std::unique_lock lock(mutex_);
      wake_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
      if (queue_.empty() && stopping_) return;
      while (!queue_.empty() && static_cast<int>(group.size()) < options_.max_group) {
        group.push_back(std::move(queue_.front()));
        queue_.pop_front();
      }
    }
    write_group(group);
    group.clear();
    backend_->between_groups(*writer_conn_);
  }
}

// The group commit. Operations almost never fail, so a group first runs them all in one transaction with
// no savepoints (a SAVEPOINT and a RELEASE per operation were two of the writer's statements per message).
// If one fails, that transaction is rolled back and the group runs again with each operation in its own
// savepoint, so one bad operation does not sink the others. Operations may therefore run twice: each one
// sets its results afresh rather than adding to them. Then one COMMIT, and every completion is told the
// commit's verdict, on the completer thread.
void SqlStore::write_group(std::vector<Operation>& group) {
  std::vector<Result<void>> verdicts(group.size());
  if (run_group(group, /*savepoints=*/false, verdicts) == GroupRun::op_failed)
    run_group(group, /*savepoints=*/true, verdicts);
  std::vector<Completion> done;
  done.reserve(group.size());
  for (size_t i = 0; i < group.size(); ++i)
    done.push_back({std::move(group[i].complete), std::move(verdicts[i]), std::move(group[i].apply)});
  {
    std::lock_guard lock(completions_mutex_);
    completions_.push_back(std::move(done));
  }
  completions_ready_.notify_one();
}

void SqlStore::complete_loop() {
  for (;;) {
    std::vector<Completion> group;
    {
      std::unique_lock lock(completions_mutex_);
      completions_ready_.wait(lock, [&] { return completer_stopping_ || !completions_.empty(); });
      if (completions_.empty()) return;  // stopping, and every completion has run
      group = std::move(completions_.front());
      completions_.pop_front();
    }
    for (Completion& c : group) {
      if (!c.complete) continue;  // a caller that does not wait for the outcome passes none
      // A completion belongs to the caller; one that throws must not take this thread, and every other
      // caller's answer, with it.
      try {
        c.complete(std::move(c.verdict));
      } catch (const std::exception& e) {
        log::error("store", std::string("a write's completion failed: ") + e.what());
      }
    }
  }
}

SqlStore::GroupRun SqlStore::run_group(std::vector<Operation>& group, bool savepoints,
                                       std::vector<Result<void>>& verdicts) {
  sql::Connection& c = *writer_conn_;
  WriteContext w;
  w.claimant = backend_->claimant();
  // The presence filter learns how the transaction ended: committed, or gone with everything it counted.
  struct FilterOutcome {
    PresenceFilter* filter;
    bool committed = false;
    ~FilterOutcome() {
      if (filter && !committed) filter->rolled_back();
    }
  } filter_outcome{backend_->presence_filter()};
  std::fill(verdicts.begin(), verdicts.end(), Result<void>());
  // Every operation of a group that failed as a whole is told why.
  auto group_failed = [&](const Error& why) {
    std::fill(verdicts.begin(), verdicts.end(), Result<void>(why));
    return GroupRun::failed;
  };
  // Transaction control is prepared once like any statement: parsing SAVEPOINT and RELEASE for every
  // operation cost the writer more than some operations themselves.
  try {
    backend_->begin_group(c);
    for (size_t i = 0; i < group.size(); ++i) {
      if (savepoints) {
        c.prepare("SAVEPOINT op").exec();
        if (filter_outcome.filter) filter_outcome.filter->mark();
      }
      auto moved_before = w.moved;
      // Copied only where an operation may be rolled back alone: its counts go with it.
      StatTally counts_before;
      if (savepoints) counts_before = w.counts;
      auto op_failed = [&](const char* what) {
        if (!savepoints) {
          // No savepoint to return to: the whole transaction goes, and the group runs again with them (which
          // logs the failure, once).
          c.exec("ROLLBACK");
          return true;
        }
        log::error("store", std::string("operation failed, rolled back: ") + what);
        c.prepare("ROLLBACK TO op").exec();
        c.prepare("RELEASE op").exec();
        if (filter_outcome.filter) filter_outcome.filter->rolled_back_to_mark();
        w.moved = moved_before;
        w.counts = std::move(counts_before);
        return false;
      };
      try {
        group[i].apply(c, w);
        if (savepoints) c.prepare("RELEASE op").exec();
      } catch (const sql::Error& e) {
        // Some errors (SQLite's FULL and IOERR, a lost PostgreSQL connection) roll back the whole
        // transaction: then there is no savepoint left to return to, and the group fails as a whole below.
        if (backend_->transaction_lost(c, e)) throw;
        set_last_write_error(e.why);
        verdicts[i] = e.to_error();
        if (op_failed(e.what())) return GroupRun::op_failed;
      } catch (const std::exception& e) {
        // Not the engine's (data the operation could not handle): that operation alone fails, like a
        // constraint would, and the writer goes on; an exception leaving this thread would end the process.
        verdicts[i] = Error{ErrorCode::internal, e.what()};
        if (op_failed(e.what())) return GroupRun::op_failed;
      }
    }
    // A statement an operation sent without waiting (sql::Statement::send) fails here at the latest, and which
    // operation sent it is not known: the group runs again with a savepoint each, whose RELEASE waits for it.
    if (!savepoints) {
      try {
        c.wait();
      } catch (const sql::Error& e) {
        if (backend_->transaction_lost(c, e)) throw;
        c.exec("ROLLBACK");
        return GroupRun::op_failed;
      }
    }
    // The group's counts, in the transaction of the writes that made them true.
    ops::add_stats(c, w.counts);
    c.prepare("COMMIT").exec();
    if (filter_outcome.filter) filter_outcome.filter->committed();
    filter_outcome.committed = true;
    commits_.fetch_add(1, std::memory_order_relaxed);
    for (size_t st = 0; st < state_counts_.size(); ++st)
      state_counts_[st].fetch_add(w.moved[st], std::memory_order_relaxed);
    pages_written_.fetch_add(backend_->pages_written(c), std::memory_order_relaxed);
    return GroupRun::committed;
  } catch (const sql::Error& e) {
    // Disk full, I/O error: nothing of this group is durable, and every caller is told so.
    log::error("store", std::string("group commit failed: ") + e.what());
    try {
      c.exec("ROLLBACK");
    } catch (const sql::Error&) {
      // The engine rolled back already.
    }
    set_last_write_error(e.why);
    return group_failed(e.to_error());
  } catch (const std::exception& e) {
    // Not the engine's error on a statement: the group could not even begin, e.g. a lost PostgreSQL
    // connection that cannot be opened again while the server is down. No transaction was started; the group
    // fails as a whole, and the writer lives on to reconnect at the next group (an exception leaving this
    // thread would end the process).
    log::error("store", std::string("group commit failed: ") + e.what());
    set_last_write_error("no connection to the database");
    return group_failed(Error{ErrorCode::unavailable, "no connection to the database"});
  }
}

}  // namespace tayori::store
