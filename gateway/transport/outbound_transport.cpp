// The outbound transport's engine: one worker thread drives a libcurl multi handle for every request a
// channel plugin (or a webhook) sends -- the transport step of message → dispatcher → channel plugin →
// transport → provider. Callers submit from any thread and get their completion on the worker; the loop
// holds each request in its pool's queue until the pool's concurrency and rate limits let it start, adds
// it to the multi handle, and completes it when libcurl is done. It treats HTTP and SMTP transfers alike
// (http_transfer.cpp, smtp_transfer.cpp), except that by default SMTP runs on a second transport of its
// own, since libcurl can block its multi handle while a mail server answers.
//
// The loop is libcurl's event-driven interface (curl_multi_socket_action) over epoll, not
// curl_multi_perform + curl_multi_poll: with 64 requests on the wire, curl_multi_perform visits every one
// of them on each wake-up and polls each socket on its own (7.88 Curl_readwrite → Curl_socket_check), so a
// single answer cost 64 poll calls; socket_action is told which socket is ready and touches that transfer
// alone. Callers wake the loop through an eventfd, written only when the loop is (about to be) asleep.
#include <tayori/text.hpp>

#include "transport/outbound_transport.hpp"

#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <stdexcept>
#include <thread>
#include <unordered_map>

#include "common/thread_name.hpp"
#include "transport/http1_engine.hpp"
#include "transport/http1_wire.hpp"
#include "transport/transfer.hpp"

namespace tayori::transport {

namespace {

constexpr const char* kShutdownText = "transport shut down";

int64_t steady_now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

void global_init_once() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

struct Pool {
  std::deque<std::unique_ptr<Transfer>> pending;
  int active = 0;
};

}  // namespace

struct OutboundTransport::Impl {
  TransportOptions options;
  CURLM* multi = nullptr;
  int epoll_fd = -1;
  int wake_fd = -1;  // an eventfd: callers write to it, the loop's epoll_wait returns
  // True while the loop may be in (or on its way into) epoll_wait; a caller that sets it false wakes it.
  // Saves the eventfd write, a syscall per request, while the loop is busy anyway.
  std::atomic<bool> may_sleep{false};

  std::mutex mu;  // guards the fields up to `worker`
  std::vector<std::unique_ptr<Transfer>> incoming;
  std::map<std::string, PoolOptions> pool_config;
  uint64_t config_version = 0;
  bool stopping = false;

  std::mutex shutdown_mu;
  std::thread worker;

  // Connections opened (CURLINFO_NUM_CONNECTS), per pool key; written by the worker, read by any thread.
  mutable std::mutex stats_mu;
  std::map<std::string, uint64_t> opened_by_pool;

  // Worker-thread state.
  std::map<std::string, PoolOptions> config_copy;
  uint64_t config_seen = ~uint64_t{0};
  std::map<std::string, Pool> pools;
  std::unordered_map<Transfer*, std::unique_ptr<Transfer>> running;
  long cache_size = 0;  // the CURLMOPT_MAXCONNECTS last set
  // The sockets libcurl watches (on_socket), and the connections' sockets it keeps open between transfers.
  struct Watch {
    uint32_t in_epoll = 0;  // the events the epoll set holds for it; 0: not in the set
    bool wanted = false;    // libcurl waits on it now
    bool ours = false;      // opened by on_open_socket: its close comes to on_close_socket
  };
  std::unordered_map<curl_socket_t, Watch> sockets;
  // libcurl's timer (CURLMOPT_TIMERFUNCTION): when to call socket_action(CURL_SOCKET_TIMEOUT), -1 = none.
  int64_t timer_due_ms = -1;
  // Easy handles of finished transfers, reset and kept for the next ones: curl_easy_init allocates and
  // initialises a handle of several KiB (and its buffers) that curl_easy_reset leaves in place.
  std::vector<CURL*> idle_easy;
  // The HTTP/1.1 requests own_client_target() gives it (http1_engine.hpp); libcurl carries the rest.
  std::unique_ptr<Http1Engine> http1;
  Http1Routing http1_routing{proxy_in_environment(false), proxy_in_environment(true), {}};

  // Where the own client takes t, or nothing when libcurl carries it; decided on this thread as it starts.
  std::optional<Http1Target> own_client_target_of(const Transfer& t) const {
    // A cap on connections per host is libcurl's to keep (CURLMOPT_MAX_HOST_CONNECTIONS): one client holds them all.
    if (options.max_connections_per_host > 0) return std::nullopt;
    return own_client_target(t.request, http1_routing);
  }

  // An https:// origin that answered libcurl in HTTP/1.1 offers no HTTP/2: the own client carries it next.
  void learn_origin(const Transfer& t) {
    if (t.own_client || t.request.kind != RequestKind::Http || t.response.http_version_used != "1.1") return;
    if (std::optional<Http1Target> target = parse_http1_target(t.request.url); target && target->tls)
      http1_routing.origins_answering_http1.insert(target->origin());
  }

  ~Impl() {
    http1.reset();
    for (CURL* e : idle_easy) curl_easy_cleanup(e);
    if (epoll_fd >= 0) ::close(epoll_fd);
    if (wake_fd >= 0) ::close(wake_fd);
  }

  void wake() {
    if (may_sleep.exchange(false)) {
      const uint64_t one = 1;
      [[maybe_unused]] ssize_t n = ::write(wake_fd, &one, sizeof one);  // fails only when the counter is full
    }
  }

  // CURLMOPT_SOCKETFUNCTION: libcurl says which sockets it waits on, and for what. Each change is an epoll_ctl,
  // a system call as costly as the request's own send (perf: a tenth of this thread), so the epoll set is
  // changed only when what it holds differs from what libcurl asks. A kept-alive connection going back to
  // libcurl's cache (CURL_POLL_REMOVE) stays in the set for reading: its next request waits for an answer on it
  // again, and an event on it meanwhile means the server closed it (run() takes it out then). That is safe only
  // for a socket whose close this transport hears of (on_close_socket), or a later socket given the same number
  // would be taken for it: any other socket (libcurl's resolver has its own) leaves the set at REMOVE.
  static int on_socket(CURL*, curl_socket_t s, int what, void* user, void*) {
    auto* self = static_cast<Impl*>(user);
    Watch& w = self->sockets[s];
    if (what == CURL_POLL_REMOVE) {
      w.wanted = false;
      if (w.in_epoll != 0 && (!w.ours || (w.in_epoll & EPOLLOUT) != 0)) self->leave_epoll(s, w);
      if (!w.ours) self->sockets.erase(s);
      return 0;
    }
    const uint32_t events = (what & CURL_POLL_IN ? EPOLLIN : 0u) | (what & CURL_POLL_OUT ? EPOLLOUT : 0u);
    w.wanted = true;
    if (w.in_epoll == events) return 0;
    epoll_event ev{};
    ev.events = events;
    ev.data.fd = s;
    // The fallbacks cover a socket libcurl closed without a REMOVE, whose number came back.
    if (::epoll_ctl(self->epoll_fd, w.in_epoll != 0 ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, s, &ev) != 0) {
      if (errno == ENOENT)
        ::epoll_ctl(self->epoll_fd, EPOLL_CTL_ADD, s, &ev);
      else if (errno == EEXIST)
        ::epoll_ctl(self->epoll_fd, EPOLL_CTL_MOD, s, &ev);
    }
    w.in_epoll = events;
    return 0;
  }

  void leave_epoll(curl_socket_t s, Watch& w) {
    // libcurl may report the removal after it closed the socket (EBADF), which epoll forgot already.
    ::epoll_ctl(epoll_fd, EPOLL_CTL_DEL, s, nullptr);
    w.in_epoll = 0;
  }

  // CURLOPT_OPENSOCKETFUNCTION and CURLOPT_CLOSESOCKETFUNCTION, set on every transfer: the connections' sockets,
  // opened and closed here so that on_socket knows which numbers are still theirs.
  static curl_socket_t on_open_socket(void* user, curlsocktype, curl_sockaddr* address) {
    auto* self = static_cast<Impl*>(user);
    const int s = ::socket(address->family, address->socktype | SOCK_CLOEXEC, address->protocol);
    if (s < 0) return CURL_SOCKET_BAD;
    self->sockets[s] = Watch{0, false, true};  // a number closed behind our back starts afresh
    return s;
  }
  static int on_close_socket(void* user, curl_socket_t s) {
    static_cast<Impl*>(user)->sockets.erase(s);  // the kernel takes a closed socket out of the epoll set
    return ::close(s);
  }

  // CURLMOPT_TIMERFUNCTION: one timer for the whole multi handle, replaced at every call.
  static int on_timer(CURLM*, long timeout_ms, void* user) {
    auto* self = static_cast<Impl*>(user);
    self->timer_due_ms = timeout_ms < 0 ? -1 : steady_now_ms() + timeout_ms;
    return 0;
  }

  CURL* take_easy() {
    if (idle_easy.empty()) return curl_easy_init();
    CURL* e = idle_easy.back();
    idle_easy.pop_back();
    return e;
  }

  // The handle of a transfer that has left the multi handle, reset for the next one. Kept up to the
  // number of transfers that may run at once, so a burst's handles do not all stay.
  void recycle_easy(Transfer& t) {
    CURL* e = t.release_easy();
    if (!e) return;
    if (idle_easy.size() >= static_cast<size_t>(std::max(1L, cache_size))) {
      curl_easy_cleanup(e);
      return;
    }
    curl_easy_reset(e);
    idle_easy.push_back(e);
  }

  int max_concurrent(const PoolOptions* p) const {
    const int n = p && p->max_concurrent > 0 ? p->max_concurrent : options.default_max_concurrent;
    return std::max(1, n);
  }

  int max_concurrent(const std::string& pool_key) const {
    auto it = config_copy.find(pool_key);
    return max_concurrent(it == config_copy.end() ? nullptr : &it->second);
  }

  void count_connections(const Transfer& t, long opened) {
    if (opened <= 0) return;
    std::lock_guard lock(stats_mu);
    opened_by_pool[t.pool] += static_cast<uint64_t>(opened);
  }

  // libcurl keeps at most CURLMOPT_MAXCONNECTS idle connections; unset, that is 4 x the easy handles
  // currently added (7.88 conncache.c), and this transport removes each handle when its transfer ends, so
  // after a burst the cache shrinks with the load and kept connections are closed, to be opened again by
  // the next burst. Every pool may run its max_concurrent transfers on connections of its own (HTTP/1.1),
  // so the cache holds that many for every pool known so far.
  void size_connection_cache() {
    long total = 0;
    for (const auto& [key, pool] : pools) total += max_concurrent(key);
    for (const auto& [key, cfg] : config_copy)
      if (!pools.count(key)) total += max_concurrent(&cfg);
    if (total != cache_size) {
      cache_size = total;
      curl_multi_setopt(multi, CURLMOPT_MAXCONNECTS, std::max(1L, total));
    }
  }

  // Starts what the pool limits allow; returns ms until a rate-limited pool may start (-1 = none waits).
  int64_t start_ready() {
    int64_t wait = -1;
    const int64_t now = steady_now_ms();
    for (auto& [key, pool] : pools) {
      auto cfg_it = config_copy.find(key);
      const PoolOptions* cfg = cfg_it == config_copy.end() ? nullptr : &cfg_it->second;
      const int limit = max_concurrent(cfg);
      while (!pool.pending.empty() && pool.active < limit) {
        // Asked before the rate limiter: a request that will not start spends no token.
        if (Transfer& next = *pool.pending.front(); next.request.admit && !admitted(next)) {
          std::unique_ptr<Transfer> t = std::move(pool.pending.front());
          pool.pending.pop_front();
          t->response.not_started = true;
          t->complete();
          continue;
        }
        if (cfg && cfg->rate_limiter && !cfg->rate_limiter->try_acquire(now)) {
          const int64_t w = std::max<int64_t>(1, cfg->rate_limiter->next_available(now) - now);
          wait = wait < 0 ? w : std::min(wait, w);
          break;
        }
        std::unique_ptr<Transfer> t = std::move(pool.pending.front());
        pool.pending.pop_front();
        if (std::optional<Http1Target> target = own_client_target_of(*t)) {
          t->own_client = true;
          if (CURLcode rc = t->check_request(); rc != CURLE_OK) {
            t->fail(rc, t->errbuf);
            t->complete();
            continue;
          }
          ++pool.active;
          http1->start(std::move(t), std::move(*target), limit, now);
          continue;
        }
        CURLcode rc = t->setup(options, take_easy());
        if (rc == CURLE_OK) {
          curl_easy_setopt(t->easy, CURLOPT_OPENSOCKETFUNCTION, &Impl::on_open_socket);
          curl_easy_setopt(t->easy, CURLOPT_OPENSOCKETDATA, static_cast<void*>(this));
          curl_easy_setopt(t->easy, CURLOPT_CLOSESOCKETFUNCTION, &Impl::on_close_socket);
          curl_easy_setopt(t->easy, CURLOPT_CLOSESOCKETDATA, static_cast<void*>(this));
          CURLMcode mrc = curl_multi_add_handle(multi, t->easy);
          if (mrc != CURLM_OK) {
            t->fail(CURLE_FAILED_INIT, std::string("curl_multi_add_handle: ") + curl_multi_strerror(mrc));
            recycle_easy(*t);
            t->complete();
            continue;
          }
          ++pool.active;
          Transfer* raw = t.get();
          running.emplace(raw, std::move(t));
        } else {
          std::string text = t->errbuf[0] ? std::string(t->errbuf) : std::string(curl_easy_strerror(rc));
          t->fail(rc, std::move(text));
          recycle_easy(*t);
          t->complete();
        }
      }
    }
    return wait;
  }

  // Request::admit, guarded: it is the caller's code on this thread, and an exception is a "no" that says why.
  static bool admitted(Transfer& t) {
    try {
      if (t.request.admit()) return true;
      t.fail(CURLE_ABORTED_BY_CALLBACK, "not started: the sender withdrew it");
    } catch (const std::exception& e) {
      t.fail(CURLE_ABORTED_BY_CALLBACK, std::string("not started: admit failed: ") + e.what());
    }
    return false;
  }

  // A transfer that ended: its pool slot is free again and its caller hears of it.
  void completed(std::unique_ptr<Transfer> t) {
    if (auto p = pools.find(t->pool); p != pools.end()) --p->second.active;
    count_connections(*t, static_cast<long>(t->response.new_connections));
    learn_origin(*t);
    t->complete();
  }

  // Completes finished transfers; returns how many.
  int drain_done() {
    std::vector<std::unique_ptr<Transfer>> own = http1->take_finished();
    int n = static_cast<int>(own.size());
    for (auto& t : own) completed(std::move(t));
    int left = 0;
    while (CURLMsg* msg = curl_multi_info_read(multi, &left)) {
      if (msg->msg != CURLMSG_DONE) continue;
      CURL* easy = msg->easy_handle;
      const CURLcode code = msg->data.result;
      void* priv = nullptr;
      curl_easy_getinfo(easy, CURLINFO_PRIVATE, &priv);
      curl_multi_remove_handle(multi, easy);
      auto it = running.find(static_cast<Transfer*>(priv));
      if (it == running.end()) continue;
      std::unique_ptr<Transfer> t = std::move(it->second);
      running.erase(it);
      t->finish(code);
      recycle_easy(*t);
      completed(std::move(t));
      ++n;
    }
    return n;
  }

  void run() {
    epoll_event events[64];
    for (;;) {
      std::vector<std::unique_ptr<Transfer>> batch;
      bool resize = false;
      {
        std::lock_guard lock(mu);
        if (stopping) break;
        batch.swap(incoming);
        if (config_seen != config_version) {
          config_copy = pool_config;
          config_seen = config_version;
          resize = true;
        }
      }
      for (auto& t : batch) {
        auto [it, added] = pools.try_emplace(t->pool);
        resize |= added;
        it->second.pending.push_back(std::move(t));
      }
      if (resize) size_connection_cache();

      const int64_t rate_wait = start_ready();
      int still_running = 0;
      if (timer_due_ms >= 0 && timer_due_ms <= steady_now_ms()) {
        timer_due_ms = -1;  // libcurl sets it again if it still wants one
        curl_multi_socket_action(multi, CURL_SOCKET_TIMEOUT, 0, &still_running);
      }
      http1->on_tick(steady_now_ms());
      if (drain_done() > 0) continue;  // freed slots: start more before sleeping

      int64_t timeout = 1000;
      if (const int64_t own = http1->next_timeout_ms(steady_now_ms()); own >= 0) timeout = std::min(timeout, own);
      if (rate_wait >= 0) timeout = std::min(timeout, rate_wait);
      if (timer_due_ms >= 0) timeout = std::min(timeout, std::max<int64_t>(0, timer_due_ms - steady_now_ms()));
      // A caller that queued work after the check above finds may_sleep true and writes the eventfd, so
      // epoll_wait returns at once; one that queued before it is seen by the look at `incoming` below.
      may_sleep.store(true);
      {
        std::lock_guard lock(mu);
        if (!incoming.empty() || stopping || config_seen != config_version) timeout = 0;
      }
      const int n = ::epoll_wait(epoll_fd, events, 64, static_cast<int>(timeout));
      may_sleep.store(false);
      const int64_t woke_ms = n > 0 ? steady_now_ms() : 0;
      for (int i = 0; i < n; ++i) {
        if (events[i].data.fd == wake_fd) {
          uint64_t count = 0;
          [[maybe_unused]] ssize_t r = ::read(wake_fd, &count, sizeof count);
          continue;
        }
        if (http1->owns(events[i].data.fd)) {
          http1->on_event(events[i].data.fd, events[i].events, woke_ms);
          continue;
        }
        if (auto it = sockets.find(events[i].data.fd); it != sockets.end() && !it->second.wanted) {
          // A kept-alive connection libcurl is not waiting on: the server closed it (or sent what nobody asked
          // for). Out of the set, or it would wake the loop again at once; libcurl finds it dead at its next use.
          leave_epoll(it->first, it->second);
          continue;
        }
        int mask = 0;
        if (events[i].events & EPOLLIN) mask |= CURL_CSELECT_IN;
        if (events[i].events & EPOLLOUT) mask |= CURL_CSELECT_OUT;
        if (events[i].events & (EPOLLERR | EPOLLHUP)) mask |= CURL_CSELECT_ERR;
        curl_multi_socket_action(multi, events[i].data.fd, mask, &still_running);
      }
    }
    fail_everything();
  }

  void fail_everything() {
    http1->abort_all(CURLE_ABORTED_BY_CALLBACK, kShutdownText);
    for (auto& t : http1->take_finished()) completed(std::move(t));
    for (auto& [raw, t] : running) {
      long opened = 0;
      curl_easy_getinfo(t->easy, CURLINFO_NUM_CONNECTS, &opened);
      count_connections(*t, opened);
      curl_multi_remove_handle(multi, t->easy);
      t->fail(CURLE_ABORTED_BY_CALLBACK, kShutdownText);
      recycle_easy(*t);
      t->complete();
    }
    running.clear();
    for (auto& [key, pool] : pools)
      for (auto& t : pool.pending) {
        t->fail(CURLE_ABORTED_BY_CALLBACK, kShutdownText);
        t->complete();
      }
    pools.clear();
    std::vector<std::unique_ptr<Transfer>> batch;
    {
      std::lock_guard lock(mu);  // stopping is set: nothing more arrives
      batch.swap(incoming);
    }
    for (auto& t : batch) {
      t->fail(CURLE_ABORTED_BY_CALLBACK, kShutdownText);
      t->complete();
    }
  }
};

OutboundTransport::OutboundTransport(TransportOptions options) : impl_(std::make_unique<Impl>()) {
  global_init_once();
  if (options.smtp_on_own_worker) {
    TransportOptions lane = options;
    lane.smtp_on_own_worker = false;
    smtp_lane_ = std::make_unique<OutboundTransport>(std::move(lane));
  }
  impl_->options = std::move(options);
  impl_->multi = curl_multi_init();
  if (!impl_->multi) throw std::runtime_error("curl_multi_init failed");
  impl_->epoll_fd = ::epoll_create1(EPOLL_CLOEXEC);
  impl_->wake_fd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (impl_->epoll_fd < 0 || impl_->wake_fd < 0)
    throw std::runtime_error(std::string("transport: epoll/eventfd: ") + std::strerror(errno));
  epoll_event wake_event{};
  wake_event.events = EPOLLIN;
  wake_event.data.fd = impl_->wake_fd;
  if (::epoll_ctl(impl_->epoll_fd, EPOLL_CTL_ADD, impl_->wake_fd, &wake_event) != 0)
    throw std::runtime_error(std::string("transport: epoll_ctl: ") + std::strerror(errno));
  // The resolver answers from its own thread, rarely: it always writes, whatever may_sleep says.
  impl_->http1 = std::make_unique<Http1Engine>(impl_->options, impl_->epoll_fd, [impl = impl_.get()] {
    const uint64_t one = 1;
    [[maybe_unused]] ssize_t n = ::write(impl->wake_fd, &one, sizeof one);
  });
  curl_multi_setopt(impl_->multi, CURLMOPT_SOCKETFUNCTION, &Impl::on_socket);
  curl_multi_setopt(impl_->multi, CURLMOPT_SOCKETDATA, static_cast<void*>(impl_.get()));
  curl_multi_setopt(impl_->multi, CURLMOPT_TIMERFUNCTION, &Impl::on_timer);
  curl_multi_setopt(impl_->multi, CURLMOPT_TIMERDATA, static_cast<void*>(impl_.get()));
  curl_multi_setopt(impl_->multi, CURLMOPT_PIPELINING, static_cast<long>(CURLPIPE_MULTIPLEX));
  if (impl_->options.max_connections_per_host > 0)
    curl_multi_setopt(impl_->multi, CURLMOPT_MAX_HOST_CONNECTIONS, impl_->options.max_connections_per_host);
  impl_->worker = std::thread([impl = impl_.get()] {
    name_this_thread("tayori-transp");
    impl->run();
  });
}

bool OutboundTransport::on_transport_thread() const {
  return std::this_thread::get_id() == impl_->worker.get_id() || (smtp_lane_ && smtp_lane_->on_transport_thread());
}

OutboundTransport::~OutboundTransport() {
  shutdown();
  if (impl_->multi) curl_multi_cleanup(impl_->multi);
}

void OutboundTransport::configure_pool(const std::string& pool_key, PoolOptions pool) {
  if (smtp_lane_) smtp_lane_->configure_pool(pool_key, pool);
  {
    std::lock_guard lock(impl_->mu);
    impl_->pool_config[pool_key] = std::move(pool);
    ++impl_->config_version;
  }
  impl_->wake();
}

void OutboundTransport::submit(Request request, Completion done) {
  if (request.kind == RequestKind::Smtp && smtp_lane_) {
    smtp_lane_->submit(std::move(request), std::move(done));
    return;
  }
  std::unique_ptr<Transfer> t = request.kind == RequestKind::Smtp ? make_smtp_transfer() : make_http_transfer();
  t->pool = pool_key_for(request);
  t->request = std::move(request);
  t->done = std::move(done);
  {
    std::lock_guard lock(impl_->mu);
    if (!impl_->stopping) {
      impl_->incoming.push_back(std::move(t));
      t = nullptr;
    }
  }
  if (t) {  // already shutting down: complete here, on the caller's thread
    t->fail(CURLE_ABORTED_BY_CALLBACK, kShutdownText);
    t->complete();
    return;
  }
  impl_->wake();
}

void OutboundTransport::shutdown() {
  if (smtp_lane_) smtp_lane_->shutdown();
  std::lock_guard join_lock(impl_->shutdown_mu);
  {
    std::lock_guard lock(impl_->mu);
    impl_->stopping = true;
  }
  impl_->may_sleep.store(true);  // wake it whatever it is doing: shutdown must not wait for a timeout
  impl_->wake();
  if (impl_->worker.joinable()) impl_->worker.join();
}

uint64_t OutboundTransport::connections_opened() const {
  uint64_t n = smtp_lane_ ? smtp_lane_->connections_opened() : 0;
  std::lock_guard lock(impl_->stats_mu);
  for (const auto& [key, opened] : impl_->opened_by_pool) n += opened;
  return n;
}

uint64_t OutboundTransport::connections_opened(const std::string& pool_key) const {
  uint64_t n = smtp_lane_ ? smtp_lane_->connections_opened(pool_key) : 0;
  std::lock_guard lock(impl_->stats_mu);
  if (auto it = impl_->opened_by_pool.find(pool_key); it != impl_->opened_by_pool.end()) n += it->second;
  return n;
}

std::string OutboundTransport::pool_key_for(const Request& request) {
  if (!request.pool_key.empty()) return request.pool_key;
  std::string url = text::ascii_lower(request.url);
  const auto sep = url.find("://");
  if (sep == std::string::npos) return url;
  const std::string scheme = url.substr(0, sep);
  std::string authority = url.substr(sep + 3, url.find_first_of("/?#", sep + 3) - (sep + 3));
  if (auto at = authority.rfind('@'); at != std::string::npos) authority = authority.substr(at + 1);
  const auto close_bracket = authority.rfind(']');
  const auto colon = authority.rfind(':');
  const bool has_port = colon != std::string::npos && (close_bracket == std::string::npos || colon > close_bracket);
  if (!has_port) {
    static const std::map<std::string, std::string> kDefaultPort = {
        {"http", ":80"}, {"https", ":443"}, {"smtp", ":25"}, {"smtps", ":465"}};
    if (auto it = kDefaultPort.find(scheme); it != kDefaultPort.end()) authority += it->second;
  }
  return scheme + "://" + authority;
}

}  // namespace tayori::transport
