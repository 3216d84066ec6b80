// rchd stop: what systemd's ExecStop runs (a person may too): drain the
// daemon, wait for its running builds up to a timeout, then shut it down.
#pragma once

#include <chrono>
#include <filesystem>

namespace rch::rchd {

// Returns 0 once no daemon answers on `socket` (also when none was running),
// 1 with the reason on stderr when it could not be stopped.
int stop_daemon(const std::filesystem::path& socket, std::chrono::seconds timeout);

}  // namespace rch::rchd
