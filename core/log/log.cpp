// spdlog behind rch::log: one stderr sink, colour only on a TTY without NO_COLOR;
// every message passes the output sanitiser (it may quote a worker or a config file).
#include "core/log/log.hpp"

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <cstdlib>
#include <string>

#include "core/util/text.hpp"

namespace rch::log {
namespace {

spdlog::logger& logger() {
  static std::shared_ptr<spdlog::logger> instance = [] {
    const bool color = color_on(STDERR_FILENO);
    auto sink = std::make_shared<spdlog::sinks::stderr_color_sink_mt>(color ? spdlog::color_mode::automatic
                                                                            : spdlog::color_mode::never);
    auto l = std::make_shared<spdlog::logger>("rch", sink);
    l->set_pattern("%^[%H:%M:%S.%e %l]%$ %v");
    l->set_level(spdlog::level::warn);
    return l;
  }();
  return *instance;
}

spdlog::level::level_enum to_spd(Level level) {
  switch (level) {
    case Level::trace:
      return spdlog::level::trace;
    case Level::debug:
      return spdlog::level::debug;
    case Level::info:
      return spdlog::level::info;
    case Level::warn:
      return spdlog::level::warn;
    case Level::error:
      return spdlog::level::err;
    case Level::off:
      return spdlog::level::off;
  }
  return spdlog::level::info;
}

}  // namespace

void init(int verbosity) {
  Level level = Level::warn;
  if (const char* env = std::getenv("RCH_LOG_LEVEL")) {
    const std::string v = env;
    if (v == "trace")
      level = Level::trace;
    else if (v == "debug")
      level = Level::debug;
    else if (v == "info")
      level = Level::info;
    else if (v == "warn" || v == "warning")
      level = Level::warn;
    else if (v == "error")
      level = Level::error;
    else if (v == "off")
      level = Level::off;
  }
  if (verbosity >= 2)
    level = Level::trace;
  else if (verbosity == 1 && level > Level::debug)
    level = Level::debug;
  set_level(level);
}

bool color_on(int fd) {
  const char* no_color = std::getenv("NO_COLOR");  // no-color.org: set and non-empty
  return isatty(fd) != 0 && (no_color == nullptr || *no_color == '\0');
}

void set_level(Level level) { logger().set_level(to_spd(level)); }
bool enabled(Level level) { return logger().should_log(to_spd(level)); }
void write(Level level, std::string_view message) {
  const std::string clean = sanitize_for_terminal(message, {.multiline = true});
  logger().log(to_spd(level), std::string_view(clean));
}

}  // namespace rch::log
