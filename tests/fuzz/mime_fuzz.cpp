// The e-mail plugin's MIME builder (plugins/email_smtp/mime.hpp) on fields as they reach it: a configured
// sender and reply-to (parse_mailbox), the recipient's address, rendered subject, text and html, the
// delivery id of the Message-ID and boundary, and List-Unsubscribe targets. Each input either is refused
// with MimeError or builds a message that keeps RFC 5322 §2.1.1: CRLF line ends only (header injection would
// need a bare CR or LF), no line over 998 characters. The header functions alone keep the first rule; the
// second is build_message's to enforce, since a token that cannot be folded (a long quoted display name from
// the `from` setting) is left whole and refused there.
#include <fuzzer/FuzzedDataProvider.h>

#include <cstddef>
#include <cstdint>
#include <string>

#include "email_smtp/mime.hpp"

namespace {

void check_lines(const std::string& message, bool hard_limit) {
  size_t line = 0;
  for (size_t i = 0; i < message.size(); ++i) {
    if (message[i] == '\r') {
      if (i + 1 >= message.size() || message[i + 1] != '\n') __builtin_trap();  // a bare CR
      ++i;
      line = 0;
    } else if (message[i] == '\n') {
      __builtin_trap();  // a bare LF
    } else if (++line > 998 && hard_limit) {
      __builtin_trap();
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace tayori::email;
  FuzzedDataProvider in(data, size);
  try {
    Message m;
    m.from = parse_mailbox(in.ConsumeRandomLengthString(200), "from");
    if (in.ConsumeBool()) m.reply_to = parse_mailbox(in.ConsumeRandomLengthString(200), "reply_to");
    m.to = in.ConsumeRandomLengthString(200);
    m.subject = in.ConsumeRandomLengthString(400);
    if (in.ConsumeBool()) m.text = in.ConsumeRandomLengthString(2000);
    if (in.ConsumeBool()) m.html = in.ConsumeRandomLengthString(2000);
    // The date is the host's clock, not input: any time from 1970 to the end of year 9999.
    m.date_ms = in.ConsumeIntegralInRange<int64_t>(0, 253'402'300'799'999);
    std::string delivery_id = in.ConsumeRandomLengthString(100);
    m.message_id = message_id(delivery_id, domain_of(m.from.address));
    m.boundary_seed = delivery_id;
    for (int n = in.ConsumeIntegralInRange(0, 3); n > 0; --n) m.list_unsubscribe.push_back(in.ConsumeRandomLengthString(300));
    m.one_click_unsubscribe = in.ConsumeBool();
    check_lines(build_message(m), true);
    // The pieces on their own, with what is left: no header they make can carry a bare line break.
    std::string rest = in.ConsumeRemainingBytesAsString();
    check_lines(unstructured_header("Subject", rest), false);
    check_lines(mailbox_header("From", Mailbox{rest, m.from.address}), false);
  } catch (const MimeError&) {
    // refused, naming the field: what the plugin reports as a permanent failure
  }
  return 0;
}
