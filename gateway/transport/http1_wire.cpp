// HTTP/1.1 requests written and responses read for the transport's own client (see http1_wire.hpp). The reader
// is strict where leniency lets one response be taken for another (RFC 9112 §11.2, response splitting): a
// field name with whitespace before its colon, a folded line, conflicting Content-Length values, and bytes
// after a complete response all end the connection rather than being guessed at.
#include "transport/http1_wire.hpp"

#include <curl/curl.h>

#include <cstdlib>
#include <tayori/text.hpp>

#include "transport/transfer.hpp"

namespace tayori::transport {

namespace {

using text::iequals;

// libcurl's limit on a response's header section (7.88: CURL_MAX_HTTP_HEADER, 100 KiB); the same here, so a
// provider answer that one client takes, the other takes too.
constexpr size_t kMaxHeadBytes = 100 * 1024;

bool is_tchar(char c) {  // RFC 9110 §5.6.2 token characters
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return true;
  switch (c) {
    case '!':
    case '#':
    case '$':
    case '%':
    case '&':
    case '\'':
    case '*':
    case '+':
    case '-':
    case '.':
    case '^':
    case '_':
    case '`':
    case '|':
    case '~': return true;
    default: return false;
  }
}

// Calls `each` with every comma-separated element of a field value, trimmed, empty ones skipped (RFC 9110 §5.6.1).
template <class F>
void for_each_element(std::string_view value, F each) {
  while (!value.empty()) {
    const size_t comma = value.find(',');
    std::string_view item = trim(value.substr(0, comma));
    if (!item.empty()) each(item);
    if (comma == std::string_view::npos) break;
    value.remove_prefix(comma + 1);
  }
}

bool has_field(const HeaderList& fields, std::string_view name) {
  for (const auto& [k, v] : fields)
    if (iequals(k, name)) return true;
  return false;
}

bool request_target_byte_ok(char c) { return static_cast<unsigned char>(c) > 0x20 && c != 0x7F; }

}  // namespace

std::string Http1Target::origin() const {
  std::string o = tls ? "https://" : "http://";
  o += host.find(':') != std::string::npos ? "[" + host + "]" : host;
  o += ':';
  o += std::to_string(port);
  return o;
}

std::optional<Http1Target> parse_http1_target(std::string_view url) {
  Http1Target t;
  if (url.size() >= 7 && iequals(url.substr(0, 7), "http://")) {
    url.remove_prefix(7);
  } else if (url.size() >= 8 && iequals(url.substr(0, 8), "https://")) {
    t.tls = true;
    url.remove_prefix(8);
  } else {
    return std::nullopt;
  }
  for (char c : url)
    if (!request_target_byte_ok(c)) return std::nullopt;
  if (const size_t hash = url.find('#'); hash != std::string_view::npos) url = url.substr(0, hash);
  const size_t path_at = url.find_first_of("/?");
  std::string_view authority = url.substr(0, path_at);
  std::string_view rest = path_at == std::string_view::npos ? std::string_view{} : url.substr(path_at);
  if (authority.empty() || authority.find('@') != std::string_view::npos) return std::nullopt;

  std::string_view host = authority, port_text;
  if (authority.front() == '[') {
    const size_t close = authority.find(']');
    if (close == std::string_view::npos) return std::nullopt;
    host = authority.substr(1, close - 1);
    std::string_view after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':') return std::nullopt;
      port_text = after.substr(1);
    }
    if (host.empty() || host.find_first_not_of("0123456789abcdefABCDEF:.") != std::string_view::npos)
      return std::nullopt;
  } else {
    const size_t colon = authority.find(':');
    if (colon != std::string_view::npos) {
      host = authority.substr(0, colon);
      port_text = authority.substr(colon + 1);
    }
    if (host.empty()) return std::nullopt;
    for (char c : host)
      if (!(is_tchar(c) && c != '%')) return std::nullopt;  // reg-name, without percent-encoding
  }
  const uint16_t default_port = t.tls ? 443 : 80;
  t.port = default_port;
  if (!port_text.empty()) {
    if (port_text.size() > 5 || port_text.find_first_not_of("0123456789") != std::string_view::npos)
      return std::nullopt;
    const long p = std::strtol(std::string(port_text).c_str(), nullptr, 10);
    if (p < 1 || p > 65535) return std::nullopt;
    t.port = static_cast<uint16_t>(p);
  }
  t.host = text::ascii_lower(std::string(host));
  t.host_header = host.find(':') != std::string_view::npos ? "[" + t.host + "]" : t.host;
  if (t.port != default_port) t.host_header += ":" + std::to_string(t.port);
  if (rest.empty() || rest.front() == '?') t.target = "/";
  t.target += rest;
  return t;
}

std::optional<Http1Target> own_client_target(const Request& request, const Http1Routing& routing) {
  if (request.kind != RequestKind::Http || request.http_version == HttpVersion::Http2PriorKnowledge)
    return std::nullopt;
  for (const auto& [name, value] : request.headers)
    for (std::string_view framing : {"content-length", "transfer-encoding", "connection", "upgrade", "te"})
      if (iequals(name, framing)) return std::nullopt;
  std::optional<Http1Target> target = parse_http1_target(request.url);
  if (!target || (target->tls ? routing.proxy_for_https : routing.proxy_for_http)) return std::nullopt;
  if (target->tls && request.http_version != HttpVersion::Http1_1 &&
      (routing.origins_answering_http1.empty() || !routing.origins_answering_http1.count(target->origin())))
    return std::nullopt;
  return target;
}

bool proxy_in_environment(bool tls) {
  const std::initializer_list<const char*> plain = {"http_proxy", "all_proxy", "ALL_PROXY"};
  const std::initializer_list<const char*> secure = {"https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"};
  for (const char* name : tls ? secure : plain)
    if (const char* v = std::getenv(name); v && *v) return true;
  return false;
}

std::string write_http1_request(const Request& request, const Http1Target& target, std::string_view user_agent) {
  const std::string& m = request.method;
  const bool sends_body = m != "HEAD" && (!request.body.empty() || m == "POST" || m == "PUT" || m == "PATCH");
  std::string out;
  out.reserve(128 + target.target.size() + request.body.size() + request.headers.size() * 48);
  out.append(m).append(" ").append(target.target).append(" HTTP/1.1\r\n");
  if (!has_field(request.headers, "host")) out.append("Host: ").append(target.host_header).append("\r\n");
  if (!user_agent.empty() && !has_field(request.headers, "user-agent"))
    out.append("User-Agent: ").append(user_agent).append("\r\n");
  if (!has_field(request.headers, "accept")) out.append("Accept: */*\r\n");
  for (const auto& [name, value] : request.headers) {
    out.append(name).append(":");
    if (!value.empty()) out.append(" ").append(value);
    out.append("\r\n");
  }
  if (sends_body) out.append("Content-Length: ").append(std::to_string(request.body.size())).append("\r\n");
  out.append("\r\n");
  if (sends_body) out.append(request.body);
  return out;
}

// ---- Http1ResponseReader ----

Http1ResponseReader::Http1ResponseReader(bool head_request, int64_t max_body)
    : head_request_(head_request), max_body_(max_body) {}

void Http1ResponseReader::fail(int code, std::string text) {
  state_ = State::Failed;
  error_ = code;
  error_text_ = std::move(text);
}

void Http1ResponseReader::done() {
  state_ = State::Done;
  const bool v11 = response_.http_version_used == "1.1";
  keep_alive_ = !until_close_ && !close_field_ && (v11 || keep_alive_field_) && !(chunked_ && has_length_);
}

Response Http1ResponseReader::take_response() { return std::move(response_); }

// One line (without its CRLF, or a bare LF: RFC 9112 §2.2) from `bytes` at `used`, joined to what an earlier
// feed left; false when the line is not complete yet (its start is kept).
bool Http1ResponseReader::line(std::string_view bytes, size_t& used, std::string_view& out) {
  const size_t nl = bytes.find('\n', used);
  const size_t take = (nl == std::string_view::npos ? bytes.size() : nl + 1) - used;
  head_bytes_ += take;
  if (head_bytes_ > kMaxHeadBytes) {
    fail(CURLE_WEIRD_SERVER_REPLY, "response header section exceeds " + std::to_string(kMaxHeadBytes) + " bytes");
    return false;
  }
  if (nl == std::string_view::npos) {
    pending_.append(bytes.substr(used));
    used = bytes.size();
    return false;
  }
  std::string_view l = bytes.substr(used, nl - used);
  used = nl + 1;
  if (!pending_.empty()) {
    pending_.append(l);
    l = pending_;
  }
  if (!l.empty() && l.back() == '\r') l.remove_suffix(1);
  out = l;
  return true;
}

bool Http1ResponseReader::on_status_line(std::string_view s) {
  // HTTP-version SP 3DIGIT SP [reason-phrase] (RFC 9112 §4); the reason may be absent with its space.
  if (s.size() < 12 || s.substr(0, 7) != "HTTP/1." || (s[7] != '0' && s[7] != '1') || s[8] != ' ' ||
      (s.size() > 12 && s[12] != ' ')) {
    fail(CURLE_WEIRD_SERVER_REPLY, "not an HTTP/1.x status line");
    return false;
  }
  int status = 0;
  for (size_t i = 9; i < 12; ++i) {
    if (s[i] < '0' || s[i] > '9') {
      fail(CURLE_WEIRD_SERVER_REPLY, "not an HTTP/1.x status line");
      return false;
    }
    status = status * 10 + (s[i] - '0');
  }
  if (status < 100 || status > 599) {
    fail(CURLE_WEIRD_SERVER_REPLY, "status code " + std::to_string(status) + " out of range");
    return false;
  }
  response_.status = status;
  response_.http_version_used = s[7] == '1' ? "1.1" : "1.0";
  response_.headers.clear();
  chunked_ = has_length_ = close_field_ = keep_alive_field_ = false;
  remaining_ = 0;
  return true;
}

bool Http1ResponseReader::on_field_line(std::string_view s) {
  if (s.front() == ' ' || s.front() == '\t') {  // obs-fold (RFC 9112 §5.2)
    fail(CURLE_WEIRD_SERVER_REPLY, "folded response field line");
    return false;
  }
  const size_t colon = s.find(':');
  if (colon == 0 || colon == std::string_view::npos) {
    fail(CURLE_WEIRD_SERVER_REPLY, "response field line without a name");
    return false;
  }
  const std::string_view name = s.substr(0, colon);
  for (char c : name)
    if (!is_tchar(c)) {  // whitespace before the colon included (RFC 9112 §5.1)
      fail(CURLE_WEIRD_SERVER_REPLY, "invalid response field name");
      return false;
    }
  const std::string_view value = trim(s.substr(colon + 1));
  if (iequals(name, "content-length")) {
    bool ok = true;
    for_each_element(value, [&](std::string_view v) {
      if (!ok) return;
      if (v.empty() || v.size() > 18 || v.find_first_not_of("0123456789") != std::string_view::npos) {
        ok = false;
        return;
      }
      const int64_t n = std::strtoll(std::string(v).c_str(), nullptr, 10);
      if (has_length_ && n != remaining_) ok = false;
      has_length_ = true;
      remaining_ = n;
    });
    if (!ok || !has_length_) {
      fail(CURLE_WEIRD_SERVER_REPLY, "invalid or conflicting Content-Length");
      return false;
    }
  } else if (iequals(name, "transfer-encoding")) {
    // Chunked only when it is the final coding (RFC 9112 §6.3 item 4); any other makes the body run to close.
    bool last_chunked = false;
    for_each_element(value, [&](std::string_view v) { last_chunked = iequals(v, "chunked"); });
    chunked_ = last_chunked;
    until_close_ = !last_chunked;
  } else if (iequals(name, "connection")) {
    for_each_element(value, [&](std::string_view v) {
      close_field_ |= iequals(v, "close");
      keep_alive_field_ |= iequals(v, "keep-alive");
    });
  }
  response_.headers.emplace_back(text::ascii_lower(std::string(name)), std::string(value));
  return true;
}

bool Http1ResponseReader::on_head_end() {
  const int status = response_.status;
  if (status >= 100 && status < 200) {
    if (status == 101) {
      fail(CURLE_WEIRD_SERVER_REPLY, "101 Switching Protocols to a request that asked for none");
      return false;
    }
    part_ = Part::StatusLine;  // an interim response: the final one follows (RFC 9110 §15.2)
    head_bytes_ = 0;
    return true;
  }
  head_bytes_ = 0;  // from here the limit applies to each chunk-size line, and to the trailer section
  if (head_request_ || status == 204 || status == 304) {
    until_close_ = false;
    done();
    return true;
  }
  if (chunked_) {
    part_ = Part::ChunkSize;
    return true;
  }
  if (until_close_ || !has_length_) {
    until_close_ = true;
    part_ = Part::Body;
    return true;
  }
  if (remaining_ > max_body_) {
    fail(CURLE_WRITE_ERROR, "response body exceeds max_response_bytes");
    return false;
  }
  part_ = Part::Body;
  if (remaining_ == 0) done();
  return true;
}

bool Http1ResponseReader::on_chunk_size(std::string_view s) {
  const std::string_view size = trim(s.substr(0, s.find(';')));  // chunk extensions are ignored (§7.1.1)
  if (size.empty() || size.size() > 15 || size.find_first_not_of("0123456789abcdefABCDEF") != std::string_view::npos) {
    fail(CURLE_WEIRD_SERVER_REPLY, "invalid chunk size");
    return false;
  }
  remaining_ = std::strtoll(std::string(size).c_str(), nullptr, 16);
  if (static_cast<int64_t>(response_.body.size()) + remaining_ > max_body_) {
    fail(CURLE_WRITE_ERROR, "response body exceeds max_response_bytes");
    return false;
  }
  part_ = remaining_ == 0 ? Part::Trailer : Part::ChunkData;
  return true;
}

size_t Http1ResponseReader::feed(std::string_view bytes) {
  size_t used = 0;
  while (state_ == State::Reading && used < bytes.size()) {
    if (part_ == Part::Body || part_ == Part::ChunkData) {
      size_t take = bytes.size() - used;
      if (!until_close_) take = std::min<size_t>(take, static_cast<size_t>(remaining_));
      if (until_close_ && static_cast<int64_t>(response_.body.size() + take) > max_body_) {
        fail(CURLE_WRITE_ERROR, "response body exceeds max_response_bytes");
        break;
      }
      response_.body.append(bytes.substr(used, take));
      used += take;
      received_ += static_cast<int64_t>(take);
      if (until_close_) continue;
      remaining_ -= static_cast<int64_t>(take);
      if (remaining_ == 0) {
        if (part_ == Part::Body)
          done();
        else
          part_ = Part::ChunkEnd;
      }
      continue;
    }
    std::string_view l;
    const size_t before = used;
    const bool complete = line(bytes, used, l);
    received_ += static_cast<int64_t>(used - before);
    if (!complete) break;
    bool ok = true;
    switch (part_) {
      case Part::StatusLine: ok = on_status_line(l), part_ = Part::Fields; break;
      case Part::Fields: ok = l.empty() ? on_head_end() : on_field_line(l); break;
      case Part::ChunkSize:
        ok = on_chunk_size(l);
        head_bytes_ = 0;
        break;
      case Part::ChunkEnd:
        if (!l.empty()) fail(CURLE_WEIRD_SERVER_REPLY, "chunk data longer than its size"), ok = false;
        part_ = Part::ChunkSize;
        break;
      case Part::Trailer:
        if (l.empty()) done();  // trailer fields are read past, not kept (RFC 9112 §7.1.2)
        break;
      case Part::Body:
      case Part::ChunkData: break;
    }
    pending_.clear();
    if (!ok) break;
  }
  return used;
}

void Http1ResponseReader::end_of_stream() {
  if (state_ != State::Reading) return;
  if (part_ == Part::Body && until_close_) {
    done();
    return;
  }
  if (received_ == 0) {
    fail(CURLE_GOT_NOTHING, "Empty reply from server");
  } else if (part_ == Part::Body) {
    fail(CURLE_PARTIAL_FILE, "transfer closed with " + std::to_string(remaining_) + " bytes remaining to read");
  } else if (part_ == Part::StatusLine || part_ == Part::Fields) {
    fail(CURLE_WEIRD_SERVER_REPLY, "connection closed in the middle of the response head");
  } else {
    fail(CURLE_PARTIAL_FILE, "transfer closed in the middle of the chunked body");
  }
}

}  // namespace tayori::transport
