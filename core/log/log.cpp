// spdlog behind rch::log: one stderr sink, colour only on a TTY without NO_COLOR;
// every message passes the output sanitiser (it may quote a worker or a config file).
#include "core/log/log.hpp"

#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <cstdlib>
#include <string>

#include "core/util/text.hpp"

namespace rch::log {
namespace {

std::shared_ptr<spdlog::logger>& instance() {
  static std::shared_ptr<spdlog::logger> l = [] {
    const bool color = color_on(STDERR_FILENO);
    auto sink = std::make_shared<spdlog::sinks::stderr_color_sink_mt>(color ? spdlog::color_mode::automatic
                                                                            : spdlog::color_mode::never);
    auto made = std::make_shared<spdlog::logger>("rch", sink);
    made->set_pattern("%^[%H:%M:%S.%e %l]%$ %v");
    made->set_level(spdlog::level::warn);
    return made;
  }();
  return l;
}

spdlog::logger& logger() { return *instance(); }

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

bool& logging_to_file() {
  static bool to_file = false;
  return to_file;
}

}  // namespace

Result<void> init(int verbosity, const std::string& log_file) {
  Level level = Level::warn;
  if (const char* env = std::getenv("RCH_LOG_LEVEL"); env != nullptr && *env != '\0') {
    static const std::pair<std::string_view, Level> kNames[] = {
        {"trace", Level::trace},  {"debug", Level::debug}, {"info", Level::info}, {"warn", Level::warn},
        {"warning", Level::warn}, {"error", Level::error}, {"off", Level::off}};
    bool known = false;
    for (const auto& [name, l] : kNames) {
      if (name == env) level = l, known = true;
    }
    if (!known) {
      return make_error("RCH_LOG_LEVEL=" + sanitize_for_terminal(env) +
                        " is not a log level (trace, debug, info, warn, error, off)");
    }
  }
  if (verbosity >= 2)
    level = Level::trace;
  else if (verbosity == 1 && level > Level::debug)
    level = Level::debug;
  if (!log_file.empty()) {
    try {
      auto sink = std::make_shared<spdlog::sinks::basic_file_sink_mt>(log_file);
      auto l = std::make_shared<spdlog::logger>("rch", sink);
      l->set_pattern("[%Y-%m-%dT%H:%M:%S.%e %l] %v");
      l->flush_on(spdlog::level::trace);  // a line is in the file once it is logged
      instance() = l;
      logging_to_file() = true;
    } catch (const spdlog::spdlog_ex& e) {
      return make_error("--log-file " + log_file + ": " + e.what());
    }
  }
  set_level(level);
  return {};
}

bool color_on(int fd) {
  const char* no_color = std::getenv("NO_COLOR");  // no-color.org: set and non-empty
  return isatty(fd) != 0 && (no_color == nullptr || *no_color == '\0');
}

void set_level(Level level) { logger().set_level(to_spd(level)); }
bool enabled(Level level) { return logger().should_log(to_spd(level)); }
bool to_file() { return logging_to_file(); }
void write(Level level, std::string_view message) {
  const std::string clean = sanitize_for_terminal(message, {.multiline = true});
  logger().log(to_spd(level), std::string_view(clean));
}

}  // namespace rch::log
