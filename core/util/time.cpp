// ISO 8601 formatting through gmtime_r: std::format's chrono support is not
// in the GCC 12 of Debian 12.
#include "core/util/time.hpp"

#include <cstdio>
#include <ctime>

namespace rch {

std::string iso8601_utc(std::chrono::system_clock::time_point tp) {
  using namespace std::chrono;
  // floor, not duration_cast: a time before 1970 must not round towards it.
  const auto ms = floor<milliseconds>(tp.time_since_epoch());
  const auto secs = floor<seconds>(ms);
  const std::time_t t = static_cast<std::time_t>(secs.count());
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[96];  // room for any int fields, which keeps -Wformat-truncation quiet
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                tm.tm_hour, tm.tm_min, tm.tm_sec, static_cast<int>((ms - secs).count()));
  return buf;
}

std::string iso8601_utc_now() { return iso8601_utc(std::chrono::system_clock::now()); }

}  // namespace rch
