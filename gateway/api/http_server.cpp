// The HTTP server: Beast and Asio accept connections, read each request within the limits of ServerLimits
// (answering 408, 413, 431 and malformed HTTP itself) and hand it, as a plain HttpRequest, to the Handler
// (api/api.cpp's Api::handle), writing back whatever response it later gives. The first step of every
// request's flow, and the only translation unit that includes Beast (it compiles slowly; keep it out of headers).
#include <tayori/text.hpp>

#include "api/http_server.hpp"

#include <array>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include <atomic>
#include <cstdio>
#include <chrono>
#include <optional>
#include <thread>
#include <vector>

#include "common/log.hpp"
#include "common/thread_name.hpp"

namespace tayori::api {

namespace beast = boost::beast;
namespace http = beast::http;
namespace net = boost::asio;
using tcp = net::ip::tcp;

// A connection's executor is its event loop's, by type: Beast's tcp_stream holds a type-erased executor, and
// copying and re-wrapping it at every asynchronous step of every request was a twentieth of tayori-sim's CPU.
// Each loop has one thread (HttpServer::Impl::loops), so a connection's handlers never run at once and need no
// strand.
using SessionExecutor = net::io_context::executor_type;
using SessionSocket = tcp::socket::rebind_executor<SessionExecutor>::other;
using SessionStream = beast::basic_stream<tcp, SessionExecutor, beast::unlimited_rate_policy>;

namespace {

// The most a connection's read buffer grows to ahead of a body (Session::read_body).
constexpr std::uint64_t kReadAhead = 64 * 1024;
// What a connection's read buffer holds from the start. Beast reads at most what the buffer has free (and at
// least 512 bytes): at 512, a single message's request (about 600 bytes with its headers) took two recvmsg
// calls, each a trip through the event loop. 4 KiB takes a request line, its headers and a small body in one.
constexpr std::size_t kFirstRead = 4 * 1024;

int64_t steady_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// JSON string escaping for the server's own problem bodies (RFC 8259 §7); this file does not pull in a
// JSON library for three fixed answers.
std::string json_escape(std::string_view s) {
  std::string out;
  for (char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", c);
      out += buf;
    } else {
      out += c;
    }
  }
  return out;
}

std::string problem_body(int status, std::string_view title, std::string_view detail) {
  // RFC 9457 problem details for the few answers the server gives before a handler sees the request.
  return std::string(R"({"type":"about:blank","title":")") + json_escape(title) + R"(","status":)" +
         std::to_string(status) + R"(,"detail":")" + json_escape(detail) + "\"}";
}

using RequestParser = http::request_parser<http::string_body>;

void apply_limits(RequestParser& parser, const ServerLimits& limits) {
  parser.header_limit(static_cast<std::uint32_t>(limits.max_header_bytes));
  parser.body_limit(static_cast<std::uint64_t>(limits.max_body_bytes));
}

// The answer to a request the parser refused, when there is someone to answer: a timeout has closed the
// socket already, and a client that stopped mid-request (end of stream, partial message) has gone.
struct Refusal {
  int status;
  std::string_view title;
  std::string detail;
};
std::optional<Refusal> refusal(beast::error_code ec, const ServerLimits& limits) {
  if (ec == http::error::body_limit)
    return Refusal{413, "Content Too Large", "the body is larger than " + std::to_string(limits.max_body_bytes) + " bytes"};
  if (ec == http::error::header_limit)
    return Refusal{431, "Request Header Fields Too Large", "the request headers are too large"};
  if (ec.category() == http::make_error_code(http::error::end_of_stream).category() &&
      ec != http::error::end_of_stream && ec != http::error::partial_message)
    return Refusal{400, "Bad Request", "malformed HTTP request: " + ec.message()};
  return std::nullopt;
}

// The parsed request's head as handlers see it (http.hpp): header names lower-cased, the target split at
// '?'. Read from the parser's own header, so the fields are copied once, into the strings handlers keep.
HttpRequest to_request(const http::request_header<>& req) {
  HttpRequest r;
  r.method = std::string(req.method_string());
  r.target = std::string(req.target());
  auto q = r.target.find('?');
  r.path = r.target.substr(0, q);
  if (q != std::string::npos) r.query = r.target.substr(q + 1);
  for (const auto& f : req) r.headers.emplace_back(text::ascii_lower(f.name_string()), std::string(f.value()));
  return r;
}

}  // namespace

ParsedRequest parse_request(std::string_view bytes, const ServerLimits& limits) {
  RequestParser parser;
  apply_limits(parser, limits);
  parser.eager(true);
  net::const_buffer rest(bytes.data(), bytes.size());
  beast::error_code ec;
  while (!parser.is_done() && rest.size() > 0) {
    size_t used = parser.put(rest, ec);
    if (ec == http::error::need_more) return {};  // a connection would wait for the rest
    if (ec) break;
    rest += used;
  }
  if (!parser.got_some()) return {};  // a connection closed before its first byte is closed in silence
  if (!ec && !parser.is_done()) parser.put_eof(ec);
  if (ec) {
    ParsedRequest refused;
    if (auto r = refusal(ec, limits)) {
      refused.status = r->status;
      refused.detail = std::move(r->detail);
    }
    return refused;
  }
  http::request<http::string_body> req = parser.release();
  HttpRequest head = to_request(req);
  head.body = std::move(req.body());
  return ParsedRequest{std::move(head), 0, {}};
}

struct HttpServer::Impl {
  // Order matters for destruction: sessions still queued in `loops` die with them and touch `active`.
  Handler& handler;
  ServerLimits limits;
  int thread_count;
  std::atomic<int> active{0};
  std::atomic<bool> stopping{false};
  // One event loop per thread, each connection on one of them from its accept on (in turn). With one loop run
  // by every thread, each connection needed a strand to keep its handlers apart, and the strand's executor
  // copies, its lock and its queue at every asynchronous step were a tenth of tayori-sim's CPU per request
  // (perf, e2e-batch). A loop that has no connection yet is kept running by its guard. A handler that blocks
  // (a store read, a PUT waiting for its commit) holds its own loop's connections only.
  std::vector<std::unique_ptr<net::io_context>> loops;
  std::vector<net::executor_work_guard<net::io_context::executor_type>> keep_running;
  std::size_t next_loop = 0;  // where the next connection goes; touched by the accept loop only
  // The acceptor, its retry timer and stop()'s close run on a loop of their own, whose one thread keeps an
  // accept's completion (which starts the next accept) and stop()'s close apart, and which no handler blocks.
  net::io_context accept_loop{1};
  std::optional<tcp::acceptor> acceptor;
  std::vector<std::thread> threads;

  std::optional<net::steady_timer> accept_retry;  // the pause after a failed accept
  int accept_failures = 0;                        // in a row; the episode is logged once
  bool refusing = false;                          // at max_connections; the episode is logged once

  Impl(Handler& h, ServerLimits l, int n) : handler(h), limits(l), thread_count(n) {
    for (int i = 0; i < n; ++i) {
      // Concurrency hint 1: one thread runs the loop (other threads still post answers to it).
      loops.push_back(std::make_unique<net::io_context>(1));
      keep_running.push_back(net::make_work_guard(*loops.back()));
    }
  }

  void do_accept();
  void on_accept_failed(beast::error_code ec);
  void refuse(SessionSocket socket);
};

namespace {

class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(SessionSocket socket, HttpServer::Impl& server) : stream_(std::move(socket)), server_(server) {
    ++server_.active;
    buffer_.reserve(kFirstRead);
    beast::error_code ec;
    auto ep = stream_.socket().remote_endpoint(ec);
    if (!ec) remote_ = ep.address().to_string() + ":" + std::to_string(ep.port());
  }
  ~Session() { --server_.active; }

  void start() {
    net::dispatch(stream_.get_executor(), beast::bind_front_handler(&Session::read_header, shared_from_this(), true));
  }

 private:
  void read_header(bool first) {
    parser_.emplace();
    apply_limits(*parser_, server_.limits);
    // The first request must arrive within the header timeout; between keep-alive requests the idle one holds.
    stream_.expires_after(std::chrono::milliseconds(first ? server_.limits.header_timeout_ms
                                                          : server_.limits.idle_timeout_ms));
    http::async_read_header(stream_, buffer_, *parser_, beast::bind_front_handler(&Session::on_header, shared_from_this()));
  }

  void on_header(beast::error_code ec, std::size_t) {
    if (ec) return fail_read(ec);
    received_at_ns_ = steady_ns();
    auto& req = parser_->get();
    keep_alive_ = req.keep_alive();
    version_ = req.version();
    // The head as handlers see it (the body is still empty here; on_body adds it).
    head_ = to_request(req);
    head_.remote = remote_;
    head_.received_at_ns = received_at_ns_;
    // Before the body (and before a 100 Continue): a request the handler refuses on its head alone, such as
    // one without a valid key, costs no body read (up to max_body_bytes otherwise).
    std::optional<HttpResponse> screened;
    try {
      screened = server_.handler.screen(head_);
    } catch (const std::exception& e) {
      log::error("http", head_.method + " " + head_.path + " failed: " + e.what());
      server_.handler.observe_rejected(500);
      screened = server_error();
    }
    if (screened) {
      // The announced body was not read, so the stream is not at a message boundary.
      if (!parser_->is_done()) screened->close = true;
      return write(std::move(*screened));
    }
    if (beast::iequals(req[http::field::expect], "100-continue")) {
      // RFC 9110 §10.1.1: the client waits for this before sending the body.
      auto cont = std::make_shared<http::response<http::empty_body>>(http::status::continue_, req.version());
      http::async_write(stream_, *cont, [self = shared_from_this(), cont](beast::error_code ec, std::size_t) {
        if (ec) return self->close();
        self->read_body();
      });
      return;
    }
    read_body();
  }

  void read_body() {
    // A small request's body usually came in the same read as its head. Beast's async_read would parse it
    // from the buffer without I/O and still complete through the event loop (a handler posted, then run by
    // the session's loop); parsed here, it goes on to on_body at once.
    if (auto announced = parser_->content_length(); announced && buffer_.size() >= *announced) {
      beast::error_code ec;
      while (!parser_->is_done()) {
        std::size_t used = parser_->put(buffer_.data(), ec);
        buffer_.consume(used);
        if (ec || used == 0) break;
      }
      if (ec || parser_->is_done()) return on_body(ec, 0);
    }
    // Beast reads into what the buffer has free (at least 512 bytes) and the parser drains each read into the
    // body, so a buffer that started small stays small: a 40 KB batch took 80 recvmsg calls. Room for the
    // announced body (up to 64 KiB, kept for the connection's next requests) makes it one or two.
    if (auto announced = parser_->content_length())
      buffer_.reserve(static_cast<std::size_t>(std::min<std::uint64_t>(*announced, kReadAhead)));
    stream_.expires_after(std::chrono::milliseconds(server_.limits.body_timeout_ms));
    http::async_read(stream_, buffer_, *parser_, beast::bind_front_handler(&Session::on_body, shared_from_this()));
  }

  void fail_read(beast::error_code ec) {
    if (auto r = refusal(ec, server_.limits)) return reject(r->status, r->title, r->detail);
    close();
  }

  void on_body(beast::error_code ec, std::size_t) {
    if (ec) return fail_read(ec);
    http::request<http::string_body> req = parser_->release();
    HttpRequest r = std::move(head_);
    r.body = std::move(req.body());
    // No deadline while the handler works (a group commit); the write below sets its own.
    stream_.expires_never();
    auto answer = std::make_shared<PendingAnswer>(shared_from_this());
    Responder respond = [answer](HttpResponse response) { answer->send(std::move(response)); };
    // The top of an I/O thread: an exception that left here would end the process (Asio does not catch),
    // so a handler's failure becomes this request's 500 and the server goes on.
    std::string method = r.method, path = r.path;
    try {
      server_.handler.handle(std::move(r), respond);
    } catch (const std::exception& e) {
      log::error("http", method + " " + path + " failed: " + e.what());
      if (!answer->answered) {
        server_.handler.observe_rejected(500);
        respond(server_error());
      }
    }
  }

  // A request's answer, shared by every copy of its Responder. A handler that failed after answering is not
  // answered twice. When the last copy goes without having answered (a store completion that threw on the
  // store's completer thread, which caught it; a handler that dropped it), the client would wait for ever, since the
  // stream has no deadline while a handler works: it gets a 500 instead. A handler that means to close the
  // connection without an answer answers status 0 (write).
  struct PendingAnswer {
    explicit PendingAnswer(std::shared_ptr<Session> s) : session(std::move(s)) {}
    ~PendingAnswer() {
      if (answered.exchange(true)) return;
      log::error("http", "a request was never answered (its handler failed after the request was handed on)");
      session->server_.handler.observe_rejected(500);
      post(server_error());
    }
    void send(HttpResponse response) {
      if (!answered.exchange(true)) post(std::move(response));
    }
    void post(HttpResponse response) {
      net::post(session->stream_.get_executor(), [session = session, response = std::move(response)]() mutable {
        session->write(std::move(response));
      });
    }
    std::shared_ptr<Session> session;
    std::atomic<bool> answered{false};
  };

  static HttpResponse server_error() {
    HttpResponse r;
    r.status = 500;
    r.content_type = "application/problem+json";
    r.body = problem_body(500, "Internal Server Error", "the gateway failed to handle this request; it has been logged");
    return r;
  }

  void reject(int status, std::string_view title, const std::string& detail) {
    server_.handler.observe_rejected(status);
    HttpResponse r;
    r.status = status;
    r.content_type = "application/problem+json";
    r.body = problem_body(status, title, detail);
    r.close = true;  // the rest of the stream cannot be trusted to be at a message boundary
    write(std::move(r));
  }

  void write(HttpResponse r) {
    // Status 0: the handler closes the connection without an answer on purpose (tayori-sim's dropped
    // answers); a Responder merely dropped gets a 500 instead (PendingAnswer).
    if (r.status == 0) return stream_.close();
    bool keep = keep_alive_ && !r.close && !server_.stopping;
    // The head is written here rather than by Beast's serializer: its fields, serializer and composed write
    // were a sixth of tayori-sim's CPU per request, and the gateway's HTTP threads answer with the same code.
    out_head_ = response_head(r, version_, keep);
    out_body_ = answers_with_content(r.status) ? std::move(r.body) : std::string();
    stream_.expires_after(std::chrono::milliseconds(server_.limits.body_timeout_ms));
    std::array<net::const_buffer, 2> buffers{net::buffer(out_head_), net::buffer(out_body_)};
    net::async_write(stream_, buffers, [self = shared_from_this(), keep](beast::error_code ec, std::size_t) {
      if (ec || !keep) return self->close();
      self->read_header(false);
    });
  }

  // Closing in stages (RFC 9112 §9.6): stop sending, then read and discard what the client is still
  // sending (the rest of a refused 413 body) until it closes or a short deadline passes. Closing with
  // unread data at once makes the kernel answer with a reset, which can destroy the response before the
  // client reads it (seen: about 3 in 1,000 refused oversized bodies).
  void close() {
    beast::error_code ec;
    stream_.socket().shutdown(tcp::socket::shutdown_send, ec);
    if (ec || server_.stopping) return stream_.close();
    stream_.expires_after(std::chrono::milliseconds(2000));
    drain();
  }

  void drain() {
    stream_.async_read_some(net::buffer(discard_),
                            [self = shared_from_this()](beast::error_code ec, std::size_t) {
                              if (ec) return self->stream_.close();  // EOF, reset or the deadline
                              self->drain();
                            });
  }

  SessionStream stream_;
  HttpServer::Impl& server_;
  beast::flat_buffer buffer_;
  std::array<char, 16 * 1024> discard_;
  std::optional<RequestParser> parser_;
  HttpRequest head_;  // the request being read, without its body
  std::string out_head_, out_body_;  // the answer being written
  std::string remote_;
  bool keep_alive_ = false;
  unsigned version_ = 11;
  int64_t received_at_ns_ = 0;
};

}  // namespace

void HttpServer::Impl::do_accept() {
  net::io_context& loop = *loops[next_loop];
  next_loop = (next_loop + 1) % loops.size();
  acceptor->async_accept(loop.get_executor(), [this](beast::error_code ec, SessionSocket socket) {
    if (ec) {
      if (ec == net::error::operation_aborted || stopping) return;
      return on_accept_failed(ec);
    }
    if (accept_failures > 0) {
      log::info("http", "accepting connections again after " + std::to_string(accept_failures) + " failed accepts");
      accept_failures = 0;
    }
    if (active >= limits.max_connections) {
      refuse(std::move(socket));
    } else {
      refusing = false;
      socket.set_option(tcp::no_delay(true), ec);
      std::make_shared<Session>(std::move(socket), *this)->start();
    }
    if (!stopping) do_accept();
  });
}

// accept fails when the process is out of file descriptors (EMFILE, ENFILE) or memory. The connection stays in
// the listen queue, so accepting again at once fails again at once: a core spun and every try logged a line.
// Pausing lets sessions end and free descriptors; the queued connections are taken once they have.
void HttpServer::Impl::on_accept_failed(beast::error_code ec) {
  if (accept_failures++ == 0)
    log::warn("http", "accept failed: " + ec.message() + "; trying again every 100 ms until it succeeds");
  if (!accept_retry) accept_retry.emplace(accept_loop);
  accept_retry->expires_after(std::chrono::milliseconds(100));
  accept_retry->async_wait([this](beast::error_code wait_ec) {
    if (wait_ec || stopping) return;
    do_accept();
  });
}

// Over server.max_connections: a fixed 503 written without waiting (a fresh socket's send buffer takes it),
// then closed. A client whose request was already in flight may see a reset instead; either way it is told
// at once, and the connection costs no session.
void HttpServer::Impl::refuse(SessionSocket socket) {
  handler.observe_connection_refused();
  if (!refusing)
    log::warn("http", "server.max_connections (" + std::to_string(limits.max_connections) +
                          ") connections are open: new connections are refused until some close");
  refusing = true;
  static const std::string kAnswer = [] {
    HttpResponse r;
    r.status = 503;
    r.content_type = "application/problem+json";
    r.headers = {{"Retry-After", "1"}};
    r.body = problem_body(503, "Service Unavailable", "too many connections are open (server.max_connections); retry");
    return response_head(r, 11, false) + r.body;
  }();
  beast::error_code ec;
  socket.non_blocking(true, ec);
  socket.write_some(net::buffer(kAnswer), ec);
  socket.shutdown(tcp::socket::shutdown_both, ec);
  socket.close(ec);
}

HttpServer::HttpServer(Handler& handler, ServerLimits limits, int threads)
    : impl_(std::make_unique<Impl>(handler, limits, threads > 0 ? threads : 1)) {}

HttpServer::~HttpServer() { stop(0); }

uint16_t HttpServer::start(const std::string& host, uint16_t port) {
  auto address = net::ip::make_address(host);
  tcp::endpoint endpoint(address, port);
  impl_->acceptor.emplace(impl_->accept_loop);
  impl_->acceptor->open(endpoint.protocol());
  impl_->acceptor->set_option(net::socket_base::reuse_address(true));
  impl_->acceptor->bind(endpoint);
  impl_->acceptor->listen(net::socket_base::max_listen_connections);
  uint16_t bound = impl_->acceptor->local_endpoint().port();
  impl_->do_accept();
  for (int i = 0; i < impl_->thread_count; ++i)
    impl_->threads.emplace_back([loop = impl_->loops[i].get()] {
      name_this_thread("tayori-http");
      loop->run();
    });
  impl_->threads.emplace_back([this] {
    name_this_thread("tayori-accept");
    impl_->accept_loop.run();
  });
  return bound;
}

void HttpServer::stop(int64_t grace_ms) {
  if (impl_->threads.empty()) return;
  impl_->stopping = true;
  net::post(impl_->accept_loop, [this] {
    beast::error_code ec;
    if (impl_->acceptor) impl_->acceptor->close(ec);
  });
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(grace_ms);
  while (impl_->active > 0 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  for (auto& loop : impl_->loops) loop->stop();
  impl_->accept_loop.stop();
  for (auto& t : impl_->threads) t.join();
  impl_->threads.clear();
  // The posted close may not have run before stop(): no thread runs the io_context now, so closing
  // here is safe, and the port is free when stop() returns.
  beast::error_code ec;
  if (impl_->acceptor) impl_->acceptor->close(ec);
}

namespace {

void append_field(std::string& out, std::string_view name, std::string_view value) {
  size_t start = out.size();
  out.append(name).append(": ").append(value);
  for (size_t i = start; i < out.size(); ++i)
    if (out[i] == '\r' || out[i] == '\n' || out[i] == '\0') out[i] = ' ';
  out += "\r\n";
}

}  // namespace

bool answers_with_content(int status) { return status >= 200 && status != 204 && status != 304; }

std::string response_head(const HttpResponse& response, unsigned version, bool keep_alive) {
  std::vector<std::pair<std::string_view, std::string_view>> fields;
  fields.reserve(response.headers.size() + 2);
  auto set = [&fields](std::string_view name, std::string_view value) {
    for (auto& field : fields)
      if (beast::iequals(field.first, name)) {
        field.second = value;
        return;
      }
    fields.emplace_back(name, value);
  };
  set("Server", "tayori");
  if (!response.content_type.empty()) set("Content-Type", response.content_type);
  for (const auto& [name, value] : response.headers) set(name, value);

  std::string out;
  out.reserve(128 + response.headers.size() * 48);
  out += version == 10 ? "HTTP/1.0 " : "HTTP/1.1 ";
  out += std::to_string(response.status);
  out += ' ';
  out += std::string_view(http::obsolete_reason(static_cast<http::status>(response.status)));
  out += "\r\n";
  for (const auto& [name, value] : fields) {
    // The server says these itself, from what it knows of the connection and the body.
    if (beast::iequals(name, "connection") || beast::iequals(name, "content-length") ||
        beast::iequals(name, "transfer-encoding"))
      continue;
    append_field(out, name, value);
  }
  if (version == 10 && keep_alive) out += "Connection: keep-alive\r\n";  // RFC 9112 §9.3: 1.0 closes by default
  if (version != 10 && !keep_alive) out += "Connection: close\r\n";
  if (answers_with_content(response.status)) {
    out += "Content-Length: ";
    out += std::to_string(response.body.size());
    out += "\r\n";
  }
  out += "\r\n";
  return out;
}

}  // namespace tayori::api
