// The concurrency model of rch: one loop thread that owns all orchestration
// state (and the lua_State), plus a bounded pool for blocking work (libssh,
// large hashes, flock waits). A pool job returns a completion that is posted
// back to the loop thread; nothing else crosses threads.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>

namespace rch {

class Executor {
 public:
  using Completion = std::function<void()>;
  using BlockingJob = std::function<Completion()>;

  // pool_threads bounds how many blocking jobs run at once; the rest queue.
  // Threads start as jobs need them (none idle), up to that bound.
  explicit Executor(std::size_t pool_threads);
  ~Executor();
  Executor(const Executor&) = delete;
  Executor& operator=(const Executor&) = delete;

  // Runs `job` on the pool, then runs the completion it returns on the loop.
  void run_blocking(BlockingJob job);
  // Runs `fn` on the loop thread, after the handlers already queued.
  void post(std::function<void()> fn);
  // Runs `fn` on the loop thread after `delay`.
  void after(std::chrono::milliseconds delay, std::function<void()> fn);

  // Runs the loop on the calling thread until no handler, timer or pool job remains.
  void run();
  std::size_t pool_threads() const;

  // Test mode (RCH_SHUFFLE_COMPLETIONS=<seed>): each pool completion is delayed
  // by a random 0-15 ms so completions arrive in an order unrelated to submission.
  void shuffle_completions(std::uint64_t seed);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace rch
