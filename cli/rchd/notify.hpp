// The systemd readiness protocol (sd_notify), without libsystemd: one
// datagram such as "READY=1" to the Unix socket named by $NOTIFY_SOCKET
// (a path, or an abstract socket written "@name"). Without $NOTIFY_SOCKET
// (not started by systemd as Type=notify) it does nothing.
#pragma once

#include <string_view>

#include "core/util/result.hpp"

namespace rch::rchd {

// Sends `state` ("READY=1", "STOPPING=1", "STATUS=…"; lines joined by '\n').
Result<void> notify_systemd(std::string_view state);

}  // namespace rch::rchd
