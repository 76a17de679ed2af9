// mime — see mime.hpp. Transfer encoding: base64 for every body part. Japanese text is almost all
// non-ASCII, which quoted-printable triples (each UTF-8 byte becomes "=XX", 9 bytes per character) while
// base64 grows it by a third; base64 lines are 76 characters by construction, so RFC 5322 §2.1.1's 78
// holds whatever the content's own line lengths, and SMTP never sees a line starting with '.'.
#include "mime.hpp"

#include <chrono>
#include <cstdio>
#include <tayori/plugin.hpp>
#include <tayori/provider_helpers.hpp>
#include <tayori/text.hpp>

namespace tayori::email {
namespace {

using sdk::base64_encode;
using text::is_valid_utf8;

constexpr size_t kMaxLine = 78;          // RFC 5322 §2.1.1 SHOULD
constexpr size_t kMaxHardLine = 998;     // RFC 5322 §2.1.1 MUST
constexpr size_t kMaxEncodedWord = 75;   // RFC 2047 §2
constexpr std::string_view kWordStart = "=?UTF-8?B?";
constexpr std::string_view kWordEnd = "?=";
constexpr std::string_view kCrlf = "\r\n";

bool is_alpha(char c) { return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z'); }
bool is_digit(char c) { return c >= '0' && c <= '9'; }

// atext (RFC 5322 §3.2.3).
bool is_atext(char c) {
  return is_alpha(c) || is_digit(c) || std::string_view("!#$%&'*+-/=?^_`{|}~").find(c) != std::string_view::npos;
}

bool has_line_break(std::string_view s) { return s.find_first_of(std::string_view("\r\n\0", 3)) != std::string_view::npos; }

bool is_printable_ascii(std::string_view s) {
  for (unsigned char c : s)
    if (c < 0x20 || c > 0x7E) return false;
  return true;
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  return out;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// Refuses what would break out of a header value (header injection) or mislabel the UTF-8 charset.
void check_header_text(std::string_view field, std::string_view value) {
  if (has_line_break(value))
    throw MimeError(std::string(field) + ": contains a line break or NUL (refused: it would inject headers)");
  if (!is_valid_utf8(value)) throw MimeError(std::string(field) + ": is not valid UTF-8");
}

// Length in bytes of the UTF-8 sequence starting with `lead` (the input is already validated).
size_t sequence_length(unsigned char lead) {
  if (lead < 0x80) return 1;
  if ((lead & 0xE0) == 0xC0) return 2;
  if ((lead & 0xF0) == 0xE0) return 3;
  return 4;
}

// RFC 2047 "B" encoded-words for `text`, split between whole UTF-8 sequences (§5: an encoded-word must hold
// whole characters). The first word is at most `first_max` characters long, the others kMaxEncodedWord.
std::vector<std::string> encoded_words(std::string_view text, size_t first_max) {
  std::vector<std::string> words;
  size_t max = first_max;
  size_t overhead = kWordStart.size() + kWordEnd.size();
  while (!text.empty()) {
    size_t budget = (max - overhead) / 4 * 3;  // bytes whose base64 fits in the word
    size_t take = 0;
    while (take < text.size()) {
      size_t n = sequence_length(static_cast<unsigned char>(text[take]));
      if (take + n > budget) break;
      take += n;
    }
    words.push_back(std::string(kWordStart) + base64_encode(text.substr(0, take)) + std::string(kWordEnd));
    text.remove_prefix(take);
    max = kMaxEncodedWord;
  }
  return words;
}

// Joins `tokens` after "Name:" with single spaces, folding (CRLF before the space, RFC 5322 §2.2.3) where
// the next token would pass kMaxLine. A token longer than a line stays whole on a line of its own.
std::string fold(std::string_view name, const std::vector<std::string>& tokens) {
  std::string out(name);
  out += ':';
  size_t line = out.size();
  bool first = true;
  for (const std::string& t : tokens) {
    if (!first && line + 1 + t.size() > kMaxLine) {
      out += kCrlf;
      line = 0;
    }
    out += ' ';
    out += t;
    line += 1 + t.size();
    first = false;
  }
  out += kCrlf;
  return out;
}

std::vector<std::string> split_spaces(std::string_view s) {
  std::vector<std::string> words;
  size_t start = 0;
  while (start <= s.size()) {
    size_t end = s.find(' ', start);
    if (end == std::string_view::npos) end = s.size();
    words.emplace_back(s.substr(start, end - start));
    start = end + 1;
  }
  return words;
}

// Text that can go into a header as it is: printable ASCII, words separated by single spaces (so folding
// never leaves a line of only white space), no "=?" that a reader would try to decode (RFC 2047 §5), and
// no word too long to fold into a 78-character line after "Name: ".
bool plain_header_text(std::string_view name, std::string_view value) {
  if (!is_printable_ascii(value) || value.find("=?") != std::string_view::npos) return false;
  if (value.empty()) return true;
  if (value.front() == ' ' || value.back() == ' ' || value.find("  ") != std::string_view::npos) return false;
  std::vector<std::string> words = split_spaces(value);
  if (name.size() + 2 + words.front().size() > kMaxLine) return false;
  for (const std::string& w : words)
    if (1 + w.size() > kMaxLine) return false;
  return true;
}

// Encoded-words for a header value starting after "Name: ", the first sized to fit that first line.
std::vector<std::string> header_words(std::string_view name, std::string_view value) {
  size_t first_line_room = kMaxLine > name.size() + 2 ? kMaxLine - name.size() - 2 : 0;
  size_t smallest = kWordStart.size() + kWordEnd.size() + 8;  // one 4-byte character
  return encoded_words(value, first_line_room >= smallest ? std::min(first_line_room, kMaxEncodedWord) : kMaxEncodedWord);
}

// A display name as an RFC 5322 phrase: atoms as they are, other ASCII as a quoted-string (§3.2.4), anything
// else as encoded-words (RFC 2047 §5(3)).
std::vector<std::string> phrase_tokens(std::string_view name, std::string_view display) {
  if (!is_printable_ascii(display) || display.find("=?") != std::string_view::npos) return header_words(name, display);
  bool atoms = !display.empty() && display.front() != ' ' && display.back() != ' ' &&
               display.find("  ") == std::string_view::npos;
  for (char c : display) atoms = atoms && (is_atext(c) || c == ' ');
  if (atoms) return split_spaces(display);
  std::string quoted = "\"";
  for (char c : display) {
    if (c == '"' || c == '\\') quoted += '\\';
    quoted += c;
  }
  quoted += '"';
  return {quoted};
}

// Line breaks made CRLF, as text/* requires in canonical form (RFC 2046 §4.1.1) before base64.
std::string canonical_lines(std::string_view text) {
  std::string out;
  out.reserve(text.size() + text.size() / 32);
  for (size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (c == '\r') {
      out += kCrlf;
      if (i + 1 < text.size() && text[i + 1] == '\n') ++i;
    } else if (c == '\n') {
      out += kCrlf;
    } else {
      out += c;
    }
  }
  return out;
}

uint64_t fnv1a(std::string_view s, uint64_t h = 0xcbf29ce484222325ULL) {
  for (unsigned char c : s) h = (h ^ c) * 0x100000001b3ULL;
  return h;
}

std::string hex64(uint64_t v) {
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(v));
  return buf;
}

// A List-Unsubscribe target must not break out of its <…> (RFC 2369 §2).
void check_uri(std::string_view uri) {
  if (uri.empty() || has_line_break(uri) || uri.find_first_of(" \t<>") != std::string_view::npos)
    throw MimeError("list_unsubscribe: \"" + std::string(uri) + "\" is not a URI that can go between < and >");
}

struct Part {
  std::string content_type;
  std::string body;  // base64 lines
};

}  // namespace

bool is_domain(std::string_view domain) {
  if (domain.empty() || domain.size() > 253) return false;
  size_t start = 0;
  while (true) {
    size_t end = domain.find('.', start);
    std::string_view label = domain.substr(start, end == std::string_view::npos ? std::string_view::npos : end - start);
    if (label.empty() || label.size() > 63 || label.front() == '-' || label.back() == '-') return false;
    for (char c : label)
      if (!is_alpha(c) && !is_digit(c) && c != '-') return false;
    if (end == std::string_view::npos) return true;
    start = end + 1;
  }
}

bool is_address(std::string_view address) {
  size_t at = address.rfind('@');
  if (at == std::string_view::npos || at == 0) return false;
  std::string_view local = address.substr(0, at);
  // RFC 5321 §4.5.3.1.1: a local part of at most 64 octets.
  if (local.size() > 64 || local.front() == '.' || local.back() == '.' || local.find("..") != std::string_view::npos)
    return false;
  for (char c : local)
    if (!is_atext(c) && c != '.') return false;
  return is_domain(address.substr(at + 1));
}

std::string_view domain_of(std::string_view address) {
  size_t at = address.rfind('@');
  return at == std::string_view::npos ? std::string_view{} : address.substr(at + 1);
}

Mailbox parse_mailbox(std::string_view text, std::string_view field) {
  const std::string f(field);
  check_header_text(field, text);
  std::string_view t = trim(text);
  Mailbox m;
  std::string_view address = t;
  if (size_t open = t.rfind('<'); open != std::string_view::npos) {
    if (t.back() != '>') throw MimeError(f + ": \"" + std::string(t) + "\" has a '<' without a closing '>' at the end");
    address = t.substr(open + 1, t.size() - open - 2);
    std::string_view name = trim(t.substr(0, open));
    if (name.size() >= 2 && name.front() == '"' && name.back() == '"') {
      name = name.substr(1, name.size() - 2);
      for (size_t i = 0; i < name.size(); ++i) {
        if (name[i] == '\\' && i + 1 < name.size()) ++i;
        m.display_name += name[i];
      }
    } else {
      m.display_name = std::string(name);
    }
  }
  if (!is_printable_ascii(address))
    throw MimeError(f + ": \"" + std::string(address) +
                    "\": non-ASCII addresses need SMTPUTF8 (RFC 6531), which is not supported");
  if (!is_address(address)) throw MimeError(f + ": \"" + std::string(address) + "\" is not an email address");
  m.address = std::string(address);
  return m;
}

std::string base64_lines(std::string_view bytes) {
  std::string encoded = base64_encode(bytes);
  std::string out;
  out.reserve(encoded.size() + encoded.size() / 76 * 2 + 2);
  for (size_t i = 0; i < encoded.size(); i += 76) {
    out += std::string_view(encoded).substr(i, 76);
    out += kCrlf;
  }
  return out;
}

std::string unstructured_header(std::string_view name, std::string_view value) {
  check_header_text(lower(name), value);
  if (plain_header_text(name, value)) return value.empty() ? std::string(name) + ":" + std::string(kCrlf) : fold(name, split_spaces(value));
  return fold(name, header_words(name, value));
}

std::string mailbox_header(std::string_view name, const Mailbox& mailbox) {
  const std::string field = lower(name);
  check_header_text(field, mailbox.display_name);
  check_header_text(field, mailbox.address);
  if (!is_address(mailbox.address))
    throw MimeError(field + ": \"" + mailbox.address + "\" is not an email address");
  if (mailbox.display_name.empty()) return fold(name, {mailbox.address});
  std::vector<std::string> tokens = phrase_tokens(name, mailbox.display_name);
  tokens.push_back("<" + mailbox.address + ">");
  return fold(name, tokens);
}

std::string rfc5322_date(int64_t unix_ms) {
  using namespace std::chrono;
  static const char* kDays[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
  static const char* kMonths[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  sys_seconds t{seconds{unix_ms >= 0 ? unix_ms / 1000 : (unix_ms - 999) / 1000}};
  sys_days day = floor<days>(t);
  year_month_day ymd{day};
  hh_mm_ss hms{t - day};
  char buf[40];
  std::snprintf(buf, sizeof buf, "%s, %02u %s %04d %02d:%02d:%02d +0000", kDays[weekday{day}.c_encoding()],
                static_cast<unsigned>(ymd.day()), kMonths[static_cast<unsigned>(ymd.month()) - 1],
                static_cast<int>(ymd.year()), static_cast<int>(hms.hours().count()),
                static_cast<int>(hms.minutes().count()), static_cast<int>(hms.seconds().count()));
  return buf;
}

std::string message_id(std::string_view delivery_id, std::string_view domain) {
  if (delivery_id.empty()) throw MimeError("delivery_id: is empty (the Message-ID is derived from it)");
  if (!is_domain(domain)) throw MimeError("message_id_domain: \"" + std::string(domain) + "\" is not a domain name");
  static const char* hex = "0123456789ABCDEF";
  std::string id = "<tayori.";
  for (unsigned char c : delivery_id) {
    if (is_alpha(static_cast<char>(c)) || is_digit(static_cast<char>(c)) || c == '-') {
      id += static_cast<char>(c);
    } else {
      id += '=';
      id += hex[c >> 4];
      id += hex[c & 0xF];
    }
  }
  return id + "@" + std::string(domain) + ">";
}

std::string choose_boundary(std::string_view seed, const std::vector<std::string>& parts) {
  // "=_" occurs in neither base64 nor quoted-printable output, so the first candidate practically always
  // passes; the check makes that a guarantee for any part.
  for (uint64_t attempt = 0;; ++attempt) {
    uint64_t h = fnv1a(seed, fnv1a(std::to_string(attempt)));
    std::string boundary = "=_tayori_" + hex64(h) + hex64(fnv1a(seed, h));
    bool clash = false;
    for (const std::string& p : parts) clash = clash || p.find(boundary) != std::string::npos;
    if (!clash) return boundary;
  }
}

std::string build_message(const Message& m) {
  const bool has_text = m.text && !m.text->empty();
  const bool has_html = m.html && !m.html->empty();
  if (!has_text && !has_html) throw MimeError("text, html: the message needs a text or an html body");
  if (has_line_break(m.to) || !is_address(m.to)) throw MimeError("to: \"" + m.to + "\" is not an email address");
  if (m.message_id.size() < 3 || m.message_id.front() != '<' || m.message_id.back() != '>' || has_line_break(m.message_id))
    throw MimeError("message_id: \"" + m.message_id + "\" is not a <msg-id>");
  if (has_text && !is_valid_utf8(*m.text)) throw MimeError("text: is not valid UTF-8");
  if (has_html && !is_valid_utf8(*m.html)) throw MimeError("html: is not valid UTF-8");
  for (const std::string& uri : m.list_unsubscribe) check_uri(uri);
  if (m.one_click_unsubscribe && m.list_unsubscribe.empty())
    throw MimeError("list_unsubscribe: one-click unsubscribe needs a target URI (RFC 8058 §3.1)");

  std::string out;
  out += mailbox_header("From", m.from);
  if (m.reply_to) out += mailbox_header("Reply-To", *m.reply_to);
  out += mailbox_header("To", Mailbox{"", m.to});
  out += unstructured_header("Subject", m.subject);
  out += "Date: " + rfc5322_date(m.date_ms) + std::string(kCrlf);
  out += "Message-ID: " + m.message_id + std::string(kCrlf);
  out += "MIME-Version: 1.0\r\n";
  if (!m.list_unsubscribe.empty()) {
    // RFC 2369 §3.2: angle-bracketed URIs separated by commas, in order of preference.
    std::vector<std::string> targets;
    for (size_t i = 0; i < m.list_unsubscribe.size(); ++i)
      targets.push_back("<" + m.list_unsubscribe[i] + ">" + (i + 1 < m.list_unsubscribe.size() ? "," : ""));
    out += fold("List-Unsubscribe", targets);
    if (m.one_click_unsubscribe) out += "List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n";
  }

  // RFC 5322 §2.1.1's hard limit, which only an unfoldable token (a huge URL or display name) could pass.
  for (size_t start = 0, end; (end = out.find(kCrlf, start)) != std::string::npos; start = end + 2)
    if (end - start > kMaxHardLine)
      throw MimeError("headers: a line of " + std::to_string(end - start) + " characters (RFC 5322 allows 998)");

  std::vector<Part> parts;
  if (has_text) parts.push_back({"text/plain; charset=UTF-8", base64_lines(canonical_lines(*m.text))});
  if (has_html) parts.push_back({"text/html; charset=UTF-8", base64_lines(canonical_lines(*m.html))});
  if (parts.size() == 1) {
    out += "Content-Type: " + parts[0].content_type + std::string(kCrlf);
    out += "Content-Transfer-Encoding: base64\r\n\r\n";
    out += parts[0].body;
    return out;
  }
  std::vector<std::string> bodies;
  for (const Part& p : parts) bodies.push_back(p.body);
  const std::string boundary = choose_boundary(m.boundary_seed, bodies);
  out += "Content-Type: multipart/alternative;\r\n boundary=\"" + boundary + "\"\r\n\r\n";
  for (const Part& p : parts) {
    out += "--" + boundary + std::string(kCrlf);
    out += "Content-Type: " + p.content_type + std::string(kCrlf);
    out += "Content-Transfer-Encoding: base64\r\n\r\n";
    out += p.body;
  }
  out += "--" + boundary + "--" + std::string(kCrlf);
  return out;
}

}  // namespace tayori::email
