// mime — building an RFC 5322 / MIME message from rendered content, as pure functions (no host, no I/O),
// so the email_smtp plugin and the unit tests share one implementation.
//
// Every function that takes untrusted text refuses what would let it change the message's structure (a CR
// or LF in a header value: header injection) by throwing MimeError with a message naming the field.
// Output uses CRLF line endings only and keeps every line within 78 characters (RFC 5322 §2.1.1), except
// where a single token that cannot be folded is itself longer -- a List-Unsubscribe URL, an address, a
// quoted ASCII display name -- which is left whole (the hard limit of 998 still holds).
#ifndef TAYORI_PLUGINS_EMAIL_SMTP_MIME_HPP
#define TAYORI_PLUGINS_EMAIL_SMTP_MIME_HPP

#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace tayori::email {

// An input the message cannot be built from; what() starts with the field at fault ("subject: ...").
struct MimeError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// A mailbox (RFC 5322 §3.4): an optional display name (UTF-8) and an addr-spec.
struct Mailbox {
  std::string display_name;
  std::string address;  // local@domain, ASCII
};

// Parses "news@example.com" or "Tayori <news@example.com>" (the name may be a quoted-string). `field`
// names the setting or header for error messages. Non-ASCII addresses are refused: they need SMTPUTF8
// (RFC 6531), which the transport does not negotiate.
Mailbox parse_mailbox(std::string_view text, std::string_view field);

// True for a plain ASCII addr-spec: dot-atom local part "@" a domain of LDH labels (RFC 5322 §3.4.1,
// RFC 5321 §4.1.2), without quoted local parts or address literals.
bool is_address(std::string_view address);
// True for a host name of LDH labels separated by dots.
bool is_domain(std::string_view domain);
// The part after the last '@'.
std::string_view domain_of(std::string_view address);

// Base64 (RFC 2045 §6.8) in lines of 76 characters, each ended by CRLF.
std::string base64_lines(std::string_view bytes);

// "Name: value" ready for the header section, folded and CRLF-terminated. Printable ASCII that folds into
// 78-character lines stays as it is; anything else becomes RFC 2047 "B" encoded-words (=?UTF-8?B?…?=), each
// at most 75 characters and never splitting a UTF-8 sequence (RFC 2047 §5). Refuses CR/LF and invalid UTF-8.
std::string unstructured_header(std::string_view name, std::string_view value);

// "Name: display-name <address>", the display name quoted (RFC 5322 §3.2.4) or encoded (RFC 2047 §5(3)) as
// needed, folded and CRLF-terminated.
std::string mailbox_header(std::string_view name, const Mailbox& mailbox);

// RFC 5322 §3.3 date-time in UTC: "Thu, 01 Jan 2026 09:00:00 +0000".
std::string rfc5322_date(int64_t unix_ms);

// "<tayori.{delivery id}@{domain}>" (RFC 5322 §3.6.4): derived from the delivery id, so every retry of one
// delivery carries the same Message-ID and the receiver can recognise a duplicate. Characters of the id
// outside [A-Za-z0-9-] are written "=XX", which keeps distinct ids distinct.
std::string message_id(std::string_view delivery_id, std::string_view domain);

struct Message {
  Mailbox from;
  std::optional<Mailbox> reply_to;
  std::string to;  // the recipient's address
  std::string subject;
  std::optional<std::string> text;  // text/plain body
  std::optional<std::string> html;  // text/html body
  int64_t date_ms = 0;
  std::string message_id;  // with angle brackets, from message_id()
  // RFC 2369 List-Unsubscribe targets (https://…, mailto:…), in order of preference. Empty: no header.
  std::vector<std::string> list_unsubscribe;
  // RFC 8058 §3.1 List-Unsubscribe-Post: List-Unsubscribe=One-Click (needs an https target first).
  bool one_click_unsubscribe = false;
  // Seed of the multipart boundary: the same message built twice gets the same boundary.
  std::string boundary_seed;
};

// A boundary derived from `seed` that occurs in none of `parts` (RFC 2046 §5.1.1), 1..70 characters.
std::string choose_boundary(std::string_view seed, const std::vector<std::string>& parts);

// The whole message: headers, then a text/plain or text/html part alone, or multipart/alternative with
// text/plain before text/html (RFC 2046 §5.1.4: the preferred, richer form last). Bodies are UTF-8 with line
// breaks made CRLF (RFC 2046 §4.1.1) and sent base64.
std::string build_message(const Message& message);

}  // namespace tayori::email

#endif  // TAYORI_PLUGINS_EMAIL_SMTP_MIME_HPP
