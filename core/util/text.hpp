// Text from untrusted places (worker output, config files, records written by
// older versions): UTF-8 validation, the one sanitiser for everything shown
// on a terminal or written to a log line, and base64 for the JSON byte-string
// form {"$b64": "…"}.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

namespace rch {

// Length (1-4) of the well-formed UTF-8 sequence starting at s[i], or 0 when
// it is not one (stray continuation, overlong, surrogate, > U+10FFFF, cut off).
std::size_t utf8_sequence_length(std::string_view s, std::size_t i);
bool valid_utf8(std::string_view s);
// Each byte that does not start a well-formed sequence becomes U+FFFD.
std::string replace_invalid_utf8(std::string_view s);

struct SanitizeOptions {
  // Keep '\n' and '\t' (multi-line output); otherwise they are escaped too.
  bool multiline = false;
  // Keep SGR colour sequences (ESC [ digits/';' m), for a colour terminal.
  bool keep_sgr = false;
};

// The output sanitiser: C0 controls, DEL and C1 controls (U+0080-U+009F) are
// shown escaped as "\x1b", invalid UTF-8 becomes U+FFFD. Nothing a worker or
// a config file says can then move the cursor, set the title or write the
// clipboard (OSC 52).
std::string sanitize_for_terminal(std::string_view s, SanitizeOptions options = {});

// RFC 4648 base64 with padding.
std::string base64_encode(std::string_view bytes);
// std::nullopt when `text` is not canonical padded base64.
std::optional<std::string> base64_decode(std::string_view text);

}  // namespace rch
