// Wall-clock timestamps as ISO 8601 UTC strings with millisecond precision
// (2026-11-22T10:00:00.123Z), the one format of journals, audit and locks.
#pragma once

#include <chrono>
#include <string>

namespace rch {

std::string iso8601_utc(std::chrono::system_clock::time_point tp);
std::string iso8601_utc_now();

}  // namespace rch
