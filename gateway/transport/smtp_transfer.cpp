// SMTP submission (RFC 5321): how an e-mail a channel plugin built -- envelope and complete RFC 5322
// message -- becomes a libcurl easy handle, and how the server's replies come back as a Response for the
// plugin to classify. The multi loop (outbound_transport.cpp) runs it, on a worker of its own by default
// (TransportOptions::smtp_on_own_worker). What only SMTP needs is here: refusing command and message
// injection before anything is sent, insisting on TLS unless told otherwise, and keeping the server's
// last replies so that a refusal reads as the server's verdict rather than a connection failure.
#include <algorithm>
#include <cstdio>
#include <cstring>
#include <deque>

#include <tayori/text.hpp>

#include "transport/transfer.hpp"

namespace tayori::transport {

namespace {

class SmtpTransfer final : public Transfer {
  size_t upload_offset = 0;              // bytes of the message handed to libcurl so far
  std::deque<std::string> smtp_replies;  // the last few complete server replies, oldest first
  std::string smtp_partial;              // the lines so far of a multi-line reply

  static constexpr size_t kKeptReplies = 4;
  static constexpr size_t kMaxReplyBytes = 2048;

  // An envelope address goes verbatim into a MAIL FROM / RCPT TO command line: CR or LF would end that
  // command and start another (RFC 5321 §2.3.8), and a NUL would silently cut the address short.
  static bool unsafe_address(std::string_view a) { return a.find_first_of(std::string_view("\r\n\0", 3)) != a.npos; }

  // True when every CR and LF in `s` is part of a CRLF pair (RFC 5321 §2.3.8, RFC 5322 §2.1).
  static bool crlf_only(std::string_view s) {
    for (size_t i = 0; i < s.size(); ++i) {
      if (s[i] == '\r') {
        if (i + 1 == s.size() || s[i + 1] != '\n') return false;
        ++i;
      } else if (s[i] == '\n') {
        return false;
      }
    }
    return true;
  }

  CURLcode check() override {
    const std::string scheme = text::ascii_lower(request.url.substr(0, request.url.find("://")));
    if (request.url.find("://") == std::string::npos || (scheme != "smtp" && scheme != "smtps"))
      return refuse(CURLE_UNSUPPORTED_PROTOCOL, "an smtp request needs an smtp:// or smtps:// URL");
    if (!request.headers.empty())
      return refuse(CURLE_BAD_FUNCTION_ARGUMENT, "an smtp request has no headers: they belong in the message body");
    if (unsafe_address(request.mail_from))
      return refuse(CURLE_BAD_FUNCTION_ARGUMENT, "mail_from contains CR, LF or NUL (SMTP command injection)");
    if (request.mail_rcpt.empty()) return refuse(CURLE_BAD_FUNCTION_ARGUMENT, "an smtp request needs a mail_rcpt");
    for (const auto& rcpt : request.mail_rcpt)
      if (rcpt.empty() || unsafe_address(rcpt))
        return refuse(CURLE_BAD_FUNCTION_ARGUMENT,
                      "a mail_rcpt is empty or contains CR, LF or NUL (SMTP command injection)");
    // libcurl dot-stuffs only after CRLF; a bare LF followed by "." would reach the server unescaped, and
    // a lenient receiver that ends data at "<LF>.<CR><LF>" would take what follows as a new transaction.
    if (!crlf_only(request.body))
      return refuse(CURLE_BAD_FUNCTION_ARGUMENT,
                    "the smtp message has a bare CR or LF: lines must end in CRLF (RFC 5321 §2.3.8)");
    return CURLE_OK;
  }

  static size_t on_upload(char* buffer, size_t size, size_t n, void* user) {
    auto* t = static_cast<SmtpTransfer*>(user);
    const size_t len = std::min(size * n, t->request.body.size() - t->upload_offset);
    std::memcpy(buffer, t->request.body.data() + t->upload_offset, len);
    t->upload_offset += len;
    return len;  // 0 at the end: libcurl then sends "<CRLF>.<CRLF>"
  }

  // Lets libcurl rewind the message should it need to send it again (it may retry a transfer on a fresh
  // connection when a kept one turns out to be closed); without it such a retry fails.
  static int on_seek(void* user, curl_off_t offset, int origin) {
    auto* t = static_cast<SmtpTransfer*>(user);
    if (origin != SEEK_SET || offset < 0 || static_cast<uint64_t>(offset) > t->request.body.size())
      return CURL_SEEKFUNC_CANTSEEK;
    t->upload_offset = static_cast<size_t>(offset);
    return CURL_SEEKFUNC_OK;
  }

  // libcurl hands every server reply line to the header callback. A reply is one or more lines sharing a
  // code; "NNN-" continues it and "NNN " (or a bare "NNN") ends it (RFC 5321 §4.2.1).
  static size_t on_smtp_reply(char* data, size_t size, size_t n, void* user) {
    auto* t = static_cast<SmtpTransfer*>(user);
    const size_t len = size * n;
    const std::string_view line = trim(std::string_view(data, len));
    if (t->smtp_partial.size() < kMaxReplyBytes) {
      if (!t->smtp_partial.empty()) t->smtp_partial += '\n';
      t->smtp_partial.append(line.substr(0, kMaxReplyBytes - t->smtp_partial.size()));
    }
    if (line.size() < 4 || line[3] != '-') {
      t->smtp_replies.push_back(std::move(t->smtp_partial));
      t->smtp_partial.clear();
      if (t->smtp_replies.size() > kKeptReplies) t->smtp_replies.pop_front();
    }
    return len;
  }

  CURLcode configure(const TransportOptions&) override {
    const bool implicit_tls = text::ascii_lower(request.url).rfind("smtps://", 0) == 0;
    set(CURLOPT_PROTOCOLS_STR, "smtp,smtps");
    // RFC 3207 §6: an attacker on the path can delete "250-STARTTLS" from the EHLO reply, so a client
    // that needs TLS must stop when it is missing or refused. CURLUSESSL_ALL does; CURLUSESSL_TRY would
    // go on in plaintext without a word. smtps:// is TLS from the first byte (RFC 8314 §3.3) regardless.
    const bool plaintext = request.allow_plaintext && !implicit_tls;
    set(CURLOPT_USE_SSL, static_cast<long>(plaintext ? CURLUSESSL_NONE : CURLUSESSL_ALL));
    if (plaintext) {
      // libcurl may hand a cached smtp:// connection to a later request to the same host; a plaintext
      // one must never be what a TLS-requiring request gets, so it is not cached at all.
      set(CURLOPT_FRESH_CONNECT, 1L);
      set(CURLOPT_FORBID_REUSE, 1L);
    }
    set(CURLOPT_MAIL_FROM, request.mail_from.c_str());
    for (const auto& rcpt : request.mail_rcpt) {
      curl_slist* next = curl_slist_append(list, rcpt.c_str());
      if (!next) return CURLE_OUT_OF_MEMORY;
      list = next;
    }
    set(CURLOPT_MAIL_RCPT, list);
    if (!request.username.empty()) {
      set(CURLOPT_USERNAME, request.username.c_str());
      set(CURLOPT_PASSWORD, request.password.c_str());
    }
    set(CURLOPT_UPLOAD, 1L);
    set(CURLOPT_INFILESIZE_LARGE, static_cast<curl_off_t>(request.body.size()));
    set(CURLOPT_READFUNCTION, &SmtpTransfer::on_upload);
    set(CURLOPT_READDATA, static_cast<void*>(this));
    set(CURLOPT_SEEKFUNCTION, &SmtpTransfer::on_seek);
    set(CURLOPT_SEEKDATA, static_cast<void*>(this));
    set(CURLOPT_HEADERFUNCTION, &SmtpTransfer::on_smtp_reply);
    set(CURLOPT_HEADERDATA, static_cast<void*>(this));
    return setup_rc;
  }

  // The most recent complete reply carrying `code`, or "".
  std::string reply_with(long code) const {
    const std::string prefix = std::to_string(code);
    for (auto it = smtp_replies.rbegin(); it != smtp_replies.rend(); ++it)
      if (it->rfind(prefix, 0) == 0) return *it;
    return {};
  }

  // See Response in the header: a reply >= 400 that ended the transaction is the server's verdict
  // (status, transport_error 0); a failure without one is a transport error with status 0.
  void finish(CURLcode code) override {
    long reply_code = 0, connects = 0;
    curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &reply_code);  // the last reply, QUIT's excluded
    curl_easy_getinfo(easy, CURLINFO_NUM_CONNECTS, &connects);
    response.new_connections = connects;
    const std::string what = errbuf[0] ? std::string(errbuf) : std::string(curl_easy_strerror(code));
    if (code == CURLE_OK) {
      response.status = static_cast<int>(reply_code);
      response.body = reply_with(reply_code);
    } else if (reply_code >= 400 && reply_code < 600) {
      response.status = static_cast<int>(reply_code);
      response.body = reply_with(reply_code);
      response.error_text = response.body.empty() ? what : what + " (server: " + response.body + ")";
    } else {
      response.transport_error = code;
      response.error_text = what;
    }
  }
};

}  // namespace

std::unique_ptr<Transfer> make_smtp_transfer() { return std::make_unique<SmtpTransfer>(); }

}  // namespace tayori::transport
