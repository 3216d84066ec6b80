// The executor's pool runs as many blocking jobs at once as callers start:
// rch bounds its concurrency itself (--parallel, probe_parallel), so a pool
// that capped it (8 threads for 64 probes) would quietly serialize the work.
#include "core/exec/executor.hpp"

#include <catch2/catch.hpp>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>

namespace {

// Each job waits (up to 5 s) until `n` jobs run at once; it reports how many it saw.
TEST_CASE("the executor runs 40 blocking jobs at once, and each completion on the loop") {
  constexpr int n = 40;
  rch::Executor executor(1024);
  std::mutex m;
  std::condition_variable cv;
  int running = 0;
  int all_seen = 0;
  int completions = 0;
  for (int i = 0; i < n; ++i) {
    executor.run_blocking([&]() -> rch::Executor::Completion {
      std::unique_lock lock(m);
      ++running;
      cv.notify_all();
      const bool all = cv.wait_for(lock, std::chrono::seconds(5), [&] { return running >= n; });
      return [&, all] {
        if (all) ++all_seen;
        ++completions;
      };
    });
  }
  executor.run();
  CHECK(completions == n);
  CHECK(all_seen == n);
}

TEST_CASE("the executor's bound holds: with 2 threads, 2 jobs run at once") {
  rch::Executor executor(2);
  std::mutex m;
  int running = 0;
  int peak = 0;
  for (int i = 0; i < 6; ++i) {
    executor.run_blocking([&]() -> rch::Executor::Completion {
      {
        std::lock_guard lock(m);
        peak = std::max(peak, ++running);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      std::lock_guard lock(m);
      --running;
      return [] {};
    });
  }
  executor.run();
  CHECK(peak == 2);
}

}  // namespace
