// Logging for rch and its core: a thin facade over spdlog so the heavy header
// stays in one translation unit. Level from RCH_LOG_LEVEL or -v; logs go to stderr.
#pragma once

#include <string>
#include <string_view>

#include "core/util/result.hpp"

namespace rch::log {

enum class Level { trace, debug, info, warn, error, off };

// Sets the level from RCH_LOG_LEVEL (trace|debug|info|warn|error|off) unless
// `verbosity` (count of -v) asks for more: 1 = debug, 2+ = trace. With a
// `log_file`, log lines are appended there instead of stderr. An unknown level
// or a file that cannot be opened is an error (the caller's usage error).
Result<void> init(int verbosity, const std::string& log_file = {});
void set_level(Level level);
bool enabled(Level level);
// True when init() sent the log to a --log-file rather than stderr.
bool to_file();
// Colour on file descriptor `fd`: a TTY, and NO_COLOR unset or empty (no-color.org).
bool color_on(int fd);

// Control characters in `message` are shown escaped (sanitize_for_terminal).
void write(Level level, std::string_view message);
inline void trace(std::string_view m) { write(Level::trace, m); }
inline void debug(std::string_view m) { write(Level::debug, m); }
inline void info(std::string_view m) { write(Level::info, m); }
inline void warn(std::string_view m) { write(Level::warn, m); }
inline void error(std::string_view m) { write(Level::error, m); }

}  // namespace rch::log
